"""Filling a module from a checkpoint's tensors, with errors that name the file.

:func:`check_shapes_on_meta` runs first: it builds the module on PyTorch's ``meta``
device (shapes only, no memory) and compares it with the weights file's header, so a
config that asks for a 20,000-wide or 10,000-layer model, or ten million labels, is
refused in milliseconds instead of allocating gigabytes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import ModelLoadError

#: Names of numbered layers in transformers' state dicts (``encoder.layer.3.``, ``layers.11.``).
_LAYER_INDEX = re.compile(r"(?:^|\.)layers?\.(\d+)\.")


def load_checked(
    model: nn.Module, state: dict, weights: Path, expected: str, *, may_miss_prefix: str | None = None
) -> None:
    """``model.load_state_dict(state)``; raise :class:`ModelLoadError` on any mismatch.

    ``expected`` describes the layout in the message (what the file should hold).
    Tensors under ``may_miss_prefix`` may be absent (a head-only checkpoint's backbone);
    ``position_ids`` buffers, which older transformers saved, may be extra.
    """
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # a tensor of the wrong shape
        raise ModelLoadError(f"{weights} does not match {expected}: {error}") from error
    if may_miss_prefix:
        missing = [name for name in missing if not name.startswith(may_miss_prefix)]
    unexpected = [name for name in unexpected if not name.endswith("position_ids")]
    if missing or unexpected:
        raise ModelLoadError(
            f"{weights} does not match {expected}: missing {few_names(missing)}, unexpected {few_names(unexpected)}."
        )


def check_layer_count(layers: int | None, shapes: Mapping[str, tuple[int, ...]], weights: Path, expected: str) -> None:
    """Refuse a config whose ``num_hidden_layers`` differs from the numbered layers in the weights.

    Cheap (names only), so it runs before even a meta-device build, which takes time per
    layer. Skipped when the weights hold no numbered layers (a head-only file).
    """
    indices = {int(match.group(1)) for name in shapes for match in [_LAYER_INDEX.search(name)] if match}
    if layers is None or not indices:
        return
    if isinstance(layers, bool) or not isinstance(layers, int) or layers != max(indices) + 1:
        raise ModelLoadError(
            f"{weights} does not match {expected}: the config asks for {layers!r} layers, the weights hold "
            f"{max(indices) + 1}."
        )


def check_config_sizes(
    sizes: Mapping[str, int], layers: int | None, shapes: Mapping[str, tuple[int, ...]], weights: Path
) -> None:
    """Refuse config sizes that no tensor of the weights has as a dimension, and a wrong layer count.

    A cheap first check that runs when a checkpoint is described (on the client): a
    10-million-label or 20,000-wide config against a small file fails here, before
    transformers builds a ten-million-entry label map or anything is allocated.
    """
    dimensions = {dim for shape in shapes.values() for dim in shape}
    wrong = {key: value for key, value in sizes.items() if value not in dimensions}
    if wrong:
        raise ModelLoadError(
            f"{weights} does not match its config.json: no tensor has the size the config gives "
            f"{wrong} (largest dimension in the weights: {max(dimensions, default=0)})."
        )
    check_layer_count(layers, shapes, weights, "config.json")


def check_shapes_on_meta(
    build: Callable[[], nn.Module],
    shapes: Mapping[str, tuple[int, ...]],
    weights: Path,
    expected: str,
) -> None:
    """Build the module on the ``meta`` device and compare its tensor shapes with ``shapes``.

    ``shapes`` comes from the weights header (:func:`~nemo_cls_dask.models.files.tensor_shapes`).
    A transformers backbone saved inside a task model has its names under its
    ``base_model_prefix`` (``bert.``), which is then put before the module's own names.
    Only tensors present in both are compared (:func:`load_checked` reports missing ones
    after loading). Raises :class:`ModelLoadError` naming the first differences.
    """
    try:
        with torch.device("meta"):
            module = build()
    except (ValueError, RuntimeError, TypeError, OverflowError) as error:
        raise ModelLoadError(f"{expected} cannot describe a model: {error}") from error
    own = module.state_dict()
    prefix = ""
    base = getattr(module, "base_model_prefix", "") or ""
    if base and not any(name in shapes for name in own) and any(name.startswith(base + ".") for name in shapes):
        prefix = base + "."
    wrong = []
    for name, tensor in own.items():
        stored = shapes.get(prefix + name)
        if stored is not None and tuple(stored) != tuple(tensor.shape):
            wrong.append(f"{prefix + name}: config {tuple(tensor.shape)}, weights {tuple(stored)}")
    if wrong:
        raise ModelLoadError(f"{weights} does not match {expected}: {few_names(wrong)}.")


def few_names(names: list[str]) -> str:
    """The first five names, with ... if there are more (for error messages)."""
    return f"{names[:5]}{'...' if len(names) > 5 else ''}"

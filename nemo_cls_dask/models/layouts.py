"""The registry of checkpoint layouts: how a folder's ``config.json`` says what it holds.

A *layout* is one on-disk format (the NVIDIA backbone + ``fc`` head, a transformers
sequence-classification folder, a multi-head model, a composed model, a KimCNN model...).
Each is a :class:`CheckpointLayout` subclass in the module of the model code it needs,
registered with :func:`register_layout`; :func:`~nemo_cls_dask.models.loading.describe_model`
and :func:`~nemo_cls_dask.models.loading.get_model` walk the registry and know no layout by
name. Adding a layout is one new module::

    @register_layout
    class MyLayout(CheckpointLayout):
        name = "my-layout"
        def recognises(self, config): return config.get("architecture") == "mine"
        def describe(self, path, config, cache_dir): ...   # -> ModelInfo, JSON/headers only
        def load(self, info, cache_dir): ...                # -> nn.Module(input_ids, attention_mask)

A light model of this package's own, marked by ``{"architecture": name}``, subclasses
:class:`MarkerLayout` instead and writes no ``recognises``.

Layouts are tried by ascending :attr:`CheckpointLayout.priority`, then in registration
order; the NVIDIA head layout, which accepts any config that names a ``base_model``, is
tried last. This module imports nothing from the layouts, so it sits below all of them.
"""

from __future__ import annotations

import importlib.metadata
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from ..errors import ModelLoadError
from .files import read_json
from .hub import resolve_model_dir


@dataclass(frozen=True)
class ModelInfo:
    """What the operator needs to know about a checkpoint without loading its weights."""

    path: Path
    #: The :attr:`CheckpointLayout.name` that described it: ``"head"`` (NVIDIA backbone + fc),
    #: ``"hf"`` (transformers sequence classification), ``"multihead"``, ``"composed"``,
    #: ``"kimcnn"``, or a layout registered by the user.
    layout: str
    problem_type: str
    labels: tuple[str, ...] | None  # in id order; None for unlabeled regression outputs
    num_outputs: int
    max_len: int
    tokenizer_path: Path
    config: dict[str, Any] = field(repr=False, compare=False, hash=False)
    #: Fingerprint of the tokenizer files: checkpoints whose tokenizers tokenize alike (the
    #: NVIDIA DeBERTa-v3 repos each ship a copy of one tokenizer) get the same key, so a
    #: one-pass ``classify`` tokenizes their text once.
    tokenizer_key: str = field(default="", compare=False)
    #: ``"composed"`` layout: each head's own info (name -> ModelInfo), in output order.
    components: dict[str, ModelInfo] | None = field(default=None, repr=False, compare=False, hash=False)


class CheckpointLayout:
    """How to recognise, describe and load one kind of checkpoint folder.

    Subclasses set :attr:`name` and implement :meth:`recognises`, :meth:`describe` and
    :meth:`load`; :meth:`load_tokenizer` and :meth:`embedding_rows` have defaults for
    Hugging Face tokenizers and transformers backbones.
    """

    #: Written into :attr:`ModelInfo.layout`; unique in the registry.
    name: ClassVar[str] = ""
    #: Lower is tried first. Layouts recognised by a marker key keep the default.
    priority: ClassVar[int] = 50
    #: True when the model's cost grows with the square of the length (self-attention): on
    #: CPU the engine then also caps ``rows x length**2`` per batch. Light layouts set False.
    attention: ClassVar[bool] = True

    def recognises(self, config: dict[str, Any]) -> bool:
        """True when ``config`` (the folder's ``config.json``) is in this layout."""
        raise NotImplementedError

    def describe(self, path: Path, config: dict[str, Any], cache_dir: str | None) -> ModelInfo:
        """The checkpoint's :class:`ModelInfo`, from JSON files and weights headers only.

        Runs on the client when an operator is applied, so it must be cheap and raise
        :class:`~nemo_cls_dask.errors.ModelLoadError` for anything that cannot work.
        """
        raise NotImplementedError

    def load(self, info: ModelInfo, cache_dir: str | None) -> nn.Module:
        """The module, on the CPU, called as ``module(input_ids, attention_mask) -> outputs``.

        Shapes in the config must be checked against the weights before large tensors
        are allocated (see :func:`~nemo_cls_dask.models.weights.check_shapes_on_meta`).
        """
        raise NotImplementedError

    def load_tokenizer(self, info: ModelInfo) -> Any:
        """The tokenizer in ``info.tokenizer_path`` (a fast Hugging Face tokenizer by default)."""
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(info.tokenizer_path)
        except Exception as error:
            raise ModelLoadError(f"Cannot load the tokenizer in {info.tokenizer_path}: {error}") from error

    def embedding_rows(self, module: nn.Module) -> int | None:
        """Rows of the module's token embedding (None: no such table to check)."""
        get = getattr(module, "get_input_embeddings", None)
        embedding = get() if callable(get) else None
        return getattr(embedding, "num_embeddings", None)


class MarkerLayout(CheckpointLayout):
    """A layout of this package's own light models, recognised by ``{"architecture": name}``
    in config.json (KimCNN, TF-IDF + linear). Their cost is linear in the length, so the
    engine keeps large CPU batches (``attention = False``); a marker is exact, so they are
    tried before the layouts that guess from Hugging Face configs."""

    #: The config.json key whose value is :attr:`name`.
    marker_key: ClassVar[str] = "architecture"
    priority: ClassVar[int] = 10
    attention: ClassVar[bool] = False

    def recognises(self, config: dict[str, Any]) -> bool:
        return config.get(self.marker_key) == self.name


_LAYOUTS: dict[str, CheckpointLayout] = {}
_LOCK = threading.Lock()


def register_layout(layout: type[CheckpointLayout] | CheckpointLayout) -> Any:
    """Add a layout (class or instance) to the registry; usable as a class decorator.

    A layout registered again under the same name replaces the earlier one.
    """
    instance = layout() if isinstance(layout, type) else layout
    if not instance.name:
        raise ValueError(f"{type(instance).__name__} needs a non-empty 'name'.")
    with _LOCK:
        _LAYOUTS.pop(instance.name, None)
        _LAYOUTS[instance.name] = instance
    return layout


def unregister_layout(name: str) -> None:
    """Remove the layout called ``name`` (no error if there is none)."""
    with _LOCK:
        _LAYOUTS.pop(name, None)


ENTRY_POINT_GROUP = "nemo_cls_dask.layouts"
_plugins_loaded = False


def load_layout_plugins() -> None:
    """Import, once per process, every module registered under the ``nemo_cls_dask.layouts`` entry point.

    Layouts that live above this layer (the KimCNN layout in ``lightweight/``) or in other
    packages register themselves when their module is imported. Naming the module as an
    entry point (pyproject.toml) lets the registry find it in a fresh worker process without
    this layer importing anything above it. A plugin that fails to import is skipped with a
    warning naming it; the other layouts still work.
    """
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry.load()
        except Exception as error:  # noqa: BLE001  (a broken plugin must not break the built-in layouts)
            warnings.warn(f"checkpoint layout plugin {entry.name!r} ({entry.value}) failed to import: {error!r}", stacklevel=2)


def registered_layouts() -> list[CheckpointLayout]:
    """The layouts in the order they are tried."""
    load_layout_plugins()
    with _LOCK:
        layouts = list(_LAYOUTS.values())
    return sorted(layouts, key=lambda layout: layout.priority)  # stable: registration order within a priority


def layout_for(config: dict[str, Any], source: str) -> CheckpointLayout:
    """The first registered layout that recognises ``config`` (read from ``source``)."""
    for layout in registered_layouts():
        if layout.recognises(config):
            return layout
    names = [layout.name for layout in registered_layouts()]
    raise ModelLoadError(f"{source}: no known checkpoint layout recognises this config (known: {names}).")


def layout_named(name: str) -> CheckpointLayout:
    """The registered layout called ``name``."""
    load_layout_plugins()
    with _LOCK:
        layout = _LAYOUTS.get(name)
    if layout is None:
        raise ModelLoadError(f"No checkpoint layout {name!r} is registered (known: {sorted(_LAYOUTS)}).")
    return layout


def describe_checkpoint(identifier: str, cache_dir: str | None = None) -> ModelInfo:
    """Find a checkpoint, read its ``config.json`` and let the first layout that recognises it describe it.

    Reads JSON files and weights headers only. A config with ``auto_map`` (a checkpoint
    that ships its own Python classes) is refused before any layout sees it.
    """
    path = resolve_model_dir(identifier, cache_dir)
    source = path / "config.json"
    config = read_json(source)
    if "auto_map" in config:
        # Such a checkpoint names Python classes shipped in its own folder; loading it
        # means running that code (trust_remote_code). This package never does.
        raise ModelLoadError(
            f"{source} has 'auto_map' {config['auto_map']!r}: the checkpoint needs its own "
            f"Python code, and nemo_cls_dask never runs code from a checkpoint (trust_remote_code is "
            f"never passed). Use a checkpoint of a standard transformers architecture, or remove "
            f"'auto_map' if the config names one."
        )
    return layout_for(config, str(source)).describe(path, config, cache_dir)

"""Filling a module from a checkpoint's tensors, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..errors import ModelLoadError


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


def few_names(names: list[str]) -> str:
    """The first five names, with ... if there are more (for error messages)."""
    return f"{names[:5]}{'...' if len(names) > 5 else ''}"

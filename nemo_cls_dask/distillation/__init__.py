"""Distillation: a slow teacher labels a dask frame, a fast student learns from it.

:func:`distill` is the one entry point (the CLI's ``nemo-cls-dask distill`` calls it);
:class:`DistillResult` is what it returns. Modules: :mod:`.teacher` (any teacher as one
set of columns), :mod:`.store` (the resumable teacher pass), :mod:`.split` (the seeded
held-out split), :mod:`.students` (presets, soft targets, saving), :mod:`.report`.
"""

from __future__ import annotations

import importlib
from typing import Any

from .names import PRESETS as STUDENT_PRESETS

# Loaded on first use, so that the CLI's ``distill --help`` stays instant.
_LAZY = {"distill": ".core", "docs_per_second": ".core", "DistillResult": ".report"}

__all__ = ["DistillResult", "STUDENT_PRESETS", "distill", "docs_per_second"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Distillation: a slow teacher labels a dask frame, a fast student learns from it.

:func:`distill` is the one entry point (the CLI's ``nemo-cls-dask distill`` calls it);
:class:`DistillResult` is what it returns. Modules: :mod:`.teacher` (any teacher as one
set of columns), :mod:`.store` (the resumable teacher pass), :mod:`.split` (the seeded
held-out split), :mod:`.students` (presets, soft targets, saving), :mod:`.report`.
"""

from .core import distill, docs_per_second
from .report import DistillResult
from .students import PRESETS as STUDENT_PRESETS

__all__ = ["DistillResult", "STUDENT_PRESETS", "distill", "docs_per_second"]

"""``nemo-cls-dask distill``: distil a teacher into a student (its options and run live in :mod:`nemo_cls_dask.distillation.command`)."""

from __future__ import annotations

from ..distillation.command import add_parser, run

__all__ = ["add_parser", "run"]

"""``nemo-cls-dask train``: the training command (its options and run live in :mod:`nemo_cls_dask.cli_train`)."""

from __future__ import annotations

from ..cli_train import add_train_parser as add_parser
from ..cli_train import run_train as run

__all__ = ["add_parser", "run"]

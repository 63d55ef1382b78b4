"""``nemo-cls-dask``: the command line, a package of thin commands over library functions.

Each command is a module with ``add_parser(subparsers)`` (which sets ``run`` as the
parser's default) and ``run(args) -> int``. Parsing imports nothing heavy, so ``--help``
is instant; a command imports the library when it runs. Errors of this package are
printed as ``error: ...`` with exit code 2.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from ..errors import NemoClsDaskError

#: The commands (modules of this package), in the order ``--help`` lists them, with the
#: one-line summary that ``nemo-cls-dask --help`` shows without importing them.
COMMANDS = {
    "classify": "add label (and score) columns to parquet/jsonl/csv files",
    "train": "fine-tune a text classifier on a jsonl/parquet file or folder",
    "distill": "train a fast student classifier on a slow teacher's labels of a jsonl/parquet pool",
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv``, only the command it names is built in full.

    A command module may import heavy libraries at import time; building only the chosen
    one keeps ``nemo-cls-dask --help`` and every other command's start-up light.
    """
    import importlib

    parser = argparse.ArgumentParser(prog="nemo-cls-dask", description="Transformer text classifiers over files, on Dask.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    chosen = None if argv is None else next((arg for arg in argv if not arg.startswith("-")), "")
    for name, summary in COMMANDS.items():
        if chosen is None or name == chosen:
            importlib.import_module(f"{__name__}.{name}").add_parser(subparsers)
        else:
            subparsers.add_parser(name, help=summary, add_help=False)
    return parser


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM ends the command like Ctrl-C: cleanup runs (lock released, cluster closed)."""
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    run = args.run
    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm) if on_main_thread else None
    try:
        return run(args)
    except NemoClsDaskError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        if on_main_thread:
            signal.signal(signal.SIGTERM, previous)

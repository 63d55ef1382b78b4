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

#: The command modules, in the order ``--help`` lists them.
COMMANDS = ("classify", "train", "distill")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(prog="nemo-cls-dask", description="Transformer text classifiers over files, on Dask.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(subparsers)
    return parser


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    """SIGTERM ends the command like Ctrl-C: cleanup runs (lock released, cluster closed)."""
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code."""
    args = build_parser().parse_args(argv)
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

"""Option groups shared by the commands, each defined once.

Only ``argparse`` is imported here, so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
from typing import Any

AUTOCAST_CHOICES = ("auto", "bf16", "fp16", "fp32")


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1 (``--n-workers 0`` is an error at once)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_text_field(parser: argparse.ArgumentParser, help: str = "column holding the text") -> None:
    parser.add_argument("--text-field", default="text", help=help)


def add_engine_options(
    parser: argparse.ArgumentParser,
    *,
    batch_tokens: int | None,
    max_batch_rows: int,
    batch_tokens_help: str,
) -> None:
    """``--batch-tokens``, ``--max-batch-rows``, ``--autocast``, ``--device``, ``--cache-dir``."""
    parser.add_argument("--batch-tokens", type=positive_int, default=batch_tokens, help=batch_tokens_help)
    parser.add_argument("--max-batch-rows", type=positive_int, default=max_batch_rows, help="upper bound on rows per batch")
    parser.add_argument(
        "--autocast", default="auto", choices=AUTOCAST_CHOICES,
        help="auto: bf16/fp16 on GPU; bf16 on CPUs with AVX512-BF16/AMX, else fp32",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--cache-dir", default=None, help="Hugging Face cache folder (default: HF_HOME)")


def autocast_value(choice: str) -> Any:
    """The ``autocast`` argument of the library for an ``--autocast`` choice."""
    return {"auto": True, "fp32": False}.get(choice, choice)


def add_overwrite(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--overwrite", action="store_true", help=help)


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """Where the work runs: an existing Dask cluster, or a local one started for the command."""
    cluster = parser.add_argument_group("cluster")
    cluster.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler")
    cluster.add_argument("--scheduler-file", default=None, help="scheduler file of an existing Dask cluster")
    cluster.add_argument("--n-workers", type=positive_int, default=None, help="local workers (default: one per GPU or CPU core)")
    cluster.add_argument("--cluster-device", default="auto", choices=["auto", "gpu", "cpu"], help="kind of local cluster")
    cluster.add_argument("--memory-limit", default=None, help="memory limit per local worker, e.g. 4GiB (default: dask's share of RAM)")


def cluster_options(args: argparse.Namespace) -> dict[str, Any]:
    """The :func:`~nemo_cls_dask.get_client` keyword arguments of ``add_cluster_options``' flags."""
    options: dict[str, Any] = {
        "address": args.scheduler,
        "scheduler_file": args.scheduler_file,
        "device": args.cluster_device,
        "n_workers": args.n_workers,
    }
    if args.memory_limit is not None:
        options["memory_limit"] = args.memory_limit
    return options


def add_storage_options(parser: argparse.ArgumentParser) -> None:
    """``--storage-option KEY=VALUE`` (repeatable): options of the filesystem of URL paths."""
    parser.add_argument(
        "--storage-option", dest="storage_option", action="append", default=None, metavar="KEY=VALUE", type=_key_value,
        help="option of the fsspec filesystem for URL paths (s3://, gs://...), e.g. anon=true or profile=prod; "
             "repeatable; VALUE is read as JSON when it parses (true, 3, {...}), else as text",
    )


def _key_value(text: str) -> tuple[str, Any]:
    import json

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except ValueError:
        return key.strip(), value


def storage_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """The ``storage_options`` dict of ``--storage-option`` flags (None when none was given)."""
    return dict(args.storage_option or []) or None

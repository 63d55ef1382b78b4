"""Reading jsonl/parquet files or folders into dask DataFrames, and writing results back.

The CLI is a thin shell over these functions, so everything it does is also available
from Python.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask.dataframe as dd

from .errors import InputError

PARQUET_SUFFIXES = (".parquet", ".pq")
JSONL_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")
SAMPLE_PATH = Path(__file__).resolve().parent / "data" / "debian_sample.parquet"


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in PARQUET_SUFFIXES + JSONL_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


def input_files(path: str | Path) -> tuple[list[Path], str]:
    """The data files at ``path`` (a file, or a folder searched recursively) and their format."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"Input {path} does not exist.")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith((".", "_")))
    parquet = [p for p in files if _suffix(p) in PARQUET_SUFFIXES]
    jsonl = [p for p in files if _suffix(p) in JSONL_SUFFIXES]
    if parquet and jsonl:
        raise InputError(f"{path} mixes parquet and jsonl files; give one format at a time.")
    if not parquet and not jsonl:
        raise InputError(f"No .parquet or .jsonl files found at {path}.")
    return (parquet, "parquet") if parquet else (jsonl, "jsonl")


def read_frame(path: str | Path, *, blocksize: str | int | None = "64MiB", min_partitions: int = 1) -> dd.DataFrame:
    """Read jsonl or parquet file(s) at ``path`` as a dask DataFrame.

    Small inputs are split into at least ``min_partitions`` partitions so every worker
    has work.
    """
    files, kind = input_files(path)
    if kind == "parquet":
        frame = dd.read_parquet([str(p) for p in files])
    else:
        compression = "gzip" if str(files[0]).endswith(".gz") else None
        frame = dd.read_json(
            [str(p) for p in files], lines=True, blocksize=None if compression else blocksize, compression=compression
        )
    if frame.npartitions < min_partitions:
        frame = frame.repartition(npartitions=min_partitions)
    return frame


def output_format(path: str | Path, requested: str | None = None) -> str:
    """``parquet`` or ``jsonl``: as requested, else from the output path's suffix."""
    if requested:
        if requested not in ("parquet", "jsonl"):
            raise InputError(f"Output format must be 'parquet' or 'jsonl', got {requested!r}.")
        return requested
    return "jsonl" if _suffix(Path(path)) in JSONL_SUFFIXES else "parquet"


def write_frame(frame: dd.DataFrame, path: str | Path, fmt: str, *, compute: bool = True) -> Any:
    """Write ``frame`` to a folder of parquet or jsonl part files (lazy if ``compute=False``)."""
    path = Path(path).expanduser()
    if fmt == "parquet":
        return frame.to_parquet(str(path), compute=compute, write_index=True)
    path.mkdir(parents=True, exist_ok=True)
    return frame.to_json(str(path / "part-*.jsonl"), orient="records", lines=True, compute=compute, force_ascii=False)

"""Reading parquet/jsonl/csv/tsv files or folders into dask DataFrames, and writing results back.

The CLI is a thin shell over these functions, so everything it does is also available
from Python.

Folder runs write **one output file per input file** (:func:`plan_files`), keeping the
input's relative path under the output folder: ``IN/a/part-0.parquet`` becomes
``OUT/a/part-0.parquet``, ``IN/b.jsonl.gz`` becomes ``OUT/b.jsonl`` (jsonl output is
written uncompressed). The output format is the input's unless another is asked for; the
suffix follows the output format.

An input of more than ``part_rows`` rows becomes a folder of ordered part files under the
same output name instead (:mod:`nemo_cls_dask.output_parts`), so no writer holds it whole.

Each output file is written **atomically** (:func:`write_atomic`): to a hidden temporary
name in the same folder (``.NAME.<random>.tmp``), flushed to disk, then renamed with
``os.replace``. So a file under its final name is always complete, and a run that was
killed can be re-run: files whose output exists are skipped, and the temporary files of
the planned outputs are removed
(:func:`~nemo_cls_dask.output_folder.remove_own_temporaries`). Readers of this package ignore names starting
with ``.`` or ``_``, so a temporary file is never read as input either.

Paths may also be fsspec URLs (``s3://``, ``gs://``, ``memory://``): reading goes through
dask's readers with ``storage_options``, and writing through
:func:`~nemo_cls_dask.storage.write_bytes_atomic`, whose docstring says what holds on a
store without an atomic rename.

Formats read: parquet (``.parquet``, ``.pq``), jsonl (``.jsonl``, ``.json``), csv (``.csv``)
and tsv (``.tsv``), the text formats also gzipped (``.gz``). csv/tsv columns are read as
text. Written: parquet and jsonl (csv/tsv input is written as parquet). In a folder, names
starting with ``.`` or ``_`` are skipped, as are files inside folders so named (``.git/``).
:func:`file_columns` reads one file's columns from its metadata or first line, so every
input can be checked before any work starts.

Invalid UTF-8 in jsonl/csv input is an error by default (:class:`~nemo_cls_dask.errors.InputError`
naming the file and line, see :func:`find_invalid_utf8`); ``encoding_errors="replace"``
reads such bytes as U+FFFD instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import dask
import dask.dataframe as dd
import pandas as pd
import pyarrow as pa

from .errors import InputError
from .frames import concat_frames, on_backend, to_pandas_frame
from .output_folder import OutputError, temporary_name  # noqa: F401  (OutputError: io was its first home)
from .storage import AnyPath, StoragePath, is_remote, location, read_options, write_bytes_atomic

PARQUET_SUFFIXES = (".parquet", ".pq")
JSONL_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")
CSV_SUFFIXES = (".csv", ".csv.gz")
TSV_SUFFIXES = (".tsv", ".tsv.gz")
INPUT_SUFFIXES = {"parquet": PARQUET_SUFFIXES, "jsonl": JSONL_SUFFIXES, "csv": CSV_SUFFIXES, "tsv": TSV_SUFFIXES}
READ_FORMATS_TEXT = ".parquet/.pq, .jsonl/.json, .csv and .tsv (the text formats also as .gz)"
SAMPLE_PATH = Path(__file__).resolve().parent / "data" / "debian_sample.parquet"
FORMATS = ("parquet", "jsonl")  # written
ENCODING_ERRORS = ("strict", "replace")


def _suffix(path: AnyPath) -> str:
    name = path.name.lower()
    for suffixes in INPUT_SUFFIXES.values():
        for suffix in suffixes:
            if name.endswith(suffix):
                return suffix
    return path.suffix.lower()


def file_format(path: str | Path | StoragePath) -> str | None:
    """``"parquet"``, ``"jsonl"``, ``"csv"`` or ``"tsv"`` from the name of ``path``; None for others."""
    suffix = _suffix(path if is_remote(path) else Path(path))
    return next((kind for kind, suffixes in INPUT_SUFFIXES.items() if suffix in suffixes), None)


def has_data_suffix(path: str | Path | StoragePath) -> bool:
    """True when ``path`` ends like a data file this package reads."""
    return file_format(path) is not None


def _hidden(relative: Path) -> bool:
    return any(part.startswith((".", "_")) for part in relative.parts)


def input_files(path: str | Path | StoragePath, storage_options: dict[str, Any] | None = None) -> tuple[list[AnyPath], str]:
    """The data files at ``path`` (a file, or a folder searched recursively) and their format.

    ``path`` may be an fsspec URL (:mod:`nemo_cls_dask.storage`; ``storage_options`` go to
    its filesystem). In a folder, names starting with ``.`` or ``_`` (temporary files,
    ``_SUCCESS`` markers) are ignored, and so is everything inside folders so named
    (``.git/``, ``_tmp/``).
    """
    path = location(path, storage_options)
    if is_remote(path):
        try:
            return _input_files(path)
        except (OSError, ValueError) as error:  # permissions, network, a URL the store rejects
            raise InputError(f"Cannot list the input {path}: {type(error).__name__}: {error}") from error
    return _input_files(path)


def _input_files(path: AnyPath) -> tuple[list[AnyPath], str]:
    """:func:`input_files` once ``path`` is resolved (local or remote)."""
    if not path.exists():
        raise InputError(f"Input {path} does not exist.")
    if path.is_file():
        if file_format(path) is None:
            raise InputError(f"{path} is not a data file this package reads; it reads {READ_FORMATS_TEXT}.")
        return [path], str(file_format(path))
    found_files = path.files() if is_remote(path) else (p for p in path.rglob("*") if p.is_file())
    files = sorted(p for p in found_files if not _hidden(p.relative_to(path)))
    kinds = {kind: [p for p in files if file_format(p) == kind] for kind in INPUT_SUFFIXES}
    found = {kind: paths for kind, paths in kinds.items() if paths}
    if len(found) > 1:
        raise InputError(f"{path} mixes {' and '.join(found)} files; give one format at a time.")
    if not found:
        raise InputError(
            f"No data files found at {path}: it reads {READ_FORMATS_TEXT}; names starting with '.' or '_' are skipped."
        )
    kind, paths = next(iter(found.items()))
    return paths, kind


def file_columns(path: str | Path | StoragePath, encoding_errors: str = "strict") -> list[str]:
    """The column names of one data file, read from its metadata (parquet) or first line.

    Raises :class:`InputError` naming the file when it is empty, cannot be read, or is not
    of its suffix's format. Reads no data beyond the first line of a text file.
    """
    path = location(path)
    kind = file_format(path.name)
    if kind is None:
        raise InputError(f"{path} is not a data file this package reads; it reads {READ_FORMATS_TEXT}.")
    try:
        if (path.size() if is_remote(path) else path.stat().st_size) == 0:
            raise InputError(f"{path} is empty (0 bytes).")
        if kind == "parquet":
            import pyarrow.parquet as pq

            with path.open("rb") as handle:
                schema = pq.read_schema(handle)
            return [name for name in schema.names if not name.startswith("__index_level_")]
        with _open_bytes(path) as handle:  # bytes: only the first line is decoded
            raw = next((line for line in handle if line.strip()), None)
        if raw is None:
            raise InputError(f"{path} is empty (no rows).")
        first = raw.decode("utf-8", errors=encoding_errors)
        if kind == "jsonl":
            row = json.loads(first)
            if not isinstance(row, dict):
                raise InputError(f"{path} is not jsonl: its first line is not a JSON object.")
            return list(row)
        import csv

        return next(csv.reader([first], delimiter="," if kind == "csv" else "\t"))
    except InputError:
        raise
    except UnicodeDecodeError as error:
        found = find_invalid_utf8(path)
        where = f"at line {found[0]} (byte {found[1]})" if found is not None else f"({error})"
        raise InputError(
            f"invalid UTF-8 {where} of {path}; fix the file or pass --encoding-errors replace "
            "(encoding_errors='replace') to read such bytes as U+FFFD"
        ) from error
    except (OSError, ValueError, EOFError) as error:  # pyarrow.ArrowInvalid is a ValueError
        raise InputError(f"{path} cannot be read as {kind}: {type(error).__name__}: {error}") from error


@contextlib.contextmanager
def _open_bytes(path: AnyPath) -> Iterator[IO[bytes]]:
    """``path`` opened for reading bytes, gunzipped when its name ends with ``.gz`` (local or remote)."""
    import gzip

    with path.open("rb") as raw:
        if path.name.lower().endswith(".gz"):
            with gzip.open(raw, "rb") as unzipped:
                yield unzipped
        else:
            yield raw


def check_columns(path: str | Path | StoragePath, required: Sequence[str], encoding_errors: str = "strict") -> None:
    """Raise :class:`InputError` naming ``path`` when it cannot be read or lacks a ``required`` column."""
    columns = file_columns(path, encoding_errors)
    missing = [name for name in required if name not in columns]
    if missing:
        raise InputError(f"{path} has no column(s) {missing}; its columns: {columns}.")


def read_frame(
    path: str | Path,
    *,
    blocksize: str | int | None = "64MiB",
    min_partitions: int = 1,
    encoding_errors: str = "strict",
    backend: str = "pandas",
    storage_options: dict[str, Any] | None = None,
) -> dd.DataFrame:
    """Read parquet, jsonl, csv or tsv file(s) at ``path`` as a dask DataFrame.

    ``path`` may be an fsspec URL; ``storage_options`` go to its filesystem (see
    :mod:`nemo_cls_dask.storage`).

    Small inputs are split into at least ``min_partitions`` partitions so every worker
    has work. ``encoding_errors`` (text formats only): ``"strict"`` fails on invalid UTF-8,
    ``"replace"`` reads it as U+FFFD. ``backend``: ``"pandas"`` or ``"cudf"`` partitions.
    Files are always read by the pandas readers (whatever ``dataframe.backend`` dask is set
    to: dask-cudf's jsonl reader would drop ``encoding_errors``) and then moved to cuDF.
    """
    if encoding_errors not in ENCODING_ERRORS:
        raise InputError(f"encoding_errors must be one of {ENCODING_ERRORS}, got {encoding_errors!r}.")
    if backend not in ("pandas", "cudf"):
        raise InputError(f"backend must be 'pandas' or 'cudf' here, got {backend!r}.")
    with dask.config.set({"dataframe.backend": "pandas"}):
        frame = _read_on_host(location(path, storage_options), blocksize, encoding_errors)
    if frame.npartitions < min_partitions:
        frame = frame.repartition(npartitions=min_partitions)
    return on_backend(frame, backend)


def _read_on_host(path: AnyPath, blocksize: str | int | None, encoding_errors: str) -> dd.DataFrame:
    files, kind = input_files(path)
    remote = {"storage_options": read_options(files[0])} if is_remote(files[0]) else {}
    if kind == "parquet":
        frame = dd.read_parquet([str(p) for p in files], **remote)
    elif kind in ("csv", "tsv"):
        compression = "gzip" if str(files[0]).lower().endswith(".gz") else None
        frame = dd.read_csv(
            [str(p) for p in files],
            sep="," if kind == "csv" else "\t",
            dtype=str,  # text: no per-block type guesses that disagree between blocks
            blocksize=None if compression else blocksize,
            compression=compression,
            encoding_errors=encoding_errors,
            **remote,
        )
    else:
        compression = "gzip" if str(files[0]).endswith(".gz") else None
        # dask's convert-string would turn list values into their Python repr ("['a']"):
        # keep object columns as they are (text columns are strings anyway).
        with dask.config.set({"dataframe.convert-string": False}):
            frame = dd.read_json(
                [str(p) for p in files],
                lines=True,
                blocksize=None if compression else blocksize,
                compression=compression,
                errors=encoding_errors,
                **remote,
            )
    return frame


def output_format(path: str | Path, requested: str | None = None) -> str:
    """``parquet`` or ``jsonl``: as requested, else from the output path's suffix."""
    if requested:
        if requested not in FORMATS:
            raise InputError(f"Output format must be 'parquet' or 'jsonl', got {requested!r}.")
        return requested
    return "jsonl" if _suffix(Path(path)) in JSONL_SUFFIXES else "parquet"


# ---------------------------------------------------------------------------- one file per file


@dataclass(frozen=True)
class FileJob:
    """One input file and the output file it becomes."""

    source: AnyPath
    target: AnyPath
    input_format: str
    output_format: str

    @property
    def done(self) -> bool:
        """True when the output exists as a regular file (written atomically, so complete), or
        as a complete folder of parts (:mod:`nemo_cls_dask.output_parts`)."""
        from .output_parts import is_parts_folder

        return (self.target.is_file() and not self.target.is_symlink()) or is_parts_folder(self.target)


def plan_files(source: str | Path | StoragePath, output: str | Path | StoragePath, fmt: str | None = None) -> list[FileJob]:
    """Pair every input file at ``source`` with its output file under the folder ``output``.

    The relative path is kept and the suffix follows the output format (``fmt``; default:
    the input's format). Either may be an fsspec URL or :class:`~nemo_cls_dask.storage.StoragePath`.
    """
    source, output = location(source), location(output)
    if fmt is not None and fmt not in FORMATS:
        raise InputError(f"Output format must be 'parquet' or 'jsonl', got {fmt!r}.")
    files, kind = input_files(source)
    root = source if source.is_dir() else source.parent
    out_format = fmt or (kind if kind in FORMATS else "parquet")
    jobs: list[FileJob] = []
    seen: dict[AnyPath, AnyPath] = {}
    for file in files:
        relative = file.relative_to(root)
        stem = relative.name[: len(relative.name) - len(_suffix(file))] or relative.name
        target = output / relative.parent / (stem + (".parquet" if out_format == "parquet" else ".jsonl"))
        if target in seen:
            raise InputError(f"Input files {seen[target]} and {file} would both be written to {target}; rename one.")
        seen[target] = file
        jobs.append(FileJob(file, target, kind, out_format))
    return jobs


def _jsonable(frame: pd.DataFrame) -> pd.DataFrame:
    """Arrow list columns as Python lists (pandas' to_json writes them as null otherwise)."""
    listy = [name for name, dtype in frame.dtypes.items() if isinstance(dtype, pd.ArrowDtype) and pa.types.is_list(dtype.pyarrow_dtype)]
    if not listy:
        return frame
    frame = frame.copy(deep=False)
    for name in listy:
        frame[name] = pd.Series(pa.array(frame[name]).to_pylist(), index=frame.index, dtype=object)
    return frame


def readable_pandas_metadata(table: pa.Table) -> pa.Table:
    """Record Arrow list columns as ``object`` in the pandas metadata of ``table``.

    pandas (3.1) writes such columns' dtype as ``"list<item: float>[pyarrow]"`` and then
    cannot parse that string back: ``pd.read_parquet`` fails on its own output. Marked as
    ``object``, they read back as arrays (or as lists with ``dtype_backend="pyarrow"``).
    """
    metadata = table.schema.pandas_metadata
    if not metadata:
        return table
    for column in metadata.get("columns", []):
        if str(column.get("numpy_type", "")).startswith(("list<", "large_list<")):
            column["numpy_type"] = "object"
    return table.replace_schema_metadata({**(table.schema.metadata or {}), b"pandas": json.dumps(metadata).encode()})


def write_parquet(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a pandas frame (index included) as parquet that ``pd.read_parquet`` reads back."""
    import pyarrow.parquet as pq

    pq.write_table(readable_pandas_metadata(pa.Table.from_pandas(frame, preserve_index=True)), path)


def write_atomic(frame: pd.DataFrame, target: str | Path | StoragePath, fmt: str) -> AnyPath:
    """Write a pandas frame to ``target`` so that the final name only ever holds a complete file.

    On another store than the local disk (a :class:`~nemo_cls_dask.storage.StoragePath`),
    the file is built in memory and written by
    :func:`~nemo_cls_dask.storage.write_bytes_atomic` (what that guarantees per store is
    said there). Raises :class:`OutputError` naming the path when the folder cannot be
    created or written (permissions, disk full, a file where a folder should be).
    """
    if is_remote(target):
        return _write_remote(frame, target, fmt)
    target = Path(target)
    temp = temporary_name(target, uuid.uuid4().hex[:12])  # same folder, so os.replace is atomic
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _serialize(frame, temp, fmt)
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except OSError as error:
        _unlink_quietly(temp)
        raise OutputError(f"Cannot write {target}: {error.strerror or error}") from error
    except BaseException:
        _unlink_quietly(temp)
        raise
    return target


def _serialize(frame: pd.DataFrame, destination: Any, fmt: str) -> None:
    """Write ``frame`` as ``fmt`` to a local path or a binary buffer (the same bytes either way)."""
    if fmt == "parquet":
        write_parquet(frame, destination)
    elif fmt == "jsonl":
        _jsonable(frame).to_json(destination, orient="records", lines=True, force_ascii=False, date_format="iso")
    else:
        raise InputError(f"Output format must be 'parquet' or 'jsonl', got {fmt!r}.")


def _write_remote(frame: pd.DataFrame, target: StoragePath, fmt: str) -> StoragePath:
    """Serialize ``frame`` in memory, then write it under ``target`` with one upload and a copy."""
    import io as _bytes_io

    buffer = _bytes_io.BytesIO()
    _serialize(frame, buffer, fmt)
    try:
        write_bytes_atomic(target, buffer.getvalue())
    except OSError as error:
        raise OutputError(f"Cannot write {target}: {error.strerror or error}") from error
    return target


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def write_file_result(
    parts: Sequence[pd.DataFrame],
    target: str | Path | StoragePath,
    fmt: str,
    label_column: str,
    truth_field: str | None = None,
) -> dict[str, Any]:
    """Dask task: join one file's classified partitions, write them atomically, summarize.

    Returns ``{"target", "rows", "labels": {label: count}, "correct", "truth": {label: count}}``.
    """
    frame = to_pandas_frame(concat_frames(parts))  # pandas or cuDF partitions; written from the host
    write_atomic(frame, target, fmt)
    labels = frame[label_column]
    summary: dict[str, Any] = {"target": str(target), "rows": len(frame), "labels": _counts(labels)}
    if truth_field is not None:
        summary["correct"] = int((labels.astype(object) == frame[truth_field].astype(object)).sum())
        summary["truth"] = _counts(frame[truth_field].dropna())
    return summary


def _counts(series: pd.Series) -> dict[Any, int]:
    """Value counts (nulls included under None), also for list columns (as tuples)."""
    values = series.astype(object) if not isinstance(series.dtype, pd.ArrowDtype) else pd.Series(pa.array(series).to_pylist(), dtype=object)
    counts: dict[Any, int] = {}
    for value in values:
        key = tuple(value) if isinstance(value, list) else (None if value is None or value != value else value)
        counts[key] = counts.get(key, 0) + 1
    return counts


def find_invalid_utf8(path: str | Path | StoragePath) -> tuple[int, int] | None:
    """``(line, byte offset)`` of the first invalid UTF-8 byte in a (gzipped) text file, or None."""
    path = location(path)
    line = 1
    offset = 0
    with _open_bytes(path) as handle:
        for raw in handle:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as error:
                return line, offset + error.start
            line += 1
            offset += len(raw)
    return None

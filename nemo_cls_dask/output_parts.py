"""Large input files are written as a folder of ordered parts, so no worker holds a whole file.

A small input file (at most ``part_rows`` rows, the default :data:`DEFAULT_PART_ROWS`) is
written as today: one output file at the input's relative path, by one task that joins
the file's classified partitions. That task holds the whole file, so for a large input its
memory grows with the file. A larger input is therefore cut into **parts** of ``part_rows``
consecutive rows, and its output under the same name becomes a folder of part files, the
layout every parquet reader (pandas, pyarrow, dask, Spark, DuckDB) reads as one dataset::

    OUT/a/big.parquet/part.00000.parquet    rows 0 .. part_rows-1
    OUT/a/big.parquet/part.00001.parquet    the next part_rows rows, ...
    OUT/a/big.parquet/_nemo_cls_dask_parts.json   the plan (input size, rows, part bounds)

``pd.read_parquet("OUT/a/big.parquet")`` returns every row once, in the input's order (part
names are zero-padded, so name order is row order), with the input's row positions as
index. jsonl parts are read in the same order (``cat big.jsonl/part.*.jsonl``). Names
starting with ``_`` or ``.`` are skipped by those readers and by this package.

Why parts rather than streaming one file from one writer: a part is written by the task
that holds it (memory: one part, whatever the file size), parts are classified in parallel
and written atomically one by one, and a run that was interrupted redoes **only the parts
that are missing**. One streamed file could only be resumed from its start.

What stays true, as for single files (:mod:`nemo_cls_dask.files`):

* **complete or absent**: parts are written into a hidden work folder next to the output
  (``OUT/a/.big.parquet.parts/``), each part atomically; only when every part is there is
  the folder renamed to ``big.parquet``. So a name under the output folder is always a
  complete output. With ``overwrite`` an old output (file or parts folder) is replaced
  only after the new one is complete.
* **resume per part**: the work folder keeps its finished parts; the next run classifies
  the missing ones. The plan records the input's size and modification time and the part
  bounds: if the input or ``part_rows`` changed, the stale parts are removed (only the
  names this module writes) and the file is redone.
* parts are cut at fixed row positions, read from the input's metadata (parquet) or one
  pass over its lines (jsonl/csv/tsv, byte offsets remembered so each part is read by a
  seek; gzipped text is read from the start). A csv part whose lines do not parse into
  as many rows (a line break inside a quoted field) fails that file with a clear error
  instead of shifting rows.

Parts are made on local disks only. With an fsspec URL as input or output
(:mod:`nemo_cls_dask.storage`) a file keeps one output, written whole: object stores
cannot rename a folder into place atomically.
"""

from __future__ import annotations

import gzip
import io as _io
import json
import os
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import InputError
from .io import FileJob
from .output_folder import OutputError, temporary_name
from .storage import is_remote

#: Rows per output part, and the size above which an input file is split. At 50,000 rows a
#: part of 2,000-character documents is about 100 MB of text; resume loses at most one part.
DEFAULT_PART_ROWS = 50_000
PLAN_NAME = "_nemo_cls_dask_parts.json"
_PART_NAME = re.compile(r"part\.\d{5,}\.(parquet|jsonl)")
_COUNT_CHUNK = 1 << 20


@dataclass(frozen=True)
class Part:
    """Rows ``start`` (included) to ``stop`` (excluded) of one input file, and where they go."""

    source: Path
    input_format: str
    number: int
    of: int
    start: int
    stop: int
    offset: int | None  # byte offset of row ``start`` (uncompressed text), else None
    target: Path

    @property
    def rows(self) -> int:
        return self.stop - self.start

    def describe(self) -> str:
        return f"part {self.number + 1} of {self.of} (rows {self.start}-{self.stop - 1})"


@dataclass(frozen=True)
class PartedFileJob(FileJob):
    """A :class:`~nemo_cls_dask.io.FileJob` whose output is a folder of parts."""

    parts: tuple[Part, ...] = field(default=(), compare=False)
    plan: str = field(default="", compare=False)  # JSON: what the parts were cut from

    @property
    def work_folder(self) -> Path:
        return self.target.parent / f".{self.target.name}.parts"


# ---------------------------------------------------------------------------- planning


def is_parts_folder(path: Path) -> bool:
    """True when ``path`` is a complete parts folder this module installed (not a link)."""
    if is_remote(path):
        return False  # parts are written on local disks only (see split_large_files)
    plan = path / PLAN_NAME
    return path.is_dir() and not path.is_symlink() and plan.is_file() and not plan.is_symlink()


def output_files(target: Any) -> list[Any]:
    """The files that make up one output, in row order: the file itself, or its parts."""
    if is_remote(target) or not Path(target).is_dir():
        return [target]  # type: ignore[list-item]
    target = Path(target)
    return sorted(p for p in target.iterdir() if _PART_NAME.fullmatch(p.name) and p.is_file())


def split_large_files(jobs: Sequence[FileJob], part_rows: int = DEFAULT_PART_ROWS, *, overwrite: bool = False) -> list[FileJob]:
    """``jobs`` with each input of more than ``part_rows`` rows planned as parts.

    Complete outputs that will be skipped are not inspected. An output that is already a
    parts folder stays one (also when its input became small), so it is replaced in kind.
    Inputs or outputs on a remote store (fsspec URLs) are not split: a folder cannot be
    renamed into place atomically there, so they keep one output file each.
    """
    if not isinstance(part_rows, int) or isinstance(part_rows, bool) or part_rows < 1:
        raise InputError(f"part_rows must be a positive whole number of rows, got {part_rows!r}.")
    planned: list[FileJob] = []
    for job in jobs:
        if (job.done and not overwrite) or is_remote(job.source) or is_remote(job.target):
            planned.append(job)
            continue
        keep_folder = is_parts_folder(job.target)
        try:
            rows, offsets = _row_layout(job.source, job.input_format, part_rows, count_small=keep_folder)
        except (OSError, ValueError, EOFError):
            planned.append(job)  # unreadable: it fails with its reader's error, as a whole file
            continue
        if rows <= part_rows and not keep_folder:
            planned.append(job)
            continue
        planned.append(_parted(job, rows, offsets, part_rows))
    return planned


def _parted(job: FileJob, rows: int, offsets: list[int] | None, part_rows: int) -> PartedFileJob:
    count = max(1, -(-rows // part_rows))
    digits = max(5, len(str(count - 1)))
    suffix = "parquet" if job.output_format == "parquet" else "jsonl"
    work = job.target.parent / f".{job.target.name}.parts"
    parts = tuple(
        Part(job.source, job.input_format, k, count, k * part_rows, min(rows, (k + 1) * part_rows),
             offsets[k] if offsets else None, work / f"part.{k:0{digits}d}.{suffix}")
        for k in range(count)
    )
    info = job.source.stat()
    plan = json.dumps({"source": job.source.name, "size": info.st_size, "mtime_ns": info.st_mtime_ns, "rows": rows,
                       "part_rows": part_rows, "output_format": job.output_format,
                       "parts": [[p.start, p.stop] for p in parts]}, sort_keys=True)
    return PartedFileJob(job.source, job.target, job.input_format, job.output_format, parts=parts, plan=plan)


def _row_layout(path: Path, fmt: str, part_rows: int, count_small: bool = False) -> tuple[int, list[int] | None]:
    """Rows of an input file, and for uncompressed text the byte offset of every part's first row.

    A text file of at most ``2 * part_rows`` bytes cannot hold more than ``part_rows`` rows:
    it is not read (0 is returned) unless ``count_small``.
    """
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.read_metadata(path).num_rows, None
    compressed = path.name.lower().endswith(".gz")
    if not compressed and not count_small and path.stat().st_size <= 2 * part_rows:  # a row takes at least 2 bytes
        return 0, None  # small for sure: not counted
    rows, offsets, position = 0, [], 0
    with (gzip.open(path, "rb") if compressed else open(path, "rb")) as handle:
        if fmt in ("csv", "tsv"):
            position += len(handle.readline())  # the header
        for line in handle:
            if line.strip():
                if rows % part_rows == 0:
                    offsets.append(position)
                rows += 1
            position += len(line)
    return rows, None if compressed else offsets


# ---------------------------------------------------------------------------- reading one part


def read_part(part: Part, encoding_errors: str = "strict") -> pd.DataFrame:
    """The rows of one part as pandas, indexed by their row positions in the input file."""
    if part.input_format == "parquet":
        return _read_parquet_rows(part.source, part.start, part.stop)
    return _read_text_rows(part, encoding_errors)


def _read_parquet_rows(path: Path, start: int, stop: int) -> pd.DataFrame:
    """Rows ``start:stop`` of a parquet file, decoding only the row groups they lie in."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    handle = pq.ParquetFile(path)
    groups, first, position = [], None, 0
    for group in range(handle.metadata.num_row_groups):
        size = handle.metadata.row_group(group).num_rows
        if position < stop and position + size > start:
            groups.append(group)
            first = position if first is None else first
        position += size
    batches, seen = [], first or 0
    for batch in handle.iter_batches(batch_size=min(65_536, max(1, stop - start)), row_groups=groups):
        low, high = max(start, seen), min(stop, seen + batch.num_rows)
        if high > low:
            batches.append(batch.slice(low - seen, high - low))
        seen += batch.num_rows
        if seen >= stop:
            break
    table = pa.Table.from_batches(batches, schema=handle.schema_arrow)
    frame = table.to_pandas()
    index = (handle.schema_arrow.pandas_metadata or {}).get("index_columns", [])
    if not index or (isinstance(index[0], dict) and index[0].get("kind") == "range"):
        meta = index[0] if index else {"start": 0, "step": 1}
        step = meta.get("step", 1)
        frame.index = pd.RangeIndex(meta.get("start", 0) + start * step, meta.get("start", 0) + stop * step, step)
    return frame


def _read_text_rows(part: Part, encoding_errors: str) -> pd.DataFrame:
    """Rows of a jsonl/csv/tsv part: its non-blank lines, parsed as pandas reads the file."""
    compressed = part.offset is None
    with (gzip.open(part.source, "rb") if compressed else open(part.source, "rb")) as handle:
        header = handle.readline() if part.input_format in ("csv", "tsv") else b""
        if not compressed:
            handle.seek(part.offset)
        lines, row = [], 0 if not compressed else -part.start
        for line in handle:
            if not line.strip():
                continue
            if row >= 0:
                lines.append(line if line.endswith(b"\n") else line + b"\n")
                if len(lines) == part.rows:
                    break
            row += 1
    text = (header + b"".join(lines)).decode("utf-8", errors=encoding_errors)
    if part.input_format == "jsonl":
        frame = pd.read_json(_io.StringIO(text), lines=True, orient="records")
    else:
        frame = pd.read_csv(_io.StringIO(text), sep="," if part.input_format == "csv" else "\t", dtype=str)
    if len(frame) != part.rows or len(lines) != part.rows:
        raise InputError(
            f"{part.source}: {part.describe()} parsed into {len(frame)} rows from {len(lines)} lines; a line break inside "
            f"a quoted field cannot be cut into parts. Pass a larger part_rows (--part-rows) than the file's rows."
        )
    frame.index = pd.RangeIndex(part.start, part.start + len(frame))
    return frame


def part_frame(part: Part, *, min_partitions: int = 1, encoding_errors: str = "strict", backend: str = "pandas") -> Any:
    """One part as a dask DataFrame of ``min_partitions`` partitions (its first row is read here, as meta)."""
    import dask.dataframe as dd

    from .frames import on_backend

    meta = read_part(replace(part, stop=part.start + 1), encoding_errors).iloc[:0]
    frame = dd.from_map(read_part, [part], encoding_errors=encoding_errors, meta=meta, enforce_metadata=False)
    if min_partitions > 1:
        frame = frame.repartition(npartitions=min(min_partitions, part.rows))
    return on_backend(frame, backend)


# ---------------------------------------------------------------------------- the work folder


def prepare_work_folder(job: PartedFileJob, overwrite: bool) -> tuple[list[Part], str | None]:
    """Create the work folder; return the parts still to write and a note when old parts were dropped.

    Finished parts of an earlier run with the same plan are kept (resume per part). With
    ``overwrite``, or when the input or the plan changed, they are removed first.
    """
    work = job.work_folder
    if work.is_symlink() or (work.exists() and not work.is_dir()):
        raise OutputError(f"{work} is not a folder this run made; move it away (it is where {job.target}'s parts are written).")
    note = None
    old_plan = work / PLAN_NAME
    if work.is_dir():
        stale = overwrite or not old_plan.is_file() or old_plan.read_text() != job.plan
        existing = [p for p in work.iterdir() if _PART_NAME.fullmatch(p.name) and p.is_file() and not p.is_symlink()]
        if stale and existing:
            for path in existing:
                path.unlink()
            note = (f"removed {len(existing)} part(s) of an earlier run of {job.source} "
                    + ("(--overwrite)" if overwrite else "(the input or --part-rows changed)"))
    try:
        work.mkdir(parents=True, exist_ok=True)
        _write_text_atomic(old_plan, job.plan)
    except OSError as error:
        raise OutputError(f"Cannot write {work}: {error.strerror or error}") from error
    return [part for part in job.parts if not (part.target.is_file() and not part.target.is_symlink())], note


def part_temporaries(jobs: Iterable[FileJob]) -> list[Path]:
    """Targets whose writer temporaries a killed run may have left: the parts of parted jobs."""
    return [part.target for job in jobs if isinstance(job, PartedFileJob) for part in job.parts]


def install(job: PartedFileJob) -> None:
    """Rename the complete work folder to the output name, replacing an old output only now."""
    missing = [part.describe() for part in job.parts if not part.target.is_file()]
    if missing:
        raise OutputError(f"{job.target} is not complete: {', '.join(missing)} missing from {job.work_folder}.")
    target = job.target
    if not os.path.lexists(target):
        os.rename(job.work_folder, target)
        return
    if target.is_symlink() or not (target.is_file() or is_parts_folder(target)):
        raise OutputError(f"{target} exists and is not an output of this package; it was left as it is "
                          f"(the new output is complete in {job.work_folder}).")
    aside = temporary_name(target, uuid.uuid4().hex[:12])
    os.rename(target, aside)
    os.rename(job.work_folder, target)
    _remove_output(aside)


def _remove_output(path: Path) -> None:
    """Remove an old output moved aside: a file, or a parts folder holding only names this module writes."""
    if path.is_file():
        path.unlink()
        return
    for child in path.iterdir():
        if (_PART_NAME.fullmatch(child.name) or child.name == PLAN_NAME) and child.is_file() and not child.is_symlink():
            child.unlink()
    try:
        path.rmdir()
    except OSError:
        pass  # something else is in there: left for its owner


def _write_text_atomic(path: Path, text: str) -> None:
    temp = temporary_name(path, uuid.uuid4().hex[:12])
    try:
        temp.write_text(text)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


# ---------------------------------------------------------------------------- one run's bookkeeping


@dataclass(frozen=True)
class WriteUnit:
    """What one writer task writes: a whole small file, or one part of a large one."""

    job: FileJob
    target: Path
    part: Part | None = None

    @property
    def rows(self) -> int | None:
        """Rows known before reading (parts and parquet inputs), else None."""
        if self.part is not None:
            return self.part.rows
        if self.job.input_format == "parquet":
            import pyarrow.parquet as pq

            try:
                with self.job.source.open("rb") as handle:
                    return pq.read_metadata(handle).num_rows
            except (OSError, ValueError):
                return None
        return None

    def read(self, *, min_partitions: int, encoding_errors: str, backend: str) -> Any:
        """This unit's input rows as a dask DataFrame."""
        from .io import read_frame

        if self.part is None:
            return read_frame(self.job.source, min_partitions=min_partitions, encoding_errors=encoding_errors, backend=backend)
        return part_frame(self.part, min_partitions=min_partitions, encoding_errors=encoding_errors, backend=backend)

    def where(self) -> str | None:
        return self.part.describe() if self.part is not None else None


def write_units(jobs: Sequence[FileJob], overwrite: bool) -> tuple[list[WriteUnit], list[str], dict[Path, str]]:
    """One unit per small file and per missing part of a large one.

    Also returns notes on dropped parts, and ``{target: problem}`` for files whose work
    folder cannot be used (those get no unit).
    """
    units: list[WriteUnit] = []
    notes: list[str] = []
    problems: dict[Path, str] = {}
    for job in jobs:
        if not isinstance(job, PartedFileJob):
            units.append(WriteUnit(job, job.target))
            continue
        try:
            todo, note = prepare_work_folder(job, overwrite)
        except OutputError as error:
            problems[job.target] = str(error)
            continue
        notes += [note] if note else []
        units += [WriteUnit(job, part.target, part) for part in todo]
    return units, notes, problems


def has_parts(job: FileJob) -> bool:
    """True when a large input's work folder holds parts of an earlier run (outputs, for the manifest check)."""
    work = job.work_folder if isinstance(job, PartedFileJob) else None
    return bool(work and work.is_dir() and not work.is_symlink() and any(_PART_NAME.fullmatch(p.name) for p in work.iterdir()))


class FileAssembly:
    """Collects the units of each file as they finish; says when a file is complete."""

    def __init__(self, jobs: Sequence[FileJob], units: Sequence[WriteUnit]) -> None:
        self.left = Counter(unit.job.target for unit in units)
        self.summaries: dict[Path, list[dict[str, Any]]] = defaultdict(list)
        self.errors: dict[Path, list[str]] = defaultdict(list)
        self.ready = [job for job in jobs if not self.left[job.target]]  # every part already written

    def finish(self, unit: WriteUnit, summary: dict[str, Any] | None = None, error: str | None = None) -> bool:
        """Record one unit; True when it was its file's last."""
        if error is not None:
            self.errors[unit.job.target].append(error)
        else:
            self.summaries[unit.job.target].append(summary or {})
        self.left[unit.job.target] -= 1
        return self.left[unit.job.target] == 0

    def summary(self, job: FileJob) -> dict[str, Any]:
        """The file's summary over the units written in this run (rows, label and truth counts)."""
        summaries = self.summaries.get(job.target, [])
        total: dict[str, Any] = {"target": str(job.target), "rows": sum(s.get("rows", 0) for s in summaries),
                                 "labels": _add(s.get("labels", {}) for s in summaries),
                                 "parts": len(summaries) if isinstance(job, PartedFileJob) else None}
        if any("correct" in s for s in summaries):
            total["correct"] = sum(s.get("correct", 0) for s in summaries)
            total["truth"] = _add(s.get("truth", {}) for s in summaries)
        return total


def _add(counts: Iterable[dict[Any, int]]) -> dict[Any, int]:
    total: Counter = Counter()
    for one in counts:
        total.update(one)
    return dict(total)

"""The teacher's pass over the pool, written to disk partition by partition (resumable).

The work folder belongs to one distillation: :func:`check_work_dir` accepts a new folder (or
an empty folder, or one whose ``distill_manifest.json`` names the same teacher, input
partitioning and columns) and refuses anything else, so a run never writes into, or
deletes from, a folder it did not create. Each input partition ``k`` becomes
``outputs/part-0000k.parquet`` (row position, text, truth, the teacher's label and
scores), written by the worker that ran the teacher, first to a temporary name and then
renamed, so a file that exists is complete. An interrupted run leaves the finished
partitions; the next run with the same work folder runs the teacher only on the missing
ones, and checks that the finished ones still hold the input's texts.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import frames
from ..errors import InputError
from .teacher import LABEL_COLUMN, SCORES_COLUMN, Teacher, scores_matrix

MANIFEST = "distill_manifest.json"
OUTPUTS = "outputs"
TEACHER_DIR = "teacher"
FORMAT = 1
_DIGEST_KEY = b"nemo_cls_dask_texts_sha256"


def check_work_dir(path: str | os.PathLike) -> Path:
    """``path`` as a Path if it is new, empty, or made by a distillation; else raise (nothing is created)."""
    folder = Path(path)
    if folder.is_symlink():
        raise InputError(f"work_dir {folder} is a symbolic link; pass a real folder (a run never follows links).")
    if folder.exists():
        if not folder.is_dir():
            raise InputError(f"work_dir {folder} exists and is not a folder.")
        if any(folder.iterdir()) and not (folder / MANIFEST).is_file():
            raise InputError(
                f"work_dir {folder} holds files that no distillation wrote (no {MANIFEST}); pass a new or empty folder."
            )
        for name in (OUTPUTS, TEACHER_DIR):
            sub = folder / name
            if sub.is_symlink() or (sub.exists() and not sub.is_dir()):
                raise InputError(f"{sub} is not a plain folder; this work_dir was not made by a distillation.")
    return folder


def create_work_dir(folder: Path) -> Path:
    """Create the (checked) work folder and its ``outputs`` folder."""
    (folder / OUTPUTS).mkdir(parents=True, exist_ok=True)
    return folder


def check_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest of a new work folder, or check that an old one describes this run."""
    path = folder / MANIFEST
    manifest = {"format": FORMAT, **manifest}
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        differs = sorted(key for key in set(old) | set(manifest) if old.get(key) != manifest.get(key))
        if differs:
            raise InputError(
                f"work_dir {folder} holds teacher outputs of another run (different {', '.join(differs)}); "
                f"pass a new work_dir, or delete this one yourself to start over."
            )
        return
    path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")


@dataclass
class TeacherPass:
    """What the teacher said about the pool, and what this run paid for it."""

    rows: pd.DataFrame  # partition, position, text, [truth], [teacher_label]; in input order
    scores: np.ndarray  # (rows, outputs) float32: probabilities, or regression values
    labelled_now: list[int] = field(default_factory=list)  # partitions the teacher ran on in this run
    reused: list[int] = field(default_factory=list)  # partitions read back from an earlier run
    seconds: float = 0.0  # wall time of this run's pass


def part_path(folder: Path, partition: int) -> Path:
    return folder / OUTPUTS / f"part-{partition:05d}.parquet"


def run_teacher(ddf: Any, teacher: Teacher, text_field: str, truth_field: str | None, folder: Path) -> TeacherPass:
    """Label every partition of ``ddf`` that has no output file yet, on the current dask scheduler."""
    import dask

    columns = [text_field] + ([truth_field] if truth_field else [])
    parts = ddf[columns].to_delayed()
    operator = dask.delayed(teacher.operator, pure=True)
    tasks, done = [], []
    for k, part in enumerate(parts):
        path = part_path(folder, k)
        if path.is_file():
            done.append(k)
            tasks.append(dask.delayed(texts_digest)(part, text_field))
        else:
            tasks.append(dask.delayed(label_partition)(part, operator, text_field, truth_field, teacher.problem,
                                                       len(teacher.output_names), k, str(path)))
    started = time.perf_counter()
    results = dask.compute(*tasks)
    seconds = time.perf_counter() - started
    for k in done:
        stored = _stored_digest(part_path(folder, k))
        if stored != results[k]:
            raise InputError(
                f"Partition {k} of the input no longer holds the texts the teacher labelled in {folder}; the input "
                f"changed. Pass a new work_dir (or delete this one yourself)."
            )
    frames_, scores = [], []
    width = len(teacher.output_names)
    for k in range(len(parts)):
        table = _read(part_path(folder, k))
        scores.append(scores_matrix(frames.text_values(table.pop("teacher_scores")), width))
        frames_.append(table)
    rows = pd.concat(frames_, ignore_index=True) if frames_ else pd.DataFrame()
    matrix = np.concatenate(scores) if scores else np.zeros((0, width), np.float32)
    labelled = [k for k in range(len(parts)) if k not in set(done)]
    return TeacherPass(rows, matrix, labelled, done, seconds)


def texts_digest(part: pd.DataFrame, text_field: str) -> str:
    """SHA-256 of a partition's text column (nulls and non-strings marked apart from text)."""
    digest = hashlib.sha256()
    for value in frames.text_values(part[text_field]):
        if isinstance(value, str):
            digest.update(b"\x01" + value.encode("utf-8", "surrogatepass") + b"\x00")
        else:
            digest.update(b"\x02")
    return digest.hexdigest()


def label_partition(part: pd.DataFrame, operator: Any, text_field: str, truth_field: str | None, problem: str,
                    width: int, partition: int, path: str) -> str:
    """Run the teacher on one partition and write its outputs; returns the texts' digest.

    Runs on a worker. The file appears under its final name only once complete.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = operator(part[[text_field]])
    texts = [v if isinstance(v, str) else None for v in frames.text_values(part[text_field])]
    arrays: dict[str, Any] = {
        "partition": pa.array(np.full(len(part), partition, dtype=np.int32)),
        "position": pa.array(np.arange(len(part), dtype=np.int64)),
        "text": pa.array(texts, type=pa.string()),
    }
    if truth_field:
        arrays["truth"] = _truth_array(frames.text_values(part[truth_field]), truth_field)
    labels = frames.text_values(out[LABEL_COLUMN])
    if problem == "regression":
        values = scores_matrix(labels, width)
    else:
        kind = pa.string() if problem == "single_label" else pa.list_(pa.string())
        arrays["teacher_label"] = pa.array([_plain(v) for v in labels], type=kind)
        values = None
    if values is None:
        cells = [_plain(v) for v in frames.text_values(out[SCORES_COLUMN])]
    else:
        cells = [None if np.isnan(row).any() else row.tolist() for row in values]
    arrays["teacher_scores"] = pa.array(cells, type=pa.list_(pa.float32()))
    digest = texts_digest(part, text_field)
    table = pa.table(arrays).replace_schema_metadata({_DIGEST_KEY: digest.encode()})
    temporary = f"{path}.tmp-{uuid.uuid4().hex}"
    try:
        pq.write_table(table, temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return digest


def _plain(value: Any) -> Any:
    """A cell as plain Python (lists for array cells, None for nulls)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if value is None or (not isinstance(value, (list, tuple)) and pd.isna(value)):
        return None
    return value


def _truth_array(values: list[Any], name: str) -> Any:
    import pyarrow as pa

    try:
        return pa.array([_plain(v) for v in values])
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise InputError(f"truth column {name!r} mixes value types ({error}); give labels of one type.") from error


def _stored_digest(path: Path) -> str | None:
    import pyarrow.parquet as pq

    metadata = pq.read_schema(path).metadata or {}
    value = metadata.get(_DIGEST_KEY)
    return value.decode() if value is not None else None


def _read(path: Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pandas()

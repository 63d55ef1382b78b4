"""``distill``: train a fast student on a slow teacher's outputs over a dask frame.

>>> from nemo_cls_dask import distill, get_client
>>> client = get_client()
>>> result = distill("debian-topics", "tfidf", dd.read_parquet("pool/"), text_field="text",
...                  work_dir="runs/teacher-outputs", model_out="runs/student")
>>> print(result.summary())

1. The teacher labels every partition on the current dask scheduler (the distributed
   client, if one is active), each partition's outputs written to
   ``work_dir/outputs/`` as soon as it is done (:mod:`.store`); a rerun after an
   interruption pays the teacher only for the missing partitions.
2. Rows are split by a seeded hash of their text (:mod:`.split`): ``heldout_fraction`` is
   held out, the rest trains the student on the teacher's probabilities where it can
   take them, else its labels (:mod:`.students`).
3. The student is saved to ``model_out`` and loaded back from there to be measured on the
   held-out rows against the teacher (and the truth, if given): agreement, accuracy and
   both models' docs/s on the same scheduler (:mod:`.report`).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import frames
from ..errors import InputError
from . import store
from .report import DistillResult, against_truth, agreement
from .split import check_fraction, heldout_mask, unit_hashes
from .students import (
    STUDENT_LABEL,
    STUDENT_SCORES,
    choose_targets,
    fit_student,
    prepare_student,
    save_student,
    saved_operator,
)
from .teacher import LABEL_COLUMN, SCORES_COLUMN, Teacher, as_teacher, scores_matrix, settle
from .true_labels import true_label_targets

REPORT_FILE = "distill_report.json"


def distill(
    teacher: Any,
    student: Any,
    ddf: Any,
    *,
    work_dir: str | os.PathLike,
    model_out: str | os.PathLike,
    text_field: str = "text",
    truth_field: str | None = None,
    heldout_fraction: float = 0.1,
    seed: int = 0,
    targets: str = "auto",
    soft_min_prob: float = 0.01,
    max_train_rows: int | None = None,
    speed_rows: int | None = 500,
    labelled: pd.DataFrame | None = None,
    labelled_field: str = "label",
) -> DistillResult:
    """Distil ``teacher`` into ``student`` on the texts of ``ddf``; save and measure the student.

    Parameters
    ----------
    teacher
        A :class:`~nemo_cls_dask.DistributedDataClassifier` (any NVIDIA class too), a
        checkpoint folder or hub id, a fitted ``TextClassifier``/``KimCNNClassifier``
        (saved into ``work_dir/teacher`` so the workers load it), or a fitted
        ``SklearnTextClassifier`` or its ``as_operator()``. Single-label, multi-label and
        regression teachers each give a student of the same kind.
    student
        ``"tfidf"``, ``"kimcnn-word"``, ``"kimcnn-char"``, ``"minilm-head"`` (frozen MiniLM
        + trained head) or ``"minilm"`` (fine-tuned), or an unfitted
        ``SklearnTextClassifier``/``KimCNNClassifier``/``TextClassifier`` whose ``problem``
        is the teacher's (it is cloned, never changed).
    ddf
        The unlabelled pool: a dask (or pandas) DataFrame with ``text_field``. Rows with
        null or blank text are counted and left out.
    work_dir
        Folder for the teacher's outputs; created, or reused only if an earlier
        distillation of the same teacher over the same partitioning made it (resume).
    model_out
        Folder the student is saved to; it must not exist yet, or be empty.
    truth_field
        Optional column of true labels (values for regression) to score both models on.
    heldout_fraction, seed
        Share of rows held out for the report, chosen by a seeded hash of their text.
    targets
        ``"auto"`` (probabilities where the student can learn them, else labels),
        ``"soft"`` (fail if it cannot) or ``"hard"`` (the teacher's labels).
    soft_min_prob
        Soft targets: classes under this teacher probability are dropped from a row's
        target (the rest renormalized); the teacher's label is always kept.
    max_train_rows
        Train on at most this many rows (a seeded-hash subset: smaller subsets are inside
        larger ones). None: every training row.
    speed_rows
        Held-out rows both models are timed on (None: all of them; 0: no timing). Timing
        runs the teacher once more over these rows.
    labelled, labelled_field
        Optional true-labelled rows (a pandas frame with ``text_field`` and
        ``labelled_field``) the student trains on too, beside the teacher's outputs
        (:mod:`.true_labels`); they are never held out or sent to the teacher.
    """
    started = time.perf_counter()
    ddf = _as_dask(ddf)
    _check_arguments(ddf, text_field, truth_field, heldout_fraction, seed, soft_min_prob, max_train_rows, speed_rows)
    out_dir = check_model_out(model_out)
    folder = store.check_work_dir(work_dir)
    with tempfile.TemporaryDirectory(prefix="nemo-cls-dask-teacher-") as staging:
        wrapped = as_teacher(teacher, text_field, Path(staging) / "checkpoint")
        learner = prepare_student(student, wrapped.problem, seed=seed)
        kind = choose_targets(learner, targets)
        extra = None if labelled is None else true_label_targets(labelled, text_field, labelled_field, wrapped)
        store.create_work_dir(folder)
        store.check_manifest(folder, {
            "teacher": wrapped.fingerprint, "problem": wrapped.problem, "outputs": list(wrapped.output_names),
            "text_field": text_field, "truth_field": truth_field, "npartitions": int(ddf.npartitions),
        })
        wrapped = settle(wrapped, folder / store.TEACHER_DIR)

    passed = store.run_teacher(ddf, wrapped, text_field, truth_field, folder)
    rows, scores = passed.rows, passed.scores
    usable = rows["text"].map(lambda t: isinstance(t, str) and bool(t.strip())).to_numpy() & ~np.isnan(scores).any(axis=1)
    texts = rows["text"].to_numpy(dtype=object)
    held = np.zeros(len(rows), dtype=bool)
    held[usable] = heldout_mask(texts[usable], heldout_fraction, seed)
    train = np.flatnonzero(usable & ~held)
    if max_train_rows is not None and len(train) > max_train_rows:
        order = np.argsort(unit_hashes(texts[train], seed, "train-order"), kind="stable")
        train = np.sort(train[order[:max_train_rows]])
    heldout = np.flatnonzero(held)
    if len(train) == 0 or len(heldout) == 0:
        raise InputError(f"The pool has {int(usable.sum())} rows with text: too few to train on and hold out "
                         f"{heldout_fraction:.0%}; give more rows or change heldout_fraction.")
    teacher_labels = rows["teacher_label"].to_numpy(dtype=object) if "teacher_label" in rows else None

    train_texts, train_scores = list(texts[train]), scores[train]
    train_labels = None if teacher_labels is None else list(teacher_labels[train])
    if extra is not None:
        train_texts, train_scores = train_texts + extra[0], np.concatenate([train_scores, extra[1]])
        train_labels = None if train_labels is None else train_labels + extra[2]
    fit_started = time.perf_counter()
    fitted = fit_student(learner, train_texts, train_scores, train_labels, wrapped.problem,
                         wrapped.output_names, kind, seed=seed, soft_min_prob=soft_min_prob)
    fit_seconds = time.perf_counter() - fit_started
    save_student(fitted, out_dir)

    evaluation = rows.iloc[heldout].reset_index(drop=True)
    operator = saved_operator(out_dir, "text", wrapped.problem)
    student_labels, student_values = _outputs(operator, evaluation[["text"]], ddf.npartitions, wrapped, STUDENT_LABEL, STUDENT_SCORES)
    teacher_held = None if teacher_labels is None else list(teacher_labels[heldout])
    student_metrics = agreement(wrapped.problem, student_labels, student_values, teacher_held or [], scores[heldout])
    teacher_metrics: dict[str, float] = {}
    if truth_field:
        truth = list(evaluation["truth"])
        student_metrics |= against_truth(wrapped.problem, student_labels, student_values, truth)
        teacher_metrics = against_truth(wrapped.problem, teacher_held or [], scores[heldout], truth)

    timed = evaluation[["text"]] if speed_rows is None else evaluation[["text"]].iloc[:speed_rows]
    student_speed = teacher_speed = None
    if len(timed):
        parts = min(ddf.npartitions, max(1, len(timed) // 64))
        student_speed = docs_per_second(operator, timed, parts)
        teacher_speed = docs_per_second(_renamed_teacher(wrapped, "text"), timed, parts)

    notes = []
    if out_dir.joinpath("student.joblib").is_file():
        notes.append(f"note: {out_dir / 'student.joblib'} is a joblib pickle; load it with "
                     f"SklearnTextClassifier.load(path, allow_pickle=True) only if you trust it.")
    result = DistillResult(
        student=fitted, path=str(out_dir), problem=wrapped.problem, targets=kind, labels=wrapped.labels,
        pool_rows=len(rows), null_text_rows=int((~usable).sum()), train_rows=len(train), heldout_rows=len(heldout),
        student_metrics=student_metrics, teacher_metrics=teacher_metrics, student_docs_per_s=student_speed,
        teacher_docs_per_s=teacher_speed, speed_rows=len(timed), teacher_partitions_run=passed.labelled_now,
        teacher_partitions_reused=passed.reused, teacher_seconds=passed.seconds, fit_seconds=fit_seconds, notes=notes,
        labelled_rows=0 if extra is None else len(extra[0]),
    )
    (out_dir / REPORT_FILE).write_text(result.to_json() + "\n", encoding="utf-8")
    result.notes.append(f"total {time.perf_counter() - started:.1f}s")
    return result


def _as_dask(frame: Any) -> Any:
    import dask.dataframe as dd

    if frames.is_dask(frame):
        return frame
    if isinstance(frame, pd.DataFrame):
        return dd.from_pandas(frame, npartitions=max(1, min(64, len(frame) // 1000)))
    raise InputError(f"ddf must be a dask or pandas DataFrame, got a {type(frame).__name__}.")


def _check_arguments(ddf: Any, text_field: str, truth_field: str | None, heldout_fraction: float, seed: Any,
                     soft_min_prob: Any, max_train_rows: Any, speed_rows: Any) -> None:
    columns = list(ddf.columns)
    if text_field not in columns:
        raise InputError(f"Text column {text_field!r} is not in the DataFrame; its columns are {columns}.")
    if truth_field is not None and truth_field not in columns:
        raise InputError(f"truth_field {truth_field!r} is not in the DataFrame; its columns are {columns}.")
    if truth_field == text_field:
        raise InputError("truth_field and text_field must be different columns.")
    check_fraction("heldout_fraction", heldout_fraction)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InputError(f"seed must be an integer, got {seed!r}.")
    if isinstance(soft_min_prob, bool) or not isinstance(soft_min_prob, (int, float)) or not 0 <= soft_min_prob < 1:
        raise InputError(f"soft_min_prob must be a number in [0, 1), got {soft_min_prob!r}.")
    for name, value in (("max_train_rows", max_train_rows), ("speed_rows", speed_rows)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0
                                  or (name == "max_train_rows" and value == 0)):
            raise InputError(f"{name} must be a {'positive' if name == 'max_train_rows' else 'non-negative'} integer "
                             f"or None, got {value!r}.")


def check_model_out(path: str | os.PathLike) -> Path:
    """``model_out`` as a Path; raises unless it is new or an empty folder (never a link)."""
    folder = Path(path)
    if folder.is_symlink():
        raise InputError(f"model_out {folder} is a symbolic link; pass a new folder.")
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise InputError(f"model_out {folder} already exists and is not an empty folder; pass a new one "
                         f"(a distillation never overwrites files).")
    return folder


def _frame(pdf: pd.DataFrame, npartitions: int) -> Any:
    import dask.dataframe as dd

    return dd.from_pandas(pdf, npartitions=max(1, min(npartitions, len(pdf))), sort=False)


def _outputs(operator: Any, pdf: pd.DataFrame, npartitions: int, teacher: Teacher, label: str,
             scores: str) -> tuple[list[Any], np.ndarray]:
    """An operator's labels and values (probabilities, or regression values) on ``pdf``, via dask."""
    out = operator(_frame(pdf, npartitions)).compute()
    labels = frames.text_values(out[label])
    width = len(teacher.output_names)
    if teacher.problem == "regression":
        return labels, scores_matrix(labels, width)
    return labels, scores_matrix(frames.text_values(out[scores]), width)


def docs_per_second(operator: Any, pdf: pd.DataFrame, npartitions: int) -> float:
    """Rows per second of ``operator`` (lazy over dask frames) on ``pdf`` split into
    ``npartitions``, on the current scheduler, after a warm-up on two rows per partition
    (so model loading is not counted)."""
    frame = _frame(pdf, npartitions)
    warm = frame.map_partitions(_first_rows, meta=frame._meta)
    operator(warm).compute()
    started = time.perf_counter()
    operator(frame).compute()
    return len(pdf) / (time.perf_counter() - started)


def _first_rows(part: pd.DataFrame) -> pd.DataFrame:
    return part.head(2)


def _renamed_teacher(teacher: Teacher, text_field: str) -> Any:
    """The teacher's operator reading ``text_field`` (its outputs keep the reserved names)."""
    import copy

    operator = copy.copy(teacher.operator)
    operator.text_field = text_field
    if hasattr(operator, "_info"):
        operator._info = None
    return operator


__all__ = ["distill", "DistillResult", "LABEL_COLUMN", "SCORES_COLUMN"]

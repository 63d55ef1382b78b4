"""The teacher of a distillation, seen through one uniform set of output columns.

Whatever the teacher is (a ready-made NVIDIA class, any
:class:`~nemo_cls_dask.DistributedDataClassifier`, a checkpoint folder or hub id, a fitted
estimator with ``save_pretrained``, a fitted
:class:`~nemo_cls_dask.SklearnTextClassifier` or its operator), :func:`as_teacher` turns it
into an operator that writes two columns of its own:

* :data:`LABEL_COLUMN`: the teacher's label (a list of labels for multi-label; the value,
  or a list of values, for regression), exactly as the operator decides it;
* :data:`SCORES_COLUMN` (classifiers only): the probabilities, in label order.

A classifier whose ``postprocess`` is the base class's keeps its own class (and hooks such
as ``probabilities``); one with its own column layout (the FineWeb-Edu classes: clipped
score and integer score) is read through a plain ``DistributedDataClassifier`` over the
same checkpoint and reading options, so the student learns the model's own outputs.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..classifiers.base import DistributedDataClassifier
from ..errors import InputError
from ..lightweight.sklearn_adapter import SklearnOperator, SklearnTextClassifier

LABEL_COLUMN = "__teacher_label__"
SCORES_COLUMN = "__teacher_scores__"
PROBLEMS = {
    "single_label_classification": "single_label",
    "multi_label_classification": "multi_label",
    "regression": "regression",
}
#: Options of :class:`DistributedDataClassifier` that change how text is read and run,
#: carried over from a teacher with its own column layout.
READING_OPTIONS = (
    "max_chars", "max_seq_length", "padding_side", "sort_by_length", "batch_tokens", "max_batch_rows",
    "autocast", "device", "cache_dir", "long_documents", "chunk_overlap",
)  # fmt: skip


@dataclass
class Teacher:
    """A teacher ready to label partitions.

    ``operator(part)`` adds :data:`LABEL_COLUMN` (and :data:`SCORES_COLUMN` for classifiers)
    to a pandas frame; ``problem`` is ``"single_label"``, ``"multi_label"`` or
    ``"regression"``; ``output_names`` are the labels (classifiers) or the names of the
    regression outputs; ``fingerprint`` changes whenever the model or its options do.
    """

    operator: Any
    problem: str
    output_names: tuple[str, ...]
    fingerprint: str
    description: str
    #: A fitted estimator's checkpoint, saved in a staging folder until :func:`settle` moves it.
    staged: Path | None = None

    @property
    def labels(self) -> tuple[str, ...] | None:
        return None if self.problem == "regression" else self.output_names


def as_teacher(teacher: Any, text_field: str, staging_dir: Path) -> Teacher:
    """Wrap ``teacher`` (see the module docstring). A fitted estimator is saved
    (``save_pretrained``) to ``staging_dir``; :func:`settle` then moves it into the work
    folder, where the cluster loads it like any checkpoint folder."""
    if isinstance(teacher, (str, os.PathLike)):
        return _from_classifier(DistributedDataClassifier(model_identifier=teacher, text_field=text_field), text_field)
    if isinstance(teacher, DistributedDataClassifier):
        return _from_classifier(teacher, text_field)
    if isinstance(teacher, SklearnOperator):
        return _from_sklearn(teacher.model, text_field, teacher.max_chars)
    if isinstance(teacher, SklearnTextClassifier):
        return _from_sklearn(teacher, text_field, None)
    if hasattr(teacher, "save_pretrained") and hasattr(teacher, "predict_proba"):
        if getattr(teacher, "model_", None) is None:
            raise InputError(f"The teacher {type(teacher).__name__} is not fitted; fit it first (or pass its saved folder).")
        teacher.save_pretrained(staging_dir)
        operator = DistributedDataClassifier(model_identifier=staging_dir, text_field=text_field)
        wrapped = _from_classifier(operator, text_field, what=f"fitted {type(teacher).__name__}", staged=True)
        wrapped.staged = Path(staging_dir)
        return wrapped
    raise InputError(
        f"Cannot use a {type(teacher).__name__} as a teacher; pass a DistributedDataClassifier (or an NVIDIA "
        f"class), a checkpoint folder or hub id, a fitted TextClassifier/KimCNNClassifier, or a fitted "
        f"SklearnTextClassifier (or its as_operator())."
    )


def settle(teacher: Teacher, home: Path) -> Teacher:
    """Move a staged checkpoint to ``home/<fingerprint>`` (kept if already there: same
    fingerprint, same files) and point the teacher's operator at it."""
    if teacher.staged is None:
        return teacher
    target = home / teacher.fingerprint[:16]
    if not target.is_dir():
        home.mkdir(parents=True, exist_ok=True)
        shutil.move(str(teacher.staged), str(target))
    operator = copy.copy(teacher.operator)
    operator.model_identifier = str(target)
    operator._info = None
    operator.describe()
    return dataclasses.replace(teacher, operator=operator, staged=None, description=f"{teacher.description} ({target})")


def _from_classifier(operator: DistributedDataClassifier, text_field: str, what: str | None = None,
                     staged: bool = False) -> Teacher:
    info = operator.describe()
    problem = PROBLEMS.get(info.problem_type)
    if problem is None:
        raise InputError(
            f"{info.path} is a {info.problem_type} model; distillation takes single-label, multi-label or "
            f"regression teachers."
        )
    own_columns = type(operator).postprocess is DistributedDataClassifier.postprocess and (
        type(operator).output_names is DistributedDataClassifier.output_names
    )
    if own_columns:
        view = copy.copy(operator)
        view._info = None
        for name in ("filter_by", "uncertainty", "dropout_samples", "embedding_field"):
            setattr(view, name, None)
        view.text_field = text_field
        view.label_field = LABEL_COLUMN
        view.score_field = None if problem == "regression" else SCORES_COLUMN
        view._check_options()
    else:
        view = DistributedDataClassifier(
            model_identifier=operator.model_identifier,
            text_field=text_field,
            label_field=LABEL_COLUMN,
            score_field=None if problem == "regression" else SCORES_COLUMN,
            **{name: getattr(operator, name) for name in READING_OPTIONS},
        )
    view.describe()
    if problem == "regression":
        names = info.labels or (("score",) if info.num_outputs == 1 else tuple(f"score_{i}" for i in range(info.num_outputs)))
    else:
        names = tuple(info.labels)
    # A staged checkpoint's folder name changes from run to run; its files identify it.
    identity = () if staged else ("model_identifier",)
    options = {name: repr(getattr(view, name, None)) for name in identity + READING_OPTIONS}
    fingerprint = _digest(
        {"kind": type(view).__name__, "options": options, "problem": problem, "names": list(names)},
        _folder_digest(Path(info.path)),
    )
    return Teacher(view, problem, tuple(names), fingerprint, what or repr(operator))


def _from_sklearn(model: SklearnTextClassifier, text_field: str, max_chars: int | None) -> Teacher:
    import joblib

    estimator, labels = model.fitted()
    view = SklearnOperator(model, text_field=text_field, label_field=LABEL_COLUMN, score_field=SCORES_COLUMN,
                           max_chars=max_chars)
    fingerprint = _digest(
        {"kind": "sklearn", "problem": model.problem, "labels": list(labels), "threshold": float(model.threshold),
         "max_chars": max_chars},
        joblib.hash(estimator),
    )
    return Teacher(view, model.problem, tuple(labels), fingerprint, repr(model))


def _digest(settings: dict[str, Any], content: str) -> str:
    text = json.dumps(settings, sort_keys=True, default=str) + content
    return hashlib.sha256(text.encode()).hexdigest()


def _folder_digest(path: Path) -> str:
    """SHA-256 over the names and bytes of a checkpoint's files (read only, never written)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def scores_matrix(values: list[Any], width: int) -> np.ndarray:
    """``(rows, width)`` float32 from list cells (or floats); NaN where a cell is null."""
    out = np.full((len(values), width), np.nan, dtype=np.float32)
    for i, value in enumerate(values):
        if isinstance(value, (list, tuple, np.ndarray)):
            out[i] = np.asarray(value, dtype=np.float32)
        elif value is not None and not pd.isna(value):
            out[i, 0] = float(value)
    return out

"""Input handling, label sets, predictions and metrics shared by the light estimators.

Label columns, targets and metrics come from :mod:`nemo_cls_dask.train.data` and
:mod:`nemo_cls_dask.train.metrics` (the transformer trainer's helpers), so the light
models accept the same inputs and report the same numbers as
:class:`~nemo_cls_dask.TextClassifier`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .. import frames
from ..errors import InputError
from ..tokenization import clean_texts
from ..train import data as D
from ..train.metrics import accuracy, macro_f1, multilabel_f1, regression_metrics

PROBLEMS = D.PROBLEMS  # short name -> config problem_type


@dataclass
class Labelled:
    """In-memory training (or evaluation) rows: texts with a usable value, and their targets."""

    texts: list[str]
    targets: np.ndarray  # int64 ids, float32 0/1 matrix, or float32 values (see D.encode_targets)
    text_field: str
    label_fields: tuple[str, ...]
    dropped: int  # rows left out because their text was null, not a string or blank


def labelled_frame(X: Any, y: Any, text_field: str, label_field: Any, problem: str, what: str) -> tuple[pd.DataFrame, str, tuple[str, ...]]:
    """``(frame, text_field, label_fields)`` for a pandas frame or texts + targets; checks columns."""
    if frames.is_dask(X):
        raise InputError(
            f"{what}: the light models train in memory; pass a pandas DataFrame (ddf.compute(), or a "
            f"sample of it). Prediction takes dask DataFrames."
        )
    frame, text_field, fields = D.as_frame(X, y, text_field, label_field)
    if problem != "regression" and len(fields) != 1:
        raise InputError(f"A {problem} problem takes one label column, got {list(fields)}.")
    frame = D.FrameSource(frame, text_field, fields, None, what).frame
    if len(frame) == 0:
        raise InputError(f"{what} has no rows.")
    return frame, text_field, fields


def summarize(frame: pd.DataFrame, problem: str, fields: tuple[str, ...], label_sep: str | None, what: str) -> pd.Series:
    """Label counts (checked for wrong types and missing targets, which raise)."""
    summary = D.summarize_partition(frame, problem, fields, label_sep)
    if problem == "regression":
        for column in fields:
            missing = int(summary.get(f"missing:{column}", 0))
            if missing:
                raise InputError(f"{what}: target column {column!r} has {missing} NaN/missing value(s); drop or fill them.")
    elif int(summary.get(D.MISSING_KEY, 0)):
        raise InputError(
            f"{what}: label column {fields[0]!r} has {int(summary[D.MISSING_KEY])} NaN/missing value(s); drop or fill them."
        )
    return summary


def choose_labels(summary: pd.Series, fields: tuple[str, ...], problem: str, labels: Any) -> list[str] | None:
    """The class names in output order: ``labels`` if given, else the sorted labels found."""
    if problem == "regression":
        return None
    found = sorted(key[len("label:"):] for key in summary.index if key.startswith("label:"))
    if labels is not None:
        if isinstance(labels, str) or len(set(labels)) != len(list(labels)):
            raise InputError(f"labels must be a list of distinct strings, got {labels!r}.")
        chosen = [str(label) for label in labels]
    else:
        chosen = found
    unknown = sorted(set(found) - set(chosen))
    if unknown:
        raise InputError(f"training data: label column {fields[0]!r} has labels not in labels=: {unknown}.")
    absent = [label for label in chosen if label not in found]
    if absent:
        warnings.warn(f"labels {absent} have no training rows; the model keeps an output for them.", UserWarning, stacklevel=3)
    if problem == "single_label" and len(chosen) < 2:
        raise InputError(
            f"A single_label classifier needs at least two classes; the training data has only {found}. "
            f"Pass labels=[...] with all classes, or use problem='multi_label' for a yes/no tag."
        )
    if not chosen:
        raise InputError("multi_label training data has no labels at all.")
    return chosen


def labelled_rows(frame: pd.DataFrame, text_field: str, fields: tuple[str, ...], problem: str, label_sep: str | None,
                  label2id: dict[str, int] | None, what: str) -> Labelled:
    """Targets of every row, then only the rows with usable text (null/blank text is dropped:
    it has nothing to learn from, and the operator gives it null outputs)."""
    targets = D.encode_targets(frame, problem, fields, label_sep, label2id, what)
    texts, valid = clean_texts(frames.text_values(frame[text_field]), None)
    return Labelled(texts, targets[valid], text_field, fields, int((~valid).sum()))


def prediction_values(X: Any, text_field: str) -> list[Any]:
    """The raw text values of in-memory input (a DataFrame column, Series, list or array)."""
    if isinstance(X, pd.DataFrame):
        if text_field not in X.columns:
            raise InputError(f"Text column {text_field!r} is not in the DataFrame; its columns are {list(X.columns)}.")
        return frames.text_values(X[text_field])
    return D.texts_input(X)


def predictions(proba: np.ndarray, labels: tuple[str, ...], problem: str, thresholds: np.ndarray | None) -> np.ndarray:
    """Object array: a label per row (single-label) or a list of labels (multi-label);
    None where the row has no probabilities (NaN: null or blank text)."""
    valid = ~np.isnan(proba).any(axis=1)
    out = np.empty(len(proba), dtype=object)
    if problem == "single_label":
        codes = np.nan_to_num(proba).argmax(axis=1)
        for i in range(len(proba)):
            out[i] = labels[codes[i]] if valid[i] else None
    else:
        chosen = proba >= (thresholds if thresholds is not None else 0.5)
        for i in range(len(proba)):
            out[i] = [labels[j] for j in np.flatnonzero(chosen[i])] if valid[i] else None
    return out


def metrics(problem: str, scores: np.ndarray, target: np.ndarray, labels: tuple[str, ...] | None,
            thresholds: np.ndarray | None) -> dict[str, Any]:
    """Single-label ``accuracy``/``macro_f1`` (``scores``: logits or probabilities);
    multi-label ``micro_f1``/``macro_f1``/``per_label_f1`` (``scores``: probabilities);
    regression ``mse``/``mae``. Rows with NaN scores (no text) are left out."""
    keep = ~np.isnan(scores).any(axis=1)
    scores, target = scores[keep], target[keep]
    if problem == "regression":
        return regression_metrics(target, scores)
    if problem == "single_label":
        predicted = scores.argmax(axis=1)
        return {"accuracy": accuracy(target, predicted), "macro_f1": macro_f1(target, predicted, scores.shape[1])}
    chosen = scores >= (thresholds if thresholds is not None else 0.5)
    micro, macro, per_label = multilabel_f1(target > 0.5, chosen)
    return {"micro_f1": micro, "macro_f1": macro, "per_label_f1": dict(zip(labels or (), map(float, per_label)))}

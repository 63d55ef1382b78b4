"""Training data: label columns -> targets, first-pass summaries, chunked sources, splits.

A multi-label row is a list of labels (each on, the rest off) or a dict of per-label
probabilities ``{"fruit": 0.8, "space": 0.1}``: *soft labels*, learned as the binary
cross-entropy against each probability (labels the dict leaves out are off). Distillation
gives a multi-label teacher's probabilities to its students this way.

A source hands out pandas chunks: a pandas frame is one chunk, a dask frame one chunk per
partition (``ddf.partitions[i]``, computed one at a time, never the whole frame at once).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .. import frames
from ..errors import InputError
from ..problems import get_problem

#: The problems the estimators train: short name -> config name (:mod:`nemo_cls_dask.problems`).
PROBLEMS = {name: get_problem(name).config_name for name in ("single_label", "multi_label", "regression")}
WEIGHT_COLUMN = "__sample_weight__"
ROWS_KEY = "__rows__"
MISSING_KEY = "__missing__"


def _single_label(problem: str) -> bool:
    kind = get_problem(problem)
    return kind.is_classifier and not kind.multi_label


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def row_labels(values: Sequence[Any], problem: str, column: str, label_sep: str | None) -> list[Any]:
    """Normalize a label column: one string per row (single-label) or a list (multi-label).

    Missing values become None. Raises :class:`InputError` for values of the wrong type.
    """
    out: list[Any] = []
    for value in values:
        if _is_missing(value):
            out.append(None)
            continue
        if _single_label(problem):
            if isinstance(value, str):
                out.append(value)
            elif isinstance(value, (bool, np.bool_, int, np.integer)):
                out.append(str(value))
            else:
                raise InputError(
                    f"Label column {column!r} holds {type(value).__name__} values such as {value!r}; "
                    f"a single_label problem needs one string (or integer) class per row"
                    + (" (floats: use problem='regression')." if isinstance(value, (float, np.floating)) else ".")
                )
        else:
            if isinstance(value, str):
                if label_sep is None:
                    raise InputError(
                        f"Label column {column!r} holds strings such as {value!r}; a multi_label problem "
                        f"needs a list of labels per row, or pass label_sep=',' (the delimiter) to split them."
                    )
                out.append([part.strip() for part in value.split(label_sep) if part.strip()])
            elif isinstance(value, Mapping):
                out.append(_soft_label_set(value, column))
            elif isinstance(value, (list, tuple, set, np.ndarray, pd.Series)):
                items = list(value)
                bad = [item for item in items if not isinstance(item, str)]
                if bad:
                    raise InputError(
                        f"Label column {column!r}: multi-label lists must hold strings, found {bad[0]!r} "
                        f"({type(bad[0]).__name__})."
                    )
                out.append(items)
            else:
                raise InputError(
                    f"Label column {column!r} holds {type(value).__name__} values such as {value!r}; a "
                    f"multi_label problem needs a list of label strings per row, a dict of label probabilities, "
                    f"or strings with label_sep."
                )
    return out


def _soft_label_set(value: Mapping, column: str) -> dict[str, float]:
    """A multi-label row given as ``{label: probability}``, checked: string keys, finite values in [0, 1]."""
    out: dict[str, float] = {}
    for label, probability in value.items():
        if not isinstance(label, str):
            raise InputError(f"Label column {column!r}: label-probability dicts need string keys, found {label!r}.")
        number = float(probability) if isinstance(probability, (int, float, np.integer, np.floating)) else math.nan
        if not 0.0 <= number <= 1.0:
            raise InputError(f"Label column {column!r}: label {label!r} has probability {probability!r}; soft labels "
                             f"must be numbers in [0, 1].")
        out[label] = number
    return out


def _check_regression_column(series: pd.Series, column: str) -> None:
    if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
        raise InputError(
            f"Label column {column!r} has dtype {series.dtype}; a regression problem needs numeric "
            f"(float) target columns."
        )


def summarize_partition(part: pd.DataFrame, problem: str, label_fields: tuple[str, ...], label_sep: str | None) -> pd.Series:
    """Counts over one chunk: rows, missing targets, label counts (or sums for regression)."""
    values: dict[str, float] = {ROWS_KEY: float(len(part))}
    if not get_problem(problem).is_classifier:
        for column in label_fields:
            series = part[column]
            _check_regression_column(series, column)
            numbers = series.to_numpy(dtype=np.float64, na_value=np.nan)
            finite = numbers[~np.isnan(numbers)]
            values[f"missing:{column}"] = float(np.isnan(numbers).sum())
            values[f"sum:{column}"] = float(finite.sum())
            values[f"sumsq:{column}"] = float((finite**2).sum())
        return pd.Series(values, dtype="float64")
    column = label_fields[0]
    labels = row_labels(frames.text_values(part[column]), problem, column, label_sep)
    missing = 0
    counts: dict[str, float] = {}
    for item in labels:
        if item is None:
            missing += 1
            continue
        if isinstance(item, dict):  # soft labels count by their probability
            for label, probability in item.items():
                counts["label:" + label] = counts.get("label:" + label, 0.0) + probability
            continue
        for label in [item] if _single_label(problem) else set(item):
            counts["label:" + label] = counts.get("label:" + label, 0.0) + 1.0
    values[MISSING_KEY] = float(missing)
    values.update(counts)
    return pd.Series(values, dtype="float64")


def check_missing(summary: pd.Series, problem: str, label_fields: tuple[str, ...], what: str) -> None:
    """Raise if a first-pass summary counted missing targets (naming the column and count)."""
    if not get_problem(problem).is_classifier:
        for column in label_fields:
            missing = int(summary.get(f"missing:{column}", 0))
            if missing:
                raise InputError(f"{what}: target column {column!r} has {missing} NaN/missing value(s); drop or fill them.")
    elif int(summary.get(MISSING_KEY, 0)):
        raise InputError(
            f"{what}: label column {label_fields[0]!r} has {int(summary[MISSING_KEY])} NaN/missing value(s); drop or fill them."
        )


def encode_targets(
    part: pd.DataFrame,
    problem: str,
    label_fields: tuple[str, ...],
    label_sep: str | None,
    label2id: dict[str, int] | None,
    what: str,
) -> np.ndarray:
    """Targets of a chunk: int64 class ids, a float32 matrix (0/1, or soft labels' probabilities), or float32 values.

    Raises on missing targets (naming the column and count) and on labels not in
    ``label2id`` (listing them).
    """
    if not get_problem(problem).is_classifier:
        columns = []
        for column in label_fields:
            _check_regression_column(part[column], column)
            numbers = part[column].to_numpy(dtype=np.float64, na_value=np.nan)
            missing = int(np.isnan(numbers).sum())
            if missing:
                raise InputError(f"{what}: target column {column!r} has {missing} NaN/missing value(s); drop or fill them.")
            columns.append(numbers)
        return np.stack(columns, axis=1).astype(np.float32) if columns else np.zeros((len(part), 0), np.float32)
    column = label_fields[0]
    labels = row_labels(frames.text_values(part[column]), problem, column, label_sep)
    missing = sum(item is None for item in labels)
    if missing:
        raise InputError(f"{what}: label column {column!r} has {missing} NaN/missing value(s); drop or fill them.")
    assert label2id is not None
    seen = {label for item in labels for label in ([item] if _single_label(problem) else item)}
    unknown = sorted(seen - set(label2id))
    if unknown:
        raise InputError(
            f"{what}: label column {column!r} has labels that are not in the model's label set: {unknown}. "
            f"Known labels: {sorted(label2id)}."
        )
    if _single_label(problem):
        return np.fromiter((label2id[item] for item in labels), dtype=np.int64, count=len(labels))
    matrix = np.zeros((len(labels), len(label2id)), dtype=np.float32)
    for row, item in enumerate(labels):
        for label in item:
            matrix[row, label2id[label]] = item[label] if isinstance(item, dict) else 1.0
    return matrix


def sample_weights_of(part: pd.DataFrame, what: str) -> np.ndarray:
    if WEIGHT_COLUMN not in part.columns:
        return np.ones(len(part), dtype=np.float32)
    weights = part[WEIGHT_COLUMN].to_numpy(dtype=np.float64, na_value=np.nan)
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise InputError(f"{what}: sample_weight must be finite and non-negative.")
    return weights.astype(np.float32)


def texts_of(part: pd.DataFrame, text_field: str) -> list[str]:
    """Training texts: nulls and non-strings become "" (tokenized to special tokens only)."""
    return [value if isinstance(value, str) else "" for value in frames.text_values(part[text_field])]


def _check_not_all_zero(weights: np.ndarray, what: str) -> None:
    """All-zero weights leave nothing to learn from (and a 0/0 loss): refused up front."""
    if len(weights) and np.isfinite(weights).all() and not (weights > 0).any():
        raise InputError(f"{what}: every sample weight is zero; at least one row must have a positive weight.")


class FrameSource:
    """Hands out the needed columns of a pandas or dask frame, one chunk at a time."""

    def __init__(self, frame: Any, text_field: str, label_fields: tuple[str, ...], weight: Any = None, what: str = "training data") -> None:
        self.what = what
        self.text_field = text_field
        self.label_fields = label_fields
        columns = list(frame.columns)
        needed = [text_field, *label_fields]
        missing = [name for name in needed if name not in columns]
        if missing:
            raise InputError(f"{what}: column(s) {missing} not in the DataFrame; its columns are {columns}.")
        self.is_dask = frames.is_dask(frame)
        if isinstance(weight, str):
            if weight not in columns:
                raise InputError(f"{what}: sample_weight column {weight!r} is not in the DataFrame.")
            frame = frame[needed + [weight]].rename(columns={weight: WEIGHT_COLUMN})
            if not self.is_dask:
                _check_not_all_zero(frame[WEIGHT_COLUMN].to_numpy(dtype=np.float64, na_value=np.nan), what)
        elif weight is not None:
            if self.is_dask:
                raise InputError("For a dask DataFrame, pass sample_weight as the name of a column.")
            weight = np.asarray(weight, dtype=np.float64)
            if weight.shape != (len(frame),):
                raise InputError(f"sample_weight has shape {weight.shape}; expected ({len(frame)},).")
            _check_not_all_zero(weight, what)
            frame = frame[needed].assign(**{WEIGHT_COLUMN: weight})
        else:
            frame = frame[needed]
        self.frame = frame

    @property
    def n_chunks(self) -> int:
        return self.frame.npartitions if self.is_dask else 1

    def chunk(self, index: int) -> pd.DataFrame:
        if not self.is_dask:
            return self.frame
        part = self.frame.partitions[index].compute()
        if frames.is_cudf(part):
            part = part.to_pandas()
        return part

    def summarize(self, problem: str, label_sep: str | None) -> pd.Series:
        if self.is_dask:
            label_frame = self.frame[list(self.label_fields)]
            parts = label_frame.map_partitions(
                summarize_partition, problem, self.label_fields, label_sep, meta=pd.Series(dtype="float64")
            ).compute()
            return parts.groupby(level=0).sum()
        return summarize_partition(self.frame, problem, self.label_fields, label_sep)


def split_mask(n: int, fraction: float, rng: np.random.Generator, classes: np.ndarray | None) -> np.ndarray:
    """Boolean mask of validation rows: ``fraction`` of rows, stratified by ``classes`` if given.

    Stratified: each class gives round(fraction x count) rows, at least one when it has two
    or more rows and never all of them.

    Hand-written rather than ``train_test_split``: it runs on each chunk (a dask partition)
    with a per-partition seed, and must not raise on a class with a single row in that
    chunk, which scikit-learn's stratified split refuses.
    """
    mask = np.zeros(n, dtype=bool)
    if fraction <= 0 or n == 0:
        return mask
    if classes is None:
        take = min(int(round(fraction * n)), n - 1)
        mask[rng.permutation(n)[:take]] = True
        return mask
    for value in np.unique(classes):
        rows = np.flatnonzero(classes == value)
        if rows.size < 2:
            continue
        take = min(max(int(round(fraction * rows.size)), 1), rows.size - 1)
        mask[rng.permutation(rows)[:take]] = True
    return mask


def as_frame(X: Any, y: Any, text_field: str, label_field: Any) -> tuple[Any, str, tuple[str, ...]]:
    """(frame, text_field, label_fields) for a DataFrame or for texts + targets."""
    if isinstance(X, pd.DataFrame) or frames.is_dask(X) or frames.is_cudf(X):
        if y is not None:
            raise InputError("Pass y only with a list/array/Series of texts; with a DataFrame use label_field=.")
        fields = tuple([label_field] if isinstance(label_field, str) else label_field)
        if frames.is_cudf(X):
            X = X.to_pandas()
        return X, text_field, fields
    texts = texts_input(X)
    if y is None:
        raise InputError("fit needs targets: a DataFrame with label_field, or texts and y.")
    if isinstance(y, pd.DataFrame):
        frame = y.reset_index(drop=True).copy()
        frame.insert(0, "text", texts)
        return frame, "text", tuple(map(str, y.columns))
    values = y.to_list() if isinstance(y, pd.Series) else y
    array = np.asarray(values, dtype=object) if not isinstance(values, np.ndarray) else values
    if len(values) != len(texts):
        raise InputError(f"X has {len(texts)} texts but y has {len(values)} rows.")
    if isinstance(array, np.ndarray) and array.ndim == 2 and array.dtype != object:
        frame = pd.DataFrame({f"target_{j}": array[:, j].astype(np.float64) for j in range(array.shape[1])})
        frame.insert(0, "text", texts)
        return frame, "text", tuple(frame.columns[1:])
    column = pd.Series(list(values)) if not isinstance(values, np.ndarray) or values.dtype == object else pd.Series(values)
    return pd.DataFrame({"text": texts, "label": column}), "text", ("label",)


def texts_input(X: Any) -> list[Any]:
    """A list of texts from a list, tuple, numpy array or pandas Series."""
    if isinstance(X, str):
        raise InputError("Pass a list of texts, not a single string.")
    if isinstance(X, pd.Series):
        return frames.text_values(X)
    if isinstance(X, np.ndarray):
        if X.ndim != 1:
            raise InputError(f"A numpy array of texts must be 1-D, got shape {X.shape}.")
        return X.tolist()
    if isinstance(X, (list, tuple)):
        return list(X)
    raise InputError(f"Expected a DataFrame, Series, list or numpy array of texts, got {type(X).__name__}.")

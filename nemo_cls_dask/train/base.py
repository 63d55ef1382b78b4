"""The scikit-learn side shared by every estimator of the package.

:class:`TextEstimatorBase` is a :class:`sklearn.base.BaseEstimator` (``get_params``,
``set_params``, ``clone``, ``repr`` come from scikit-learn) and a ``ClassifierMixin`` whose
tags say ``"regressor"`` when ``problem="regression"``. It owns what does not depend on
the model: turning the many accepted inputs into one labelled frame, the class labels and
their original type (``classes_``), predictions from probabilities, ``score``,
``evaluate``, the dask output path through :meth:`as_operator`, and the fitted check.

A subclass provides the model side: ``_outputs(X, text_field)`` (one in-memory chunk ->
numpy outputs, NaN rows for null/blank text), ``_scores(outputs)`` (outputs ->
probabilities, or values for regression) and ``as_operator(...)``. See
:mod:`nemo_cls_dask.train.torch_base` for the two PyTorch estimators and
:class:`~nemo_cls_dask.lightweight.SklearnTextClassifier` for the scikit-learn adapter.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError as SklearnNotFittedError

from .. import frames
from ..errors import InputError
from . import data as D
from ..problems import ProblemType, get_problem
from .metrics import THRESHOLD_OBJECTIVES, outcome_metrics

PROBLEMS = D.PROBLEMS
SINGLE_LABEL = get_problem("single_label")


class NotFittedError(InputError, SklearnNotFittedError):
    """The estimator is used before ``fit`` (scikit-learn's ``NotFittedError`` and an :class:`InputError`)."""


class TextEstimatorBase(ClassifierMixin, BaseEstimator):
    """Shared scikit-learn protocol of the text estimators (see the module docstring).

    Subclasses store their constructor arguments untouched (scikit-learn convention) and
    must have a ``problem`` parameter. Fitted attributes set here: ``classes_`` (the labels
    in output order, in the type ``y`` had: integers stay integers), ``labels_`` (the same
    as strings, as saved in checkpoints), ``multilabel_indicator_`` (``y`` was a 0/1 matrix:
    ``predict`` answers with one too), ``text_field_``, ``label_fields_``.
    """

    #: Problems this estimator can learn.
    supported_problems: tuple[str, ...] = tuple(PROBLEMS)
    #: Whether :meth:`as_operator` can add a pooled embedding column (``embedding_field=``).
    supports_embeddings: bool = False

    @property
    def problem_type(self) -> ProblemType:
        """``problem`` as an object (:mod:`nemo_cls_dask.problems`): probabilities, decisions, names."""
        return get_problem(self.problem)

    # ------------------------------------------------------------------ scikit-learn protocol

    def __sklearn_tags__(self):
        from sklearn.utils import ClassifierTags, RegressorTags

        tags = super().__sklearn_tags__()
        problem = get_problem(getattr(self, "problem", "single_label"))
        if not problem.is_classifier:
            tags.estimator_type, tags.classifier_tags, tags.regressor_tags = "regressor", None, RegressorTags()
        else:
            tags.classifier_tags = ClassifierTags(multi_label=problem.multi_label)
        tags.target_tags.required = True
        tags.target_tags.multi_output = problem != SINGLE_LABEL
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        return tags

    def set_params(self, **params: Any) -> TextEstimatorBase:
        """scikit-learn's ``set_params``; an unknown name raises :class:`InputError` (a ValueError)."""
        valid = set(self._get_param_names())
        unknown = sorted({key.partition("__")[0] for key in params} - valid)
        if unknown:
            raise InputError(f"Invalid parameter {unknown[0]!r} for {type(self).__name__}; valid: {sorted(valid)}.")
        return super().set_params(**params)

    def __sklearn_is_fitted__(self) -> bool:
        return self._is_fitted()

    def _is_fitted(self) -> bool:
        return getattr(self, "labels_", None) is not None or getattr(self, "output_names_", None) is not None

    def _check_fitted(self) -> None:
        if not self._is_fitted():
            name = type(self).__name__
            raise NotFittedError(f"This {name} is not fitted yet; call fit() first (or {name}.from_pretrained()).")

    def check_fitted(self) -> None:
        """Raise :class:`NotFittedError` (an :class:`InputError`) unless the estimator can predict."""
        self._check_fitted()

    def _check_problem_params(self) -> None:
        """The checks every estimator shares: problem, labels and the threshold objective."""
        if self.problem not in self.supported_problems:
            raise InputError(f"problem must be one of {list(self.supported_problems)}, got {self.problem!r}.")
        objective = getattr(self, "threshold_objective", "micro_f1")
        if objective not in THRESHOLD_OBJECTIVES:
            raise InputError(f"threshold_objective must be one of {THRESHOLD_OBJECTIVES}, got {objective!r}.")
        labels = getattr(self, "labels", None)
        if labels is not None and (isinstance(labels, str) or len(set(labels)) != len(list(labels))):
            raise InputError(f"labels must be a list of distinct strings, got {labels!r}.")

    def _check_numbers(self, positive_ints: tuple[str, ...] = (), optional_ints: tuple[str, ...] = (),
                       fractions: tuple[str, ...] = (), non_negative: tuple[str, ...] = ()) -> None:
        """Positive integers (optionally None), fractions in [0, 1) and finite non-negative numbers."""
        for name in positive_ints + optional_ints:
            value = getattr(self, name)
            if value is None and name in optional_ints:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                extra = " or None" if name in optional_ints else ""
                raise InputError(f"{name} must be a positive integer{extra}, got {value!r}.")
        for name in fractions + non_negative:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise InputError(f"{name} must be a finite non-negative number, got {value!r}.")
            if name in fractions and not value < 1:
                raise InputError(f"{name} must be in [0, 1), got {value!r}.")

    # ------------------------------------------------------------------ fit input

    def _fit_frame(self, X: Any, y: Any, text_field: str, label_field: Any, *, allow_dask: bool = True) -> tuple[Any, str, tuple[str, ...]]:
        """``(frame, text_field, label_fields)`` from any accepted input; remembers how ``y`` looked.

        Accepted: a (dask) DataFrame holding ``text_field`` and ``label_field``; or texts (a
        list, numpy array, Series or one-column DataFrame, whose column name becomes
        ``text_field_`` for prediction) with ``y`` (a list, array or
        Series of labels or values, a 0/1 indicator matrix for multi-label, or a matrix /
        DataFrame of regression targets).
        """
        self._y_kind, self._y_values = "column", None
        column = None
        if y is not None and isinstance(X, pd.DataFrame):
            X = _text_column(X, text_field)
            column = str(X.name)
        if y is not None and self.problem_type.multi_label and _is_indicator(y):
            names = [str(c) for c in y.columns] if isinstance(y, pd.DataFrame) else None
            matrix = np.asarray(y)
            names = names or [str(j) for j in range(matrix.shape[1])]
            y = [[names[j] for j in np.flatnonzero(row)] for row in matrix]
            self._y_kind, self._indicator_names = "indicator", names
        elif y is not None and self.problem_type == SINGLE_LABEL:
            values = np.asarray(y.to_numpy() if isinstance(y, pd.Series) else y)
            if values.ndim == 1 and values.dtype.kind in "biuf" and not (values.dtype.kind == "f" and np.isnan(values).any()):
                if values.dtype.kind == "f":
                    if not np.all(values == np.round(values)):
                        raise InputError("y holds fractional numbers; a single_label problem needs class labels "
                                         "(use problem='regression' for values).")
                    values = values.astype(np.int64)
                self._y_kind, self._y_values = "typed", np.unique(values)
                y = values.tolist()
        if frames.is_dask(X) and not allow_dask:
            raise InputError(
                f"{type(self).__name__} trains in memory; pass a pandas DataFrame (ddf.compute(), or a sample "
                f"of it). Prediction takes dask DataFrames."
            )
        frame, text_field, fields = D.as_frame(X, y, text_field, label_field)
        if column is not None and column not in frame.columns:  # predict() then reads the same column
            frame, text_field = frame.rename(columns={text_field: column}), column
        if self.problem_type.is_classifier and len(fields) != 1:
            raise InputError(f"A {self.problem} problem takes one label column, got {list(fields)}.")
        return frame, text_field, fields

    def _labelled_frame(self, X: Any, y: Any, text_field: str, label_field: Any, names: Any) -> tuple[Any, str, tuple[str, ...]]:
        """Like :meth:`_fit_frame` for evaluation or validation data: an indicator ``y`` is read
        with the label ``names``, numeric classes as their strings."""
        if y is not None and isinstance(X, pd.DataFrame):
            X = _text_column(X, text_field)
        if y is not None and self.problem_type.multi_label and _is_indicator(y):
            matrix = np.asarray(y)
            if names is None or matrix.shape[1] != len(names):
                raise InputError(f"y has {matrix.shape[1]} label columns; the model has {len(names or ())} labels.")
            y = [[names[j] for j in np.flatnonzero(row)] for row in matrix]
        elif y is not None and self.problem_type == SINGLE_LABEL:
            values = np.asarray(y.to_numpy() if isinstance(y, pd.Series) else y)
            if values.ndim == 1 and values.dtype.kind in "biuf":
                y = [str(int(v)) if values.dtype.kind == "f" else str(v) for v in values]
        return D.as_frame(X, y, text_field, label_field)

    def _validation_frame(self, validation: Any, text_field: str, fields: tuple[str, ...]) -> Any:
        """A validation frame with the training column names, from a frame or ``(texts, y)``."""
        if not (isinstance(validation, tuple) and len(validation) == 2):
            return validation
        texts, y = validation
        names = getattr(self, "_indicator_names", None) if self._y_kind == "indicator" else None
        frame, vtext, vfields = self._labelled_frame(texts, y, "text", list(fields) if len(fields) > 1 else "label", names)
        return frame.rename(columns=dict(zip(vfields, fields)) | {vtext: text_field})

    def _default_labels(self) -> list[str] | None:
        """Label order when ``labels=None``: sorted values for typed ``y`` (2 before 10), the
        indicator's columns in order, else None (the sorted strings found)."""
        if getattr(self, "labels", None) is not None:
            return list(map(str, self.labels))
        if self._y_kind == "typed":
            return [str(v) for v in self._y_values]
        if self._y_kind == "indicator":
            return list(self._indicator_names)
        return None

    def _choose_labels(self, summary: pd.Series, fields: tuple[str, ...], keep: tuple[str, ...] | None = None) -> list[str] | None:
        """The class names in output order: ``keep`` (warm start), ``labels``, or those found.

        Training labels outside the chosen set raise; chosen labels without a training row
        warn (the model keeps an output for them).
        """
        if not self.problem_type.is_classifier:
            return None
        found = sorted(key[len("label:"):] for key in summary.index if key.startswith("label:"))
        chosen = list(keep) if keep is not None else (self._default_labels() or found)
        unknown = sorted(set(found) - set(chosen))
        if unknown:
            raise InputError(f"training data: label column {fields[0]!r} has labels not in labels=: {unknown}. "
                             f"Add them to labels, or drop those rows.")
        absent = [label for label in chosen if label not in found]
        if absent:
            warnings.warn(f"labels {absent} have no training rows; the model keeps an output for them but will "
                          f"rarely predict them.", UserWarning, stacklevel=3)
        if self.problem_type == SINGLE_LABEL and len(chosen) < 2:
            raise InputError(
                f"A single_label classifier needs at least two classes; the training data has only one class: {found}. "
                f"Pass labels=[...] with all classes, or use problem='multi_label' for a yes/no tag."
            )
        if not chosen:
            raise InputError("multi_label training data has no labels at all.")
        return chosen

    def _typed_classes(self, labels: list[str]) -> np.ndarray:
        """The labels in the type ``y`` had (integers stay integers); strings otherwise."""
        if getattr(self, "_y_kind", "") == "typed":
            by_name = {str(v): v for v in self._y_values}
            return np.asarray([by_name.get(label, label) for label in labels])
        return np.asarray(labels, dtype=object)

    def _set_fitted_labels(self, labels: list[str] | None, text_field: str, fields: tuple[str, ...]) -> None:
        """``labels_``, ``classes_`` (original type), ``multilabel_indicator_``, the fields."""
        self.labels_ = tuple(labels) if labels is not None else None
        self.text_field_, self.label_fields_ = text_field, tuple(fields)
        self.multilabel_indicator_ = getattr(self, "_y_kind", "") == "indicator"
        if labels is None:
            self.__dict__.pop("classes_", None)
        elif self.multilabel_indicator_:
            self.classes_ = np.arange(len(labels))
        else:
            self.classes_ = self._typed_classes(labels)

    # ------------------------------------------------------------------ model side (subclasses)

    def _outputs(self, X: Any, text_field: str) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _scores(self, outputs: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def as_operator(self, **options: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _decision_thresholds(self) -> np.ndarray | None:
        return getattr(self, "thresholds_", None)

    # ------------------------------------------------------------------ prediction

    def _text_field(self, text_field: str | None) -> str:
        return text_field or getattr(self, "text_field_", None) or "text"

    def predict_proba(self, X: Any, *, text_field: str | None = None) -> Any:
        """Class probabilities in ``classes_`` order.

        In-memory input (DataFrame, Series, list, numpy array): a numpy array ``(n, labels)``
        (softmax for single-label, one sigmoid per label for multi-label), NaN rows for null
        or blank text, as in the operator. A dask DataFrame gives a lazy dask DataFrame with
        one float32 column per label, same index and partitions.
        """
        self._check_fitted()
        if not self.problem_type.is_classifier:
            raise InputError("predict_proba is for classifiers; a regression model's values come from predict().")
        if frames.is_dask(X):
            return self._dask_outputs(X, text_field, proba=True)
        return self._scores(self._outputs(X, self._text_field(text_field)))

    def predict(self, X: Any, *, text_field: str | None = None) -> Any:
        """Predictions for in-memory input as a numpy array.

        Single-label: the class of each row, in ``classes_``'s type (None for null/blank
        text, which makes the array ``object``). Multi-label: a list of labels per row (tuned
        thresholds), or a 0/1 int matrix when ``fit`` got an indicator matrix. Regression:
        float32 ``(n,)`` for one target, ``(n, targets)`` for several (NaN for blank text).
        A dask DataFrame gives a lazy dask Series (or a frame for several targets).
        """
        self._check_fitted()
        if frames.is_dask(X):
            return self._dask_outputs(X, text_field, proba=False)
        outputs = self._outputs(X, self._text_field(text_field))
        if not self.problem_type.is_classifier:
            return outputs[..., 0] if outputs.shape[-1] == 1 else outputs
        return self._labels_from_proba(self._scores(outputs))

    def _labels_from_proba(self, proba: np.ndarray) -> np.ndarray:
        valid = ~np.isnan(proba).any(axis=1)
        if self.problem_type == SINGLE_LABEL:
            codes = np.nan_to_num(proba).argmax(axis=1)
            classes = getattr(self, "classes_", np.asarray(self.labels_, dtype=object))
            if valid.all():
                return classes[codes]
            out = np.empty(len(proba), dtype=object)
            out[valid] = classes[codes[valid]]
            return out
        thresholds = self._decision_thresholds()
        chosen = np.nan_to_num(proba, nan=-1.0) >= (thresholds if thresholds is not None else 0.5)
        if getattr(self, "multilabel_indicator_", False):
            return chosen.astype(np.int64)
        out = np.empty(len(proba), dtype=object)
        for i in range(len(proba)):
            out[i] = [self.labels_[j] for j in np.flatnonzero(chosen[i])] if valid[i] else None
        return out

    def _dask_outputs(self, ddf: Any, text_field: str | None, proba: bool) -> Any:
        """Lazy probabilities (one float32 column per label) or predictions of a dask frame."""
        field = self._text_field(text_field)
        if field not in ddf.columns:
            raise InputError(f"Text column {field!r} is not in the DataFrame; its columns are {list(ddf.columns)}.")
        regression = not self.problem_type.is_classifier
        operator = self.as_operator(text_field=field, label_field="__pred__", score_field=None if regression else "__proba__")
        out = operator(ddf[[field]])
        names = list(getattr(self, "output_names_", None) or self.labels_)
        meta = pd.DataFrame({name: pd.Series(dtype="float32") for name in names})
        if proba:
            return out.map_partitions(list_column_to_frame, "__proba__", names, meta=meta)
        if regression and len(names) > 1:
            return out.map_partitions(list_column_to_frame, "__pred__", names, meta=meta)
        return out["__pred__"].rename("prediction")

    # ------------------------------------------------------------------ evaluation

    def _labelled_outputs(self, X: Any, y: Any, text_field: str | None, label_field: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
        """Model outputs (NaN rows for blank text) and encoded targets of labelled data; a dask
        frame is read one partition at a time."""
        self._check_fitted()
        text_field = self._text_field(text_field)
        fields = self.label_fields_
        label_field = label_field or (list(fields) if len(fields) > 1 else fields[0])
        frame, text_field, fields = self._labelled_frame(X, y, text_field, label_field, self.labels_)
        source = D.FrameSource(frame, text_field, fields, None, what)
        label2id = {label: i for i, label in enumerate(self.labels_)} if self.labels_ else None
        outputs, targets = [], []
        for index in range(source.n_chunks):
            part = source.chunk(index)
            targets.append(D.encode_targets(part, self.problem, fields, getattr(self, "label_sep", None), label2id, what))
            outputs.append(self._outputs(part, text_field))
        return np.concatenate(outputs), np.concatenate(targets)

    def evaluate(self, X: Any, y: Any = None, *, text_field: str | None = None, label_field: str | list[str] | None = None) -> dict[str, Any]:
        """Metrics on labelled data (in-memory, or a dask frame computed partition by partition).

        Single-label: ``accuracy``, ``macro_f1``, ``ece``. Multi-label (tuned thresholds):
        ``micro_f1``, ``macro_f1``, ``per_label_f1`` (dict), ``ece``. Regression: ``mse``,
        ``mae``. Rows with null or blank text have no prediction and are left out.
        ``ece``: :func:`~nemo_cls_dask.train.metrics.expected_calibration_error` of the
        probabilities as predicted.
        """
        outputs, target = self._labelled_outputs(X, y, text_field, label_field, "evaluation data")
        return outcome_metrics(self.problem, self._scores(outputs), target, self._decision_thresholds(), self.labels_)

    def score(self, X: Any, y: Any = None, sample_weight: Any = None, *, text_field: str | None = None) -> float:
        """scikit-learn's score: accuracy (subset accuracy for multi-label) or R^2 for regression.

        ``y`` None: ``X`` is a frame holding the label column(s) the model was trained on.
        A row with null or blank text has no prediction: it counts as wrong (NaN for
        regression, which raises).
        """
        from sklearn.metrics import accuracy_score, r2_score

        outputs, target = self._labelled_outputs(X, y, text_field, None, "scoring data")
        weights = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if not self.problem_type.is_classifier:
            if np.isnan(outputs).any():
                raise InputError("score: some rows have null or blank text and so no prediction; drop them first.")
            return float(r2_score(target, outputs, sample_weight=weights))
        proba = self._scores(outputs)
        valid = ~np.isnan(proba).any(axis=1)
        if self.problem_type == SINGLE_LABEL:
            predicted = np.where(valid, np.nan_to_num(proba).argmax(axis=1), -1)
        else:
            thresholds = self._decision_thresholds()
            predicted = (np.nan_to_num(proba, nan=-1.0) >= (thresholds if thresholds is not None else 0.5)).astype(np.int64)
            predicted[~valid] = -1
            target = target.astype(np.int64)
        return float(accuracy_score(target, predicted, sample_weight=weights))


def prediction_values(X: Any, text_field: str) -> list[Any]:
    """The raw text values of in-memory input (a DataFrame column, Series, list or array).

    """
    if isinstance(X, pd.DataFrame):
        if text_field not in X.columns:
            raise InputError(f"Text column {text_field!r} is not in the DataFrame; its columns are {list(X.columns)}.")
        return frames.text_values(X[text_field])
    return D.texts_input(X)


def _is_indicator(y: Any) -> bool:
    """A 2-D 0/1 matrix (numpy, list of lists of numbers, DataFrame): sklearn's multi-label ``y``."""
    if isinstance(y, pd.DataFrame):
        values = y.to_numpy()
    elif isinstance(y, np.ndarray):
        values = y
    elif isinstance(y, list) and y and all(isinstance(row, (list, tuple, np.ndarray)) for row in y):
        try:
            values = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError):
            return False
    else:
        return False
    if values.ndim != 2 or values.dtype.kind not in "biuf":
        return False
    return bool(np.isin(values, (0, 1)).all())


def _text_column(X: pd.DataFrame, text_field: str) -> pd.Series:
    """The texts of a DataFrame given with a separate ``y``: its only column, or ``text_field``."""
    if X.shape[1] == 1:
        return X.iloc[:, 0]
    if text_field in X.columns:
        return X[text_field]
    raise InputError(
        f"X is a DataFrame with columns {list(X.columns)} and y is given: pass one column of texts, or name "
        f"it with text_field= (without y, the labels come from label_field=)."
    )


def list_column_to_frame(part: pd.DataFrame, column: str, names: list[str]) -> pd.DataFrame:
    """Spread a list<float32> column into one float32 column per name (null rows -> NaN)."""
    values = frames.text_values(part[column])
    matrix = np.full((len(values), len(names)), np.nan, dtype=np.float32)
    for i, value in enumerate(values):
        if isinstance(value, (list, tuple, np.ndarray)):
            matrix[i] = np.asarray(value, dtype=np.float32)
    return pd.DataFrame(matrix, columns=names, index=part.index)



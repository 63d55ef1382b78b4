"""Any scikit-learn text estimator with ``predict_proba`` as a classifier on DataFrames and an operator.

>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.feature_extraction.text import TfidfVectorizer
>>> from sklearn.linear_model import LogisticRegression
>>> clf = SklearnTextClassifier(make_pipeline(TfidfVectorizer(), LogisticRegression()))
>>> clf.fit(train_df, text_field="text", label_field="topic")
>>> ddf = clf.as_operator(label_field="topic", score_field="topic_proba")(ddf)   # lazy

The wrapped estimator must take a list of strings (a ``Pipeline`` starting with a text
vectorizer, say). The operator adds the same columns, with the same dtypes, as
:class:`~nemo_cls_dask.DistributedDataClassifier`: a string label column (a list of labels
for multi-label), and optionally a ``list<float32>`` score column in label order. The
fitted estimator is the user's own in-memory object: it travels in the task graph
(pickled by dask, once per graph, not once per partition). Nothing here ever loads a
pickle from disk unless asked explicitly (:meth:`SklearnTextClassifier.load`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import frames
from ..errors import InputError
from ..tokenization import clean_texts
from ..problems import get_problem
from ..train.base import SINGLE_LABEL, NotFittedError, TextEstimatorBase, prediction_values
from .labelled import training_rows

SKLEARN_PROBLEMS = ("single_label", "multi_label")


class SklearnTextClassifier(TextEstimatorBase):
    """Wrap a scikit-learn estimator (or pipeline) over raw texts that has ``predict_proba``.

    Parameters
    ----------
    estimator
        The unfitted template (cloned by :meth:`fit`; ``estimator_`` is the fitted copy), or a
        fitted estimator with ``prefit=True``.
    problem
        ``"single_label"``: ``predict_proba`` gives ``(n, classes)`` in ``classes_`` order.
        ``"multi_label"``: :meth:`fit` passes a 0/1 matrix ``(n, labels)`` (e.g. for
        ``OneVsRestClassifier``); ``predict_proba`` must give ``(n, labels)`` or a list of
        ``(n, 2)`` arrays (``MultiOutputClassifier``).
    labels
        Class names in output order. For :meth:`fit`: None uses the sorted labels found. For a
        prefit multi-label estimator: the names of its ``predict_proba`` columns (required
        unless its ``classes_`` are the names).
    label_sep
        Multi-label string cells are split on this delimiter.
    threshold
        Multi-label decision threshold on each label's probability.
    prefit
        True: ``estimator`` is already fitted and is used as is (no :meth:`fit`).

    Fitted attributes: ``estimator_``, ``classes_``, ``labels_``, ``text_field_``, ``label_fields_``.
    """

    supported_problems = SKLEARN_PROBLEMS

    def __init__(
        self,
        estimator: Any,
        *,
        problem: str = "single_label",
        labels: list[str] | None = None,
        label_sep: str | None = None,
        threshold: float = 0.5,
        prefit: bool = False,
    ) -> None:
        self.estimator = estimator
        self.problem = problem
        self.labels = labels
        self.label_sep = label_sep
        self.threshold = threshold
        self.prefit = prefit

    def _check_params(self) -> None:
        self._check_problem_params()
        if not hasattr(self.estimator, "fit") or not hasattr(self.estimator, "predict_proba"):
            raise InputError(
                f"estimator must be a scikit-learn estimator with fit and predict_proba; {type(self.estimator).__name__} "
                f"has {'no predict_proba' if hasattr(self.estimator, 'fit') else 'no fit'} (for SVC pass probability=True)."
            )
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) or not 0 <= self.threshold <= 1:
            raise InputError(f"threshold must be a number in [0, 1], got {self.threshold!r}.")

    # ------------------------------------------------------------------ fitting

    def fit(self, X: Any, y: Any = None, *, text_field: str = "text", label_field: str = "label") -> SklearnTextClassifier:
        """Fit a clone of ``estimator`` on the texts and labels; return self.

        ``X``: a pandas DataFrame with ``text_field`` and ``label_field``, or texts with
        labels ``y``. Rows with null or blank text are skipped; missing labels raise.
        """
        from sklearn.base import clone

        self._check_params()
        if self.prefit:
            raise InputError("prefit=True: the estimator is already fitted and is used as is; do not call fit "
                             "(or pass prefit=False to train a clone).")
        rows, labels = training_rows(self, X, y, text_field, label_field)
        if self.problem_type == SINGLE_LABEL:
            names = self._typed_classes(labels)[rows.targets]
            if len(set(names.tolist())) < 2:
                raise InputError(f"training data: after skipping rows without text only the class {names[0]!r} is left; "
                                 f"a classifier needs two.")
            target: Any = names
        else:
            target = rows.targets.astype(np.int64)
        estimator = clone(self.estimator)
        estimator.fit(rows.texts, target)
        self.estimator_ = estimator
        self._set_fitted_labels(list(self._output_labels(estimator, labels)), rows.text_field, rows.label_fields)
        return self

    def _output_labels(self, estimator: Any, fitted_labels: list[str] | None) -> tuple[str, ...]:
        if self.problem_type == SINGLE_LABEL:
            return tuple(str(c) for c in estimator.classes_)  # predict_proba's column order
        if fitted_labels is not None:
            return tuple(fitted_labels)
        if self.labels is not None:
            return tuple(str(label) for label in self.labels)
        classes = getattr(estimator, "classes_", None)
        if classes is not None and all(isinstance(c, str) for c in np.ravel(classes)):
            return tuple(np.ravel(classes))
        raise InputError("A prefit multi_label estimator needs labels=[...] naming its predict_proba columns.")

    def _is_fitted(self) -> bool:
        if self.prefit:
            return _is_fitted(self.estimator)
        return getattr(self, "estimator_", None) is not None

    def fitted(self) -> tuple[Any, tuple[str, ...]]:
        """The fitted estimator and its output labels; raises :class:`NotFittedError` if there is none.

        With ``prefit=True`` the wrapper takes its labels, ``classes_`` and fields from the
        estimator the first time it is used (there is no ``fit`` call to set them).
        """
        if self.prefit:
            self._check_params()
            if not _is_fitted(self.estimator):
                raise NotFittedError(f"prefit=True but the {type(self.estimator).__name__} is not fitted; fit it first, "
                                     f"or pass prefit=False and call fit().")
            if getattr(self, "labels_", None) is None:
                self._y_kind = "typed" if self.problem_type == SINGLE_LABEL else "column"
                self._y_values = np.asarray(getattr(self.estimator, "classes_", []))
                self._set_fitted_labels(list(self._output_labels(self.estimator, None)), "text", ("label",))
            return self.estimator, self.labels_
        self._check_fitted()
        return self.estimator_, self.labels_

    def _check_fitted(self) -> None:
        if self.prefit:
            self.fitted()
        else:
            super()._check_fitted()

    def _decision_thresholds(self) -> np.ndarray:
        return np.full(len(self.labels_), float(self.threshold))

    # ------------------------------------------------------------------ inference

    def _outputs(self, X: Any, text_field: str) -> np.ndarray:
        """Probabilities ``(n, labels)`` in ``labels_`` order (float64), NaN rows for null/blank text."""
        estimator, labels = self.fitted()
        texts, valid = clean_texts(prediction_values(X, text_field), None)
        return _probabilities(estimator, texts, valid, len(labels), self.problem)

    def _scores(self, outputs: np.ndarray) -> np.ndarray:
        return outputs

    def as_operator(self, *, text_field: str = "text", label_field: str = "preds", score_field: str | None = None,
                    max_chars: int | None = None) -> SklearnOperator:
        """An operator adding ``label_field`` (and ``score_field``) to (dask) DataFrames."""
        self.fitted()
        return SklearnOperator(self, text_field=text_field, label_field=label_field, score_field=score_field, max_chars=max_chars)

    # ------------------------------------------------------------------ saving

    def save_pretrained(self, save_directory: str | Path, *, max_len: int | None = None) -> Path:
        """Write a pickle-free ``tfidf-linear`` checkpoint folder (JSON + safetensors) that
        ``DistributedDataClassifier(model_identifier=folder)`` and ``nemo-cls-dask classify --model``
        load with no other options.

        Only ``Pipeline([TfidfVectorizer, linear model])`` fits the layout (see
        :mod:`nemo_cls_dask.lightweight.tfidf_export` for the models); anything else raises
        :class:`~nemo_cls_dask.lightweight.tfidf_export.LayoutUnsupported`, and :meth:`save`
        (a pickle, trusted use only) remains for it. ``max_len``: term ids kept per text.
        """
        from .tfidf_export import DEFAULT_MAX_LEN, save_tfidf_linear

        return save_tfidf_linear(self, save_directory, max_len=max_len or DEFAULT_MAX_LEN)

    def save(self, path: str | Path) -> Path:
        """Write this object with joblib, for **trusted use only**: the file is a pickle, and
        loading it runs code, so share it only with people who trust you and load only files
        you made (see :meth:`load`). Prefer :meth:`save_pretrained` where the model fits its
        pickle-free layout."""
        import joblib

        warnings.warn(
            f"{path} is a pickle (joblib): loading it can run arbitrary code. Load it only with "
            f"SklearnTextClassifier.load(path, allow_pickle=True), and only if you trust its origin.",
            UserWarning,
            stacklevel=2,
        )
        path = Path(path)
        joblib.dump(self, path)
        return path

    @classmethod
    def load(cls, path: str | Path, *, allow_pickle: bool = False) -> SklearnTextClassifier:
        """Read a file written by :meth:`save`. Refused unless ``allow_pickle=True``: the file is
        a pickle and loading it runs whatever code it holds."""
        if allow_pickle is not True:
            raise InputError(
                f"{path} is a pickle; loading it can run arbitrary code. Pass allow_pickle=True if you "
                f"trust where it came from."
            )
        import joblib

        loaded = joblib.load(Path(path))
        if not isinstance(loaded, cls):
            raise InputError(f"{path} holds a {type(loaded).__name__}, not a {cls.__name__}.")
        return loaded


def _is_fitted(estimator: Any) -> bool:
    """scikit-learn's own check; for duck-typed estimators (no sklearn tags), any public
    attribute ending in ``_`` (the fitted-attribute convention) counts."""
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(estimator)
        return True
    except NotFittedError:
        return False
    except (AttributeError, TypeError):
        return any(name.endswith("_") and not name.startswith("_") for name in vars(estimator))


@dataclass(frozen=True)
class _Outputs:
    """What the partition function needs besides the estimator (small and picklable)."""

    text_field: str
    label_field: str
    score_field: str | None
    max_chars: int | None
    labels: tuple[str, ...]
    problem: str
    threshold: float

    def dtypes(self) -> dict[str, Any]:
        label = frames.LABEL_LIST_DTYPE if get_problem(self.problem).multi_label else frames.LABEL_DTYPE
        return {self.label_field: label} | ({self.score_field: frames.SCORE_LIST_DTYPE} if self.score_field else {})


class SklearnOperator:
    """``op(df)``: add a scikit-learn estimator's label (and score) columns to a DataFrame.

    Lazy for a dask DataFrame (one ``map_partitions``, meta with the exact dtypes), eager for
    pandas. Every row, its index value and position are kept; null, non-string or blank
    text gives null outputs. The options, the columns and whether the estimator is fitted
    are checked when the operator is applied, before any compute.
    """

    def __init__(self, model: SklearnTextClassifier, *, text_field: str = "text", label_field: str = "preds",
                 score_field: str | None = None, max_chars: int | None = None) -> None:
        self.model = model
        self.text_field = text_field
        self.label_field = label_field
        self.score_field = score_field
        self.max_chars = max_chars

    def output_names(self) -> list[str]:
        return [self.label_field] + ([self.score_field] if self.score_field else [])

    def _check(self, columns: Sequence[str]) -> _Outputs:
        for name in ("text_field", "label_field"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise InputError(f"{name} must be a non-empty column name, got {value!r}.")
        if self.score_field is not None and (not isinstance(self.score_field, str) or not self.score_field):
            raise InputError(f"score_field must be a column name or None, got {self.score_field!r}.")
        if self.label_field == self.score_field:
            raise InputError(f"label_field and score_field must differ, got {self.label_field!r} twice.")
        if self.max_chars is not None and (isinstance(self.max_chars, bool) or not isinstance(self.max_chars, int) or self.max_chars < 1):
            raise InputError(f"max_chars must be a positive integer or None, got {self.max_chars!r}.")
        columns = list(columns)
        if self.text_field not in columns:
            raise InputError(f"Text column {self.text_field!r} is not in the DataFrame; its columns are {columns}.")
        clashes = [name for name in self.output_names() if name in columns]
        if clashes:
            raise InputError(f"Output column(s) {clashes} already exist in the DataFrame; pass other names or drop them first.")
        _, labels = self.model.fitted()
        return _Outputs(self.text_field, self.label_field, self.score_field, self.max_chars, labels,
                        self.model.problem, float(self.model.threshold))

    def __call__(self, df: Any) -> Any:
        """Classify ``df``: lazy for a dask DataFrame, eager for pandas."""
        if frames.is_cudf(df) or (frames.is_dask(df) and frames.is_cudf(df._meta)):
            raise InputError("SklearnOperator runs on pandas-backed frames; convert cuDF with to_pandas() first.")
        spec = self._check(df.columns)
        estimator, _ = self.model.fitted()
        if not frames.is_dask(df):
            return sklearn_partition(df, estimator, spec)
        import dask

        meta = _meta(df._meta, spec)
        # One graph key for the estimator: every partition's task refers to it.
        shared = dask.delayed(estimator, pure=True)
        return df.map_partitions(sklearn_partition, shared, spec, meta=meta)

    def __repr__(self) -> str:
        return (f"SklearnOperator({self.model!r}, text_field={self.text_field!r}, label_field={self.label_field!r}, "
                f"score_field={self.score_field!r})")


def _meta(empty: pd.DataFrame, spec: _Outputs) -> pd.DataFrame:
    empty = empty.iloc[:0]
    return frames.assign_columns(empty, {name: frames.empty_column(dtype, empty) for name, dtype in spec.dtypes().items()})


def _probabilities(estimator: Any, texts: list[str], valid: np.ndarray, n_labels: int, problem: str) -> np.ndarray:
    """``(rows, labels)`` probabilities of the valid rows scattered by position; NaN elsewhere."""
    out = np.full((len(valid), n_labels), np.nan, dtype=np.float64)
    if not texts:
        return out
    proba = estimator.predict_proba(texts)
    if isinstance(proba, list):  # one (n, 2) array per label (MultiOutputClassifier and friends)
        if not get_problem(problem).multi_label or any(np.shape(p) != (len(texts), 2) for p in proba):
            raise InputError("predict_proba returned a list; only multi-label estimators with two classes per label "
                             "(one (n, 2) array each) are supported.")
        proba = np.column_stack([p[:, 1] for p in proba])
    proba = np.asarray(proba, dtype=np.float64)
    if proba.shape != (len(texts), n_labels):
        raise InputError(f"predict_proba returned shape {proba.shape}; expected ({len(texts)}, {n_labels}) for the labels.")
    out[valid] = proba
    return out


def sklearn_partition(part: pd.DataFrame, estimator: Any, spec: _Outputs) -> pd.DataFrame:
    """The output columns of one pandas partition, in the operator's dtypes, rows kept in place."""
    if len(part) == 0:
        return _meta(part, spec)
    texts, valid = clean_texts(frames.text_values(part[spec.text_field]), spec.max_chars)
    proba = _probabilities(estimator, texts, valid, len(spec.labels), spec.problem)
    if not get_problem(spec.problem).multi_label:
        codes = np.nan_to_num(proba).argmax(axis=1)
        columns = {spec.label_field: frames.label_column(spec.labels, codes, valid, part)}
    else:
        chosen = np.nan_to_num(proba) >= spec.threshold
        columns = {spec.label_field: frames.label_list_column(spec.labels, chosen, valid, part)}
    if spec.score_field:
        columns[spec.score_field] = frames.float_list_column(proba.astype(np.float32), valid, part)
    return frames.assign_columns(part, columns)

"""``ActiveLearner``: pool-based active learning over a dask DataFrame.

>>> learner = ActiveLearner(SklearnTextClassifier(make_pipeline(TfidfVectorizer(), LogisticRegression())),
...                         pool_ddf, text_field="text", label_field="topic")
>>> rows = learner.initialize(100, seed=0)            # random rows to label
>>> learner.update(rows.index, ask_humans(rows))      # record labels, refit on all of them
>>> rows = learner.query(100, strategy="entropy")     # the next rows, never labelled ones
>>> learner.update(rows.index, ask_humans(rows))

Querying stays distributed (:func:`~nemo_cls_dask.active.query`); the labelled rows (few,
by nature) are kept on the client in ``labeled_`` and the model is refitted on them there.
Each round fits a fresh copy of the template model built from its parameters
(``type(model)(**model.get_params())``), so every round starts from the same settings.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import dask
import pandas as pd

from ..classifiers.base import DistributedDataClassifier
from ..errors import InputError
from .query import _as_dask, _keep_index_values, as_index
from .query import query as query_rows

DEFAULT_LABEL_FIELD = "label"


class ActiveLearner:
    """Query rows to label from a dask DataFrame pool, record their labels, refit.

    Parameters
    ----------
    model
        The template estimator: a :class:`~nemo_cls_dask.TextClassifier`,
        :class:`~nemo_cls_dask.lightweight.KimCNNClassifier` or
        :class:`~nemo_cls_dask.lightweight.SklearnTextClassifier` (fitted or not; it is never
        modified). Each :meth:`update` fits a fresh copy with the same parameters.
    pool
        The unlabelled rows: a dask (or pandas) DataFrame with unique index values (the
        labels are recorded by index value; :meth:`update` refuses values that repeat).
    text_field
        The text column.
    label_field
        Name of the label column in ``labeled_`` and for ``fit`` (default ``"label"``); it
        must not be a column of the pool.

    Attributes
    ----------
    labeled_
        pandas DataFrame: the labelled pool rows (their columns and index) plus
        ``label_field``, in the order they were labelled.
    model_
        The estimator fitted on ``labeled_`` by the last :meth:`update` (None before).
    history_
        One dict per :meth:`update`: ``round``, ``added``, ``labeled``, ``strategy`` (of the
        query that offered the rows; None if they came from elsewhere), ``query_s`` and
        ``fit_s`` (seconds).
    """

    def __init__(self, model: Any, pool: Any, *, text_field: str = "text", label_field: str | None = None) -> None:
        self.model = model
        self.pool = _as_dask(pool)
        self.text_field = text_field
        self.label_field = label_field if label_field is not None else DEFAULT_LABEL_FIELD
        _check_trainable(model)
        columns = list(self.pool.columns)
        if text_field not in columns:
            raise InputError(f"Text column {text_field!r} is not in the pool; its columns are {columns}.")
        if self.label_field in columns:
            raise InputError(f"The pool already has a column {self.label_field!r}; pass another label_field=... "
                             f"(the labels you give update() go there).")
        self.labeled_ = self.pool._meta.iloc[:0].assign(**{self.label_field: pd.Series(dtype=object)})
        self.model_: Any = None
        self.history_: list[dict[str, Any]] = []
        self._offered: pd.DataFrame | None = None
        self._offered_by: str | None = None
        self._query_seconds = 0.0

    # ------------------------------------------------------------------ querying

    @property
    def n_labeled(self) -> int:
        """How many rows have labels."""
        return len(self.labeled_)

    def initialize(self, n: int, seed: int = 0) -> pd.DataFrame:
        """``n`` random unlabelled rows to label first (seeded; see ``strategy="random"``)."""
        return self._offer(n, "random", seed=seed)

    def query(self, n: int, strategy: str = "least_confidence", **options: Any) -> pd.DataFrame:
        """The ``n`` most informative unlabelled rows by the current model (``options``: those of
        :func:`~nemo_cls_dask.active.query`, e.g. ``seed``, ``candidates``)."""
        if strategy != "random" and self.model_ is None:
            raise InputError(f"strategy {strategy!r} needs a fitted model: label some rows first "
                             f"(initialize(n), then update(index, labels)).")
        return self._offer(n, strategy, **options)

    def _offer(self, n: int, strategy: str, **options: Any) -> pd.DataFrame:
        for name in ("exclude", "model", "text_field"):
            if name in options:
                raise InputError(f"{name} is set by the learner; do not pass it.")
        started = time.perf_counter()
        rows = query_rows(self.pool, n, model=self.model_, strategy=strategy, text_field=self.text_field,
                          exclude=self.labeled_.index, **options)
        self._query_seconds = time.perf_counter() - started
        score_field = options.get("score_field", "query_score")
        self._offered = rows.drop(columns=[score_field])
        self._offered_by = strategy
        return rows

    # ------------------------------------------------------------------ labelling

    def update(self, index: Any, labels: Any) -> ActiveLearner:
        """Record ``labels`` for the pool rows with these index values, then refit; return self.

        ``index``: index values of pool rows (e.g. ``rows.index`` of a query result);
        ``labels``: one label per value, in the same order. Raises :class:`InputError` (and
        records nothing) if a value is not in the pool, repeats in the pool or in
        ``index``, is labelled already, or a label is missing. If the refit itself fails
        (say, one class only), the labels stay recorded and the error propagates; the
        next :meth:`update` refits on everything.
        """
        values = as_index(index)
        if values is None or len(values) == 0:
            raise InputError("update() needs at least one index value.")
        labels = list(labels.tolist() if hasattr(labels, "tolist") else labels)
        if len(labels) != len(values):
            raise InputError(f"update() got {len(values)} index values and {len(labels)} labels; give one label per row.")
        if values.has_duplicates:
            raise InputError(f"index values repeat in update(): {sorted(map(repr, values[values.duplicated()].unique()))[:5]}.")
        missing = [value for value, label in zip(values, labels) if label is None or _is_na(label)]
        if missing:
            raise InputError(f"Labels are missing for the rows {missing[:5]}; every row given needs a label.")
        already = values[values.isin(self.labeled_.index)]
        if len(already):
            raise InputError(f"Rows {list(already[:5])} are labelled already; each row is labelled once.")
        rows = self._rows(values)
        rows = rows.assign(**{self.label_field: pd.Series(labels, index=rows.index, dtype=object)})
        strategy = self._offered_by if self._offered is not None and values.isin(self._offered.index).all() else None
        self.labeled_ = pd.concat([self.labeled_, rows]) if len(self.labeled_) else rows
        started = time.perf_counter()
        self.history_.append({"round": len(self.history_), "added": len(values), "labeled": self.n_labeled,
                              "strategy": strategy, "query_s": self._query_seconds if strategy else None, "fit_s": None})
        self.model_ = self._refit()
        self.history_[-1]["fit_s"] = time.perf_counter() - started
        return self

    def _rows(self, values: pd.Index) -> pd.DataFrame:
        """The pool rows of ``values``, in that order: from the last offer, else one pass over the pool."""
        offered = self._offered
        if offered is not None and values.isin(offered.index).all():
            return offered.loc[values]
        shared = dask.delayed(values, pure=True)
        found = self.pool.map_partitions(_keep_index_values, shared, meta=self.pool._meta).compute()
        absent = values[~values.isin(found.index)]
        if len(absent):
            raise InputError(f"Index values {list(absent[:5])} are not in the pool.")
        if found.index.has_duplicates:
            repeated = found.index[found.index.duplicated()].unique()
            raise InputError(f"Index values {list(repeated[:5])} appear more than once in the pool; "
                             f"an ActiveLearner pool needs unique index values.")
        return found.loc[values]

    def _refit(self) -> Any:
        """A fresh copy of the template fitted on every labelled row."""
        model = fresh_copy(self.model)
        return model.fit(self.labeled_, text_field=self.text_field, label_field=self.label_field)

    def __repr__(self) -> str:
        return f"ActiveLearner({self.model!r}, labeled={self.n_labeled}, rounds={len(self.history_)})"


def fresh_copy(model: Any) -> Any:
    """An unfitted estimator with a deep copy of ``model``'s constructor parameters."""
    params = model.get_params(deep=False) if _takes_deep(model) else model.get_params()
    return type(model)(**copy.deepcopy(params))


def _takes_deep(model: Any) -> bool:
    try:
        model.get_params(deep=False)
        return True
    except TypeError:
        return False


def _check_trainable(model: Any) -> None:
    if isinstance(model, DistributedDataClassifier):
        raise InputError("An ActiveLearner refits its model, and a DistributedDataClassifier only predicts; pass a "
                         "TextClassifier, KimCNNClassifier or SklearnTextClassifier (or call query() directly).")
    if not (hasattr(model, "fit") and hasattr(model, "get_params")):
        raise InputError(f"model must be an estimator with fit and get_params, got {type(model).__name__}.")
    if getattr(model, "prefit", False):
        raise InputError("A prefit SklearnTextClassifier cannot be refitted; pass one with prefit=False.")


def _is_na(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # lists (multi-label rows) are not scalars
        return False


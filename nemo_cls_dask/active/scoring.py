"""Per-row query scores, added lazily to a dask DataFrame, for each kind of model.

:func:`scored_frame` returns the pool with one more float64 column where **larger means
more informative** (NaN: the row cannot be scored, e.g. null or blank text), and for the
diversity strategies a ``list<float32>`` embedding column. Nothing is computed here.

How each kind of model is run:

* :class:`~nemo_cls_dask.DistributedDataClassifier` (and its subclasses): a copy of the
  operator with ``uncertainty=[measure]`` (and ``embedding_field=`` for k-means/coreset),
  so the model loads once per worker and never travels in the graph.
* An estimator whose public ``as_operator(...)`` gives such an operator
  (:class:`~nemo_cls_dask.TextClassifier`, :class:`~nemo_cls_dask.lightweight.KimCNNClassifier`:
  over the estimator's exported checkpoint, a temporary folder that local workers read).
* Any other estimator (:class:`~nemo_cls_dask.lightweight.SklearnTextClassifier`): its
  public ``predict_proba`` on each pandas partition; the fitted estimator is one shared key
  of the graph. It has no embeddings (``supports_embeddings`` is False).
* ``strategy="random"`` runs no model: each row's key is a seeded hash of its index value.
"""

from __future__ import annotations

from typing import Any

import dask
import numpy as np
import pandas as pd

from .. import frames
from ..classifiers.base import DistributedDataClassifier
from ..errors import InputError
from ..models.loading import describe_model
from ..tokenization import clean_texts
from ..uncertainty import entropy, least_confidence, margin

#: The query strategies, in documentation order.
STRATEGIES = ("least_confidence", "entropy", "breaking_ties", "random", "kmeans", "coreset")
#: Strategies that pick among candidates by their embeddings.
DIVERSITY_STRATEGIES = ("kmeans", "coreset")
#: The uncertainty measure each model-based strategy ranks (or picks candidates) by.
MEASURE_OF = {
    "least_confidence": "least_confidence",
    "entropy": "entropy",
    "breaking_ties": "margin",
    "kmeans": "entropy",
    "coreset": "entropy",
}
#: Measures where small means uncertain: their score is ``1 - value``.
_SMALL_IS_UNCERTAIN = ("margin",)
_MEASURES = {"entropy": entropy, "least_confidence": least_confidence, "margin": margin}
#: Checkpoint layouts whose modules give pooled embeddings (``forward_with_embedding``).
_EMBEDDING_LAYOUTS = ("head", "hf")
#: Private column names of the helper outputs.
LABEL_COLUMN = "__query_label__"
EMBEDDING_COLUMN = "__query_embedding__"


# ---------------------------------------------------------------------------- model kinds


def default_text_field(model: Any) -> str:
    """The text column a model reads: the operator's ``text_field``, the column a fitted
    estimator was trained on, else ``"text"``."""
    if isinstance(model, DistributedDataClassifier):
        return model.text_field
    return getattr(model, "text_field_", None) or "text"


def check_model(model: Any, strategy: str) -> None:
    """Raise :class:`InputError` now if ``model`` cannot serve ``strategy`` (no compute).

    An estimator is anything with the package's estimator protocol: ``check_fitted()``,
    ``problem``, ``supports_embeddings`` and ``as_operator(...)``.
    """
    if strategy == "random":
        return
    if model is None:
        raise InputError(f"strategy {strategy!r} ranks rows by a model's predictions; pass model=... "
                         f"(or use strategy='random', which needs none).")
    if isinstance(model, DistributedDataClassifier):
        return  # checked against its config when the operator is built
    if not all(hasattr(model, name) for name in ("check_fitted", "as_operator", "problem")):
        raise InputError(
            f"model must be a DistributedDataClassifier, a fitted TextClassifier, KimCNNClassifier or "
            f"SklearnTextClassifier, got {type(model).__name__}."
        )
    model.check_fitted()
    if model.problem == "regression":
        raise _regression_error(strategy, type(model).__name__)
    if strategy in DIVERSITY_STRATEGIES and not model.supports_embeddings:
        raise _no_embeddings_error(strategy, f"a {type(model).__name__} (its model gives probabilities only)")


def _regression_error(strategy: str, what: str) -> InputError:
    return InputError(
        f"strategy {strategy!r} ranks rows by class probabilities, and the {what} is a regression model; "
        f"use strategy='random', or a classifier."
    )


def _no_embeddings_error(strategy: str, what: str) -> InputError:
    return InputError(
        f"strategy {strategy!r} clusters rows by the model's embeddings, and {what} gives none; use a "
        f"transformer model (TextClassifier, or a DistributedDataClassifier over a head or transformers "
        f"checkpoint), or an uncertainty strategy ('least_confidence', 'entropy', 'breaking_ties')."
    )


# ---------------------------------------------------------------------------- scored frames


def scored_frame(ddf: Any, model: Any, strategy: str, *, text_field: str, score_field: str, seed: int) -> Any:
    """``ddf`` plus ``score_field`` (float64, larger = more informative, NaN = not scorable) and,
    for k-means/coreset, :data:`EMBEDDING_COLUMN`; lazy."""
    if strategy == "random":
        meta = random_partition(ddf._meta, text_field, seed, score_field)
        return ddf.map_partitions(random_partition, text_field, seed, score_field, meta=meta)
    measure = MEASURE_OF[strategy]
    operator = query_operator(model, text_field, measure, embeddings=strategy in DIVERSITY_STRATEGIES, strategy=strategy)
    if operator is None:  # the estimator's operator has no uncertainty output: its probabilities, per partition
        shared = dask.delayed(model, pure=True)  # one key for the estimator, read by every partition
        meta = proba_partition(ddf._meta, model, text_field, measure, score_field)
        return ddf.map_partitions(proba_partition, shared, text_field, measure, score_field, meta=meta)
    out = operator(ddf)
    measure_column = operator.extra_output_names()[0]
    embedding = operator.embedding_field
    columns = list(ddf.columns)
    meta = finish_operator_partition(out._meta, columns, measure_column, measure, embedding, score_field)
    return out.map_partitions(finish_operator_partition, columns, measure_column, measure, embedding, score_field, meta=meta)


def query_operator(model: Any, text_field: str, measure: str, *, embeddings: bool, strategy: str) -> DistributedDataClassifier | None:
    """An operator writing only the measure column (and the embedding), checked against the model.

    None when ``model`` is an estimator whose :meth:`as_operator` is not a
    :class:`DistributedDataClassifier` (the scikit-learn adapter): its rows are scored from
    ``predict_proba`` instead.
    """
    options = {"text_field": text_field, "filter_by": None, "uncertainty": (measure,), "dropout_samples": None,
               "embedding_field": EMBEDDING_COLUMN if embeddings else None}
    if isinstance(model, DistributedDataClassifier):
        if not model.own_columns:  # the generic label/score columns: write only the private label
            options |= {"label_field": LABEL_COLUMN, "score_field": None, "score_format": "list"}
        operator = model.with_options(**options)  # a checked copy
    else:
        operator = model.as_operator(text_field=text_field)
        if not isinstance(operator, DistributedDataClassifier):
            return None
        operator = model.as_operator(label_field=LABEL_COLUMN, **options)
    info = _describe(operator, strategy)
    if embeddings and info.layout not in _EMBEDDING_LAYOUTS:
        raise _no_embeddings_error(strategy, f"the {info.layout!r} checkpoint {info.path}")
    return operator


def _describe(operator: DistributedDataClassifier, strategy: str) -> Any:
    """The model's info; a regression model is refused in terms of the strategy first."""
    info = describe_model(operator.model_identifier, operator.cache_dir)
    if info.problem_type == "regression":
        raise _regression_error(strategy, f"checkpoint {info.path}")
    return operator.describe()


def finish_operator_partition(
    part: pd.DataFrame,
    columns: list[str],
    measure_column: str,
    measure: str,
    embedding: str | None,
    score_field: str,
) -> pd.DataFrame:
    """The pool's own columns, the score (larger = more informative) and the embedding."""
    values = part[measure_column].to_numpy(dtype=np.float64, na_value=np.nan)
    if measure in _SMALL_IS_UNCERTAIN:
        values = 1.0 - values
    added = {score_field: pd.Series(values, index=part.index, dtype="float64")}
    if embedding:
        added[EMBEDDING_COLUMN] = part[embedding]
    return frames.assign_columns(part[columns], added)


def proba_partition(part: pd.DataFrame, model: Any, text_field: str, measure: str, score_field: str) -> pd.DataFrame:
    """One pandas partition plus the score computed from ``model.predict_proba`` (float64)."""
    if len(part):
        proba = np.asarray(model.predict_proba(part, text_field=text_field), dtype=np.float64)
    else:
        proba = np.zeros((0, 2))
    values = measure_scores(proba, measure, multi_label=getattr(model, "problem", "") == "multi_label")
    return frames.assign_columns(part, {score_field: pd.Series(values, index=part.index, dtype="float64")})


def measure_scores(proba: np.ndarray, measure: str, *, multi_label: bool = False) -> np.ndarray:
    """``(rows,)`` float64 scores of probabilities ``(rows, labels)``: larger = more
    informative (``1 - margin`` for the margin); NaN where a row holds NaN."""
    if len(proba) == 0:
        return np.zeros(0, dtype=np.float64)
    values = np.asarray(_MEASURES[measure](proba, multi_label=multi_label), dtype=np.float64)
    if measure in _SMALL_IS_UNCERTAIN:
        values = 1.0 - values
    values[np.isnan(proba).any(axis=1)] = np.nan
    return values


# ---------------------------------------------------------------------------- random keys


def _splitmix64(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer: a bijection of uint64 that scrambles every input bit."""
    z = values + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def random_keys(index: pd.Index, seed: int) -> np.ndarray:
    """A uniform key in ``[0, 1)`` per index value, from the value and ``seed`` alone.

    The same row gets the same key whatever the partitioning, so a seeded random query does
    not depend on how the pool is split; equal index values get equal keys.
    """
    hashed = pd.util.hash_pandas_object(index, index=False).to_numpy(dtype=np.uint64)
    salt = _splitmix64(np.asarray([seed], dtype=np.uint64))[0]
    mixed = _splitmix64(hashed ^ salt)
    return (mixed >> np.uint64(11)).astype(np.float64) * 2.0**-53


def random_partition(part: pd.DataFrame, text_field: str, seed: int, score_field: str) -> pd.DataFrame:
    """One partition plus its random keys (NaN where the text is null or blank)."""
    keys = random_keys(part.index, seed) if len(part) else np.zeros(0)
    _, valid = clean_texts(frames.text_values(part[text_field]), None)
    keys = np.where(valid, keys, np.nan)
    return frames.assign_columns(part, {score_field: pd.Series(keys, index=part.index, dtype="float64")})

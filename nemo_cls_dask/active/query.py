"""``query(ddf, n, model=..., strategy=...)``: the ``n`` most informative rows of a dask DataFrame.

The frame is never collected: each partition is scored on the workers (the model loads
once per worker), each keeps its own best rows, and a tree of merges brings only the
answer to the client (:mod:`nemo_cls_dask.active.topn`). The diversity strategies bring a
few more rows, the ``candidates`` with their embeddings, and choose among them on the
client.
"""

from __future__ import annotations

from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa

from .. import frames
from ..errors import InputError
from . import diversity, scoring
from .scoring import DIVERSITY_STRATEGIES, EMBEDDING_COLUMN, STRATEGIES
from .topn import top_rows

#: Default candidates for k-means/coreset: this many times ``n``.
CANDIDATES_PER_ROW = 10


def query(
    ddf: Any,
    n: int,
    *,
    model: Any = None,
    strategy: str = "least_confidence",
    text_field: str | None = None,
    exclude: Any = None,
    candidates: int | None = None,
    seed: int = 0,
    score_field: str = "query_score",
    split_every: int = 16,
) -> pd.DataFrame:
    """Return the ``n`` most informative rows of ``ddf`` as a pandas DataFrame, best first.

    Parameters
    ----------
    ddf
        The pool: a dask DataFrame (a pandas one is wrapped in one partition). Rows keep
        their index values and columns; ``score_field`` is added.
    n
        Rows wanted (``>= 1``). **A pool with fewer scorable rows gives all of them** (fewer
        than ``n``, no error), so a loop can drain a pool. A pool with no scorable row left
        (empty, all excluded, or every text null/blank) raises :class:`InputError`.
    model
        A :class:`~nemo_cls_dask.DistributedDataClassifier`, or a fitted
        :class:`~nemo_cls_dask.TextClassifier`, :class:`~nemo_cls_dask.lightweight.KimCNNClassifier`
        or :class:`~nemo_cls_dask.lightweight.SklearnTextClassifier`. Not used by ``"random"``.
        Regression models have no probabilities: only ``"random"`` works with them.
    strategy
        What "informative" means; ``score_field`` holds it, and **larger is more
        informative** for every strategy:

        ``"least_confidence"``: ``1 - max p``. ``"entropy"``: ``-sum p ln p``.
        ``"breaking_ties"``: ``1 - (p_top1 - p_top2)`` (smallest margin first). Multi-label
        models use the per-label versions of :mod:`nemo_cls_dask.uncertainty`.
        ``"random"``: a uniform key from a seeded hash of the row's index value, so the
        sample does not depend on the partitioning (equal index values get equal keys).
        ``"kmeans"``: take the ``candidates`` rows of highest entropy with their pooled
        embeddings, run k-means with ``k = n`` on them (unit-length vectors, seeded), and
        return the candidate nearest each centre (``n`` distinct rows), most uncertain
        first; the score is the entropy. ``"coreset"``: greedy k-center over the same
        candidates: each pick is the candidate farthest from every labelled row (``exclude``)
        and every earlier pick; rows come in the order picked; the score is the entropy.
        Both need a model that gives embeddings (transformer checkpoints; not KimCNN or
        scikit-learn models).
    text_field
        The text column (default: the model's: the operator's ``text_field`` or the column
        a fitted estimator was trained on; else ``"text"``). Null or blank text is never
        picked.
    exclude
        Index values never to return (e.g. the rows labelled already): a list-like, an
        ``Index``, or a DataFrame/Series whose *index* is used. Values not in the pool are
        ignored. ``"coreset"`` also measures distances to these rows.
    candidates
        Rows k-means/coreset choose from (default ``10 * n``; at least ``n``).
    seed
        Seeds ``"random"`` and the k-means initialisation (an integer ``>= 0``).
    score_field
        Name of the added score column (must not exist in ``ddf``).
    split_every
        Partial results merged per task in the reduction tree.

    Ties are broken by the rows' place in the frame (partition, then position), so the
    same pool and model always give the same rows in the same order.
    """
    _check_count("n", n)
    if strategy not in STRATEGIES:
        raise InputError(f"strategy must be one of {list(STRATEGIES)}, got {strategy!r}.")
    _check_seed(seed)
    if isinstance(split_every, bool) or not isinstance(split_every, (int, np.integer)) or split_every < 2:
        raise InputError(f"split_every must be an integer >= 2, got {split_every!r}.")
    ddf = _as_dask(ddf)
    scoring.check_model(model, strategy)
    text_field = text_field if text_field is not None else scoring.default_text_field(model)
    _check_columns(ddf, text_field, score_field)
    count = _candidate_count(strategy, n, candidates)
    excluded = as_index(exclude)
    pool = _without(ddf, excluded)
    scored = scoring.scored_frame(pool, model, strategy, text_field=text_field, score_field=score_field, seed=seed)
    if strategy not in DIVERSITY_STRATEGIES:
        rows = top_rows(scored, n, score_field, split_every=split_every).compute()
    else:
        rows = _diverse(ddf, scored, n, model, strategy, text_field, excluded, count, seed, score_field, split_every)
    if len(rows) == 0:
        raise InputError(
            "No row of the pool can be queried: it is empty, every row is excluded, or every "
            f"{text_field!r} value is null or blank."
        )
    return rows


def _diverse(
    ddf: Any,
    scored: Any,
    n: int,
    model: Any,
    strategy: str,
    text_field: str,
    excluded: pd.Index | None,
    count: int,
    seed: int,
    score_field: str,
    split_every: int,
) -> pd.DataFrame:
    """k-means or coreset picks among the ``count`` most uncertain rows."""
    tasks = [top_rows(scored, count, score_field, split_every=split_every).to_delayed(optimize_graph=True)[0]]  # one partition
    if strategy == "coreset" and excluded is not None and len(excluded):
        labelled = scoring.scored_frame(_only(ddf, excluded), model, strategy, text_field=text_field,
                                        score_field=score_field, seed=seed)
        tasks.append(dask.delayed(_stack_embeddings)(labelled.to_delayed(optimize_graph=True)))
    results = dask.compute(*tasks)
    pool = results[0]
    if len(pool) == 0:
        return pool.drop(columns=[EMBEDDING_COLUMN])
    points = embedding_matrix(pool[EMBEDDING_COLUMN])
    if strategy == "kmeans":
        picks = np.sort(diversity.kmeans_picks(points, n, seed=seed))  # candidates are in rank order
    else:
        picks = diversity.k_center_greedy(points, n, results[1] if len(results) > 1 else None)
    return pool.iloc[picks].drop(columns=[EMBEDDING_COLUMN])


def embedding_matrix(column: pd.Series) -> np.ndarray:
    """A ``list<float32>`` column without nulls as a float32 ``(rows, dim)`` matrix."""
    array = pa.array(column)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if len(array) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    flat = np.asarray(array.flatten(), dtype=np.float32)
    return flat.reshape(len(array), -1)


def _stack_embeddings(parts: list[pd.DataFrame]) -> np.ndarray:
    """The embeddings of scorable rows of several partitions, stacked (runs on a worker)."""
    blocks = []
    for part in parts:
        column = part[EMBEDDING_COLUMN]
        keep = column.notna().to_numpy()
        if keep.any():
            blocks.append(embedding_matrix(column[keep]))
    return np.concatenate(blocks) if blocks else np.zeros((0, 0), dtype=np.float32)


# ---------------------------------------------------------------------------- inputs


def _check_count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}.")


def _candidate_count(strategy: str, n: int, candidates: Any) -> int:
    """Rows the diversity strategies choose among (checked for every strategy)."""
    count = CANDIDATES_PER_ROW * n if candidates is None else candidates
    _check_count("candidates", count)
    if count < n:
        raise InputError(f"candidates must be at least n={n} (the rows {strategy!r} would choose among), got {count}.")
    return count


def _check_seed(seed: Any) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**64:
        raise InputError(f"seed must be an integer in [0, 2**64), got {seed!r}.")


def _as_dask(df: Any) -> Any:
    """A pandas-backed dask DataFrame (pandas: one partition; cuDF-backed: converted)."""
    if isinstance(df, pd.DataFrame):
        return dd.from_pandas(df, npartitions=1, sort=False)
    if not frames.is_dask(df) or not hasattr(df, "columns"):
        raise InputError(f"The pool must be a dask (or pandas) DataFrame, got {type(df).__name__}.")
    if frames.is_cudf(df._meta):
        # The model still runs on the worker's GPU; only the few helper columns are pandas.
        return df.to_backend("pandas")
    return df


def _check_columns(ddf: Any, text_field: str, score_field: str) -> None:
    columns = list(ddf.columns)
    if not isinstance(text_field, str) or text_field not in columns:
        raise InputError(f"Text column {text_field!r} is not in the DataFrame; its columns are {columns}. "
                         f"Pass text_field=...")
    if not isinstance(score_field, str) or not score_field:
        raise InputError(f"score_field must be a non-empty column name, got {score_field!r}.")
    if score_field in columns:
        raise InputError(f"The pool already has a column {score_field!r}; pass another score_field=...")


def as_index(values: Any) -> pd.Index | None:
    """Index values from a list-like, an Index, or a DataFrame/Series (its index); None stays None."""
    if values is None:
        return None
    if frames.is_dask(values):
        raise InputError("exclude must be in memory (a list of index values, an Index, or a pandas "
                         "DataFrame/Series whose index is used), not a dask collection.")
    if isinstance(values, (pd.DataFrame, pd.Series)):
        return values.index
    if isinstance(values, pd.Index):
        return values
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise InputError(f"exclude must be a list-like of index values, got {type(values).__name__}.")
    return pd.Index(list(values))


def _drop_index_values(part: pd.DataFrame, values: pd.Index) -> pd.DataFrame:
    return part[~part.index.isin(values)]


def _keep_index_values(part: pd.DataFrame, values: pd.Index) -> pd.DataFrame:
    return part[part.index.isin(values)]


def _without(ddf: Any, values: pd.Index | None) -> Any:
    """``ddf`` lazily without the rows whose index value is in ``values``."""
    if values is None or len(values) == 0:
        return ddf
    shared = dask.delayed(values, pure=True)  # one key, however many partitions read it
    return ddf.map_partitions(_drop_index_values, shared, meta=ddf._meta)


def _only(ddf: Any, values: pd.Index) -> Any:
    """``ddf`` lazily restricted to the rows whose index value is in ``values``."""
    shared = dask.delayed(values, pure=True)
    return ddf.map_partitions(_keep_index_values, shared, meta=ddf._meta)

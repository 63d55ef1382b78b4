"""Distributed top-n of a dask DataFrame by a score column, with deterministic ties.

Each partition keeps its own ``n`` best rows (a task on a worker), then groups of at most
``split_every`` partial results are merged into ``n`` rows, level by level, until one task
holds the answer. Only that answer (``n`` rows) reaches the client; no process ever holds
more than ``split_every * n`` rows. Rows whose score is NaN are never picked.

Order: score descending, then the row's place in the frame (partition number, then
position inside the partition). That is exactly the order of a stable descending sort of
the whole frame, so the result does not depend on how the tree of merges is shaped.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import dask
import numpy as np
import pandas as pd


class Top(NamedTuple):
    """A partial top-n: the rows, their scores and where each row sits in the frame."""

    rows: pd.DataFrame
    scores: np.ndarray
    partitions: np.ndarray
    positions: np.ndarray


def _order(scores: np.ndarray, partitions: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Positions sorted by score descending, then partition and position ascending."""
    return np.lexsort((positions, partitions, -scores))


def partition_top(part: pd.DataFrame, n: int, number: int, score_field: str) -> Top:
    """The ``n`` best rows of one partition (NaN scores dropped), best first."""
    scores = pd.to_numeric(part[score_field], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    scored = np.flatnonzero(~np.isnan(scores))
    positions = scored[_order(scores[scored], np.zeros(len(scored)), scored)][:n]
    return Top(part.iloc[positions], scores[positions], np.full(len(positions), number, dtype=np.int64), positions)


def merge_tops(tops: list[Top], n: int) -> Top:
    """The ``n`` best rows of several partial results, best first."""
    scores = np.concatenate([top.scores for top in tops])
    partitions = np.concatenate([top.partitions for top in tops])
    positions = np.concatenate([top.positions for top in tops])
    order = _order(scores, partitions, positions)[:n]
    nonempty = [top.rows for top in tops if len(top.rows)] or [tops[0].rows]
    rows = pd.concat(nonempty) if len(nonempty) > 1 else nonempty[0]
    return Top(rows.iloc[order], scores[order], partitions[order], positions[order])


def top_n_delayed(ddf: Any, n: int, score_field: str, *, split_every: int = 16) -> Any:
    """A ``dask.delayed`` :class:`Top` of the ``n`` best rows of ``ddf`` (lazy; nothing runs)."""
    if split_every < 2:
        raise ValueError(f"split_every must be >= 2, got {split_every}")
    parts = ddf.to_delayed(optimize_graph=True)
    level = [dask.delayed(partition_top)(part, n, number, score_field) for number, part in enumerate(parts)]
    while len(level) > 1:
        level = [dask.delayed(merge_tops)(level[i : i + split_every], n) for i in range(0, len(level), split_every)]
    return level[0]

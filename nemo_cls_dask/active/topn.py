"""Distributed top-n of a dask DataFrame by a score column, with deterministic ties.

This is dask's own ``DataFrame.nlargest`` (pandas ``nlargest`` on each partition, then on
groups of at most ``split_every`` partial results, level by level), over the rows whose
score is not NaN: only ``n`` rows reach the client and no task holds more than
``split_every * n`` rows. NaN rows are dropped first because ``nlargest`` would return them
when fewer than ``n`` rows have a score; a row that cannot be scored is never picked.

Order: score descending, ties in frame order (partition, then position), the order of a
stable descending sort of the whole frame. pandas keeps the first of equal values and dask
concatenates partial results in partition order, so the tree of merges does not change the
answer; ``tests/test_active.py`` checks this against a stable sort on frames with ties,
duplicate index values and NaN scores.
"""

from __future__ import annotations

from typing import Any


def top_rows(ddf: Any, n: int, score_field: str, *, split_every: int = 16) -> Any:
    """The ``n`` rows of ``ddf`` with the largest ``score_field`` (lazy dask frame, best first)."""
    if split_every < 2:
        raise ValueError(f"split_every must be >= 2, got {split_every}")
    return ddf.dropna(subset=[score_field]).nlargest(n, score_field, split_every=split_every)

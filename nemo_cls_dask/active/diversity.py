"""Diversity-aware selection on a small candidate set held by the client: k-means and k-center.

Both work on embeddings that are first scaled to unit length, so distances compare
directions (cosine geometry), which is what sentence encoders' pooled vectors mean. They
are plain numpy, seeded and deterministic: scikit-learn is not a dependency of the package.
The candidate sets are small (``candidates`` rows, a few thousand at most), so the
``O(rows x k)`` distance matrices fit in memory.
"""

from __future__ import annotations

import numpy as np


def unit_rows(points: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (an all-zero row stays zero), as float64."""
    points = np.asarray(points, dtype=np.float64)
    norms = np.linalg.norm(points, axis=1, keepdims=True)
    return points / np.where(norms > 0, norms, 1.0)


def squared_distances(points: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """``(rows, centers)`` squared Euclidean distances, clipped at 0 against rounding."""
    cross = points @ centers.T
    dist = (points * points).sum(axis=1)[:, None] - 2.0 * cross + (centers * centers).sum(axis=1)[None, :]
    return np.maximum(dist, 0.0)


def _plus_plus_init(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: each new center drawn with probability proportional to its squared
    distance from the nearest center so far (spreads the starting centers out)."""
    centers = [points[int(rng.integers(len(points)))]]
    nearest = squared_distances(points, np.asarray(centers))[:, 0]
    for _ in range(1, k):
        total = nearest.sum()
        if total <= 0:  # fewer distinct points than k: any point will do
            choice = int(rng.integers(len(points)))
        else:
            choice = int(rng.choice(len(points), p=nearest / total))
        centers.append(points[choice])
        nearest = np.minimum(nearest, squared_distances(points, points[choice][None, :])[:, 0])
    return np.asarray(centers)


def kmeans(points: np.ndarray, k: int, *, seed: int = 0, max_iter: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means with k-means++ seeding: ``(centers (k, dim), assignment (rows,))``.

    An emptied cluster is re-seeded with the point farthest from its own center, so all
    ``k`` clusters stay in use. Stops when the assignment no longer changes.
    """
    if not 1 <= k <= len(points):
        raise ValueError(f"k must be in [1, {len(points)}], got {k}")
    rng = np.random.default_rng(seed)
    centers = _plus_plus_init(points, k, rng)
    assignment = np.full(len(points), -1)
    for _ in range(max_iter):
        dist = squared_distances(points, centers)
        new = dist.argmin(axis=1)
        if np.array_equal(new, assignment):
            break
        assignment = new
        for cluster in range(k):
            members = assignment == cluster
            if members.any():
                centers[cluster] = points[members].mean(axis=0)
            else:
                farthest = int(dist[np.arange(len(points)), assignment].argmax())
                centers[cluster] = points[farthest]
                assignment[farthest] = cluster
    return centers, assignment


def nearest_distinct(points: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """For each center, in order, the position of the nearest point not taken by an earlier one.

    Ties go to the lower position (earlier candidate). Returns ``len(centers)`` distinct
    positions (requires ``len(points) >= len(centers)``).
    """
    dist = squared_distances(points, centers)
    taken = np.zeros(len(points), dtype=bool)
    picks = []
    for column in range(len(centers)):
        order = np.argsort(dist[:, column], kind="stable")
        choice = next(int(i) for i in order if not taken[i])
        taken[choice] = True
        picks.append(choice)
    return np.asarray(picks, dtype=np.int64)


def kmeans_picks(points: np.ndarray, n: int, *, seed: int = 0) -> np.ndarray:
    """``n`` distinct positions: k-means with ``k = n`` on unit-scaled ``points``, then the
    point nearest each center. All positions when there are ``n`` points or fewer."""
    if len(points) <= n:
        return np.arange(len(points))
    unit = unit_rows(points)
    centers, _ = kmeans(unit, n, seed=seed)
    return nearest_distinct(unit, centers)


def k_center_greedy(points: np.ndarray, n: int, labelled: np.ndarray | None = None) -> np.ndarray:
    """Greedy k-center ("coreset"): repeatedly take the point farthest from everything
    labelled or taken so far; returns up to ``n`` positions in the order taken.

    With nothing labelled, the first pick is position 0 (the caller sorts candidates by
    uncertainty, so that is the most uncertain one). Ties go to the lower position.
    Distances are Euclidean between unit-scaled rows.

    Hand-written: no kept library offers greedy k-center seeded by already-labelled
    points; it is a few lines of numpy over at most ``candidates`` rows.
    """
    unit = unit_rows(points)
    n = min(n, len(unit))
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if labelled is not None and len(labelled):
        nearest = squared_distances(unit, unit_rows(labelled)).min(axis=1)
    else:
        nearest = np.full(len(unit), np.inf)
    picks: list[int] = []
    for step in range(n):
        choice = 0 if step == 0 and np.isinf(nearest).all() else int(np.argmax(nearest))
        picks.append(choice)
        nearest = np.minimum(nearest, squared_distances(unit, unit[choice][None, :])[:, 0])
        nearest[choice] = -1.0  # never taken twice, even among exact duplicates
    return np.asarray(picks, dtype=np.int64)

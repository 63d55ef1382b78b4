"""Metrics and threshold tuning in plain numpy.

Written here rather than taken from scikit-learn because they run inside the training
loop on every validation pass, take the package's target encodings as they are (class ids,
0/1 matrices, NaN rows for blank text) and must give the same numbers on workers that
only have the inference dependencies. The micro-F1 threshold search has no library
equivalent: scikit-learn tunes one threshold per binary problem, not thresholds that
maximize micro-F1 together.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float((y_true == y_pred).mean()) if y_true.size else float("nan")


def f1_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """F1 = 2tp / (2tp + fp + fn); 0 where the denominator is 0 (no positives at all)."""
    tp, fp, fn = (np.asarray(a, dtype=np.float64) for a in (tp, fp, fn))
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros_like(denominator), where=denominator > 0)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Macro-F1 over the classes ``0..n_classes-1`` that occur in ``y_true`` or ``y_pred``."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    tp = np.bincount(y_true[y_true == y_pred], minlength=n_classes)
    predicted = np.bincount(y_pred, minlength=n_classes)
    actual = np.bincount(y_true, minlength=n_classes)
    f1 = f1_from_counts(tp, predicted - tp, actual - tp)
    present = (predicted + actual) > 0
    return float(f1[present].mean()) if present.any() else float("nan")


def multilabel_f1(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(micro-F1, macro-F1, per-label F1) of boolean matrices ``(n, labels)``."""
    y_true, y_pred = np.asarray(y_true, bool), np.asarray(y_pred, bool)
    tp = (y_true & y_pred).sum(axis=0)
    fp = (~y_true & y_pred).sum(axis=0)
    fn = (y_true & ~y_pred).sum(axis=0)
    per_label = f1_from_counts(tp, fp, fn)
    micro = float(f1_from_counts(tp.sum(), fp.sum(), fn.sum()))
    return micro, float(per_label.mean()) if per_label.size else float("nan"), per_label


#: What :func:`tune_thresholds` maximizes on the validation rows.
THRESHOLD_OBJECTIVES = ("micro_f1", "label_f1")


def tune_thresholds(y_true: np.ndarray, proba: np.ndarray, default: float = 0.5, objective: str = "micro_f1") -> np.ndarray:
    """Per-label decision thresholds tuned on ``(y_true, proba)``; a label is predicted when
    ``proba >= threshold``.

    ``objective="micro_f1"`` (default): the thresholds that together maximize micro-F1,
    found by coordinate ascent from ``default`` (each label in turn gets its best cut given
    the others, until none moves). A label counts as much as its rows do, so a rare label's
    threshold cannot buy a noisy gain of its own F1 with many false positives.
    ``objective="label_f1"``: each label's threshold maximizes that label's own F1 (better
    macro-F1, worse micro-F1 on held-out rows: see BENCHMARKS.md).

    Every observed probability is a candidate cut; the threshold is the midpoint between
    the lowest probability predicted and the next lower one (a margin on both sides).
    Labels without a positive row keep ``default``.
    """
    if objective not in THRESHOLD_OBJECTIVES:
        raise ValueError(f"objective must be one of {THRESHOLD_OBJECTIVES}, got {objective!r}")
    y_true, proba = np.asarray(y_true, bool), np.asarray(proba, np.float64)
    if objective == "label_f1":
        thresholds = np.full(proba.shape[1], default, dtype=np.float64)
        for j in np.flatnonzero(y_true.any(axis=0)):
            cuts = _Cuts(y_true[:, j], proba[:, j])
            thresholds[j] = cuts.threshold(int(np.argmax(cuts.scored(f1_from_counts(cuts.tp, cuts.fp, cuts.positives - cuts.tp)))))
        return thresholds
    return _tune_micro_f1(y_true, proba, default)


class _Cuts:
    """The candidate cuts of one label: predicting its ``i + 1`` most probable rows, for each ``i``."""

    def __init__(self, truth: np.ndarray, proba: np.ndarray) -> None:
        order = np.argsort(-proba, kind="stable")
        self.p, truth = proba[order], truth[order]
        self.tp, self.fp = np.cumsum(truth), np.cumsum(~truth)
        self.positives = int(truth.sum())
        # only the last position of each run of equal probabilities is a real cut
        self.real = np.r_[self.p[1:] != self.p[:-1], True]

    def scored(self, scores: np.ndarray) -> np.ndarray:
        return np.where(self.real, scores, -1.0)

    def threshold(self, best: int) -> float:
        lower = self.p[best + 1] if best + 1 < len(self.p) else 0.0
        return float((self.p[best] + lower) / 2.0)


def _tune_micro_f1(y_true: np.ndarray, proba: np.ndarray, default: float, max_rounds: int = 20) -> np.ndarray:
    thresholds = np.full(proba.shape[1], default, dtype=np.float64)
    predicted = proba >= thresholds
    tp = (y_true & predicted).sum(axis=0)
    fp = (~y_true & predicted).sum(axis=0)
    fn = (y_true & ~predicted).sum(axis=0)
    labels = [(j, _Cuts(y_true[:, j], proba[:, j])) for j in np.flatnonzero(y_true.any(axis=0))]
    for _ in range(max_rounds):
        moved = False
        for j, cuts in labels:
            others = (tp.sum() - tp[j], fp.sum() - fp[j], fn.sum() - fn[j])
            current = f1_from_counts(tp.sum(), fp.sum(), fn.sum())
            scores = cuts.scored(f1_from_counts(others[0] + cuts.tp, others[1] + cuts.fp, others[2] + cuts.positives - cuts.tp))
            best = int(np.argmax(scores))
            none = f1_from_counts(*others[:2], others[2] + cuts.positives)  # predicting no row at all
            if max(scores[best], none) <= current + 1e-12:
                continue
            if none > scores[best]:
                thresholds[j] = float((cuts.p[0] + 1.0) / 2.0)
                tp[j], fp[j], fn[j] = 0, 0, cuts.positives
            else:
                thresholds[j] = cuts.threshold(best)
                tp[j], fp[j], fn[j] = cuts.tp[best], cuts.fp[best], cuts.positives - cuts.tp[best]
            moved = True
        if not moved:
            break
    return thresholds


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    y_true = np.asarray(y_true, np.float64).reshape(len(y_true), -1)
    y_pred = np.asarray(y_pred, np.float64).reshape(len(y_pred), -1)
    error = y_pred - y_true
    return {"mse": float((error**2).mean()), "mae": float(np.abs(error).mean())}


#: Bins of :func:`expected_calibration_error` unless told otherwise (as in Guo et al., 2017).
ECE_BINS = 15


def _binned_gap(confidence: np.ndarray, outcome: np.ndarray, n_bins: int) -> float:
    """Sum over equal-width bins of ``(rows in bin / rows) * |mean outcome - mean confidence|``.

    Bin ``i`` holds confidences in ``(i / n_bins, (i + 1) / n_bins]``; 0 falls in the first.
    """
    if confidence.size == 0:
        return float("nan")
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    confidence_sums = np.bincount(bins, weights=confidence, minlength=n_bins)
    outcome_sums = np.bincount(bins, weights=outcome, minlength=n_bins)
    return float(np.abs(outcome_sums - confidence_sums).sum() / confidence.size)


def expected_calibration_error(
    proba: np.ndarray, target: np.ndarray, *, n_bins: int = ECE_BINS, multi_label: bool = False
) -> float:
    """Expected calibration error with ``n_bins`` equal-width bins over [0, 1].

    Single-label (``proba`` ``(n, classes)`` rows summing to 1, ``target`` class ids ``(n,)``):
    top-label ECE, the confidence being the highest probability and the outcome whether
    that class is the true one. Multi-label (``proba`` and 0/1 ``target`` both
    ``(n, labels)``): every (row, label) probability is binned against whether the label is
    present (each sigmoid output judged as a probability, independent of the decision
    thresholds). Rows with a NaN probability are left out; no rows give NaN.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}.")
    proba = np.asarray(proba, dtype=np.float64)
    target = np.asarray(target)
    if proba.ndim == 1:
        proba = proba[:, None]
    keep = ~np.isnan(proba).any(axis=1)
    proba, target = proba[keep], target[keep]
    if multi_label:
        return _binned_gap(proba.ravel(), (np.asarray(target, dtype=np.float64).reshape(proba.shape) > 0.5).ravel().astype(np.float64), n_bins)
    confidence = proba.max(axis=1) if proba.size else np.zeros(0)
    correct = (proba.argmax(axis=1) == target.astype(np.int64)).astype(np.float64) if proba.size else np.zeros(0)
    return _binned_gap(confidence, correct, n_bins)


def outcome_metrics(problem: str, scores: np.ndarray, target: np.ndarray, thresholds: np.ndarray | None,
                    labels: Any = None) -> dict[str, Any]:
    """The metrics every estimator reports, from probabilities (or values for regression).

    Single-label: ``accuracy``, ``macro_f1``, ``ece``; multi-label (``thresholds``, default
    0.5): ``micro_f1``, ``macro_f1``, ``per_label_f1`` (dict by label), ``ece``; regression:
    ``mse``, ``mae``. Rows whose scores hold NaN (null or blank text) are left out.
    """
    from ..problems import get_problem

    kind = get_problem(problem)
    keep = ~np.isnan(scores).any(axis=1)
    scores, target = scores[keep], target[keep]
    if not kind.is_classifier:
        return regression_metrics(target, scores)
    if not kind.multi_label:
        predicted = scores.argmax(axis=1)
        return {"accuracy": accuracy(target, predicted), "macro_f1": macro_f1(target, predicted, scores.shape[1]),
                "ece": expected_calibration_error(scores, target)}
    chosen = scores >= (thresholds if thresholds is not None else 0.5)
    micro, macro, per_label = multilabel_f1(target > 0.5, chosen)
    return {"micro_f1": micro, "macro_f1": macro, "per_label_f1": dict(zip(labels or (), map(float, per_label))),
            "ece": expected_calibration_error(scores, target, multi_label=True)}

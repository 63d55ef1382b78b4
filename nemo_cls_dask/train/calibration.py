"""Temperature scaling: one scalar ``T > 0`` that logits are divided by, fitted on held-out data.

Fine-tuned transformers are usually over-confident: their softmax probabilities are
closer to 0 and 1 than their accuracy warrants. Dividing the logits by a temperature
``T > 1`` softens them (``T < 1`` sharpens them) without changing any decision: the
argmax of ``z / T`` is the argmax of ``z``, and for sigmoid outputs a threshold ``t`` on
``sigmoid(z)`` becomes ``sigmoid(logit(t) / T)`` on ``sigmoid(z / T)``
(:func:`rescale_thresholds`).

``T`` minimises the negative log-likelihood (NLL) of the validation targets:

* single-label: the mean cross-entropy of ``softmax(z / T)``;
* multi-label: the mean binary cross-entropy of ``sigmoid(z / T)`` over every (row, label);
  one ``T`` is shared by all labels (a per-label temperature would fit small labels to
  noise, and one number keeps ``config.json``'s ``temperature`` a scalar).

The NLL is convex in ``1 / T`` (the loss is convex in the logits, which are linear in
``1 / T``), hence unimodal in ``log T``: a golden-section search over ``log T`` in
``[log 0.01, log 100]`` finds the minimum without gradients or starting points. A
validation set the model separates perfectly has its minimum at the lower bound (NLL
keeps falling as ``T`` shrinks); the bound keeps the result finite.

The model applies ``T`` itself (``BackboneHeadModel`` reads ``temperature`` from its
config), so this module only fits numbers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..problems import get_problem

from .metrics import ECE_BINS, expected_calibration_error

#: The range searched for ``T``.
TEMPERATURE_BOUNDS = (1e-2, 1e2)
_PROBLEMS = ("single_label", "multi_label")
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def _check(logits: np.ndarray, target: np.ndarray, problem: str) -> tuple[np.ndarray, np.ndarray]:
    """Logits as float64 ``(n, k)`` and targets, without rows whose logits are not finite."""
    if problem not in _PROBLEMS:
        raise ValueError(f"temperature scaling is for {_PROBLEMS}, got {problem!r}.")
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim == 1:
        logits = logits[:, None]
    target = np.asarray(target)
    if len(target) != len(logits):
        raise ValueError(f"{len(logits)} rows of logits but {len(target)} targets.")
    keep = np.isfinite(logits).all(axis=1)
    return logits[keep], target[keep]


def _log_softmax(z: np.ndarray) -> np.ndarray:
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _nll(logits: np.ndarray, target: np.ndarray, problem: str, temperature: float) -> float:
    z = logits / temperature
    if not get_problem(problem).multi_label:
        return float(-_log_softmax(z)[np.arange(len(z)), target.astype(np.int64)].mean())
    y = (np.asarray(target, dtype=np.float64).reshape(z.shape) > 0.5).astype(np.float64)
    # BCE with logits, stable: max(z, 0) - z y + log(1 + exp(-|z|))
    return float((np.maximum(z, 0.0) - z * y + np.log1p(np.exp(-np.abs(z)))).mean())


def negative_log_likelihood(logits: Any, target: Any, problem: str, temperature: float = 1.0) -> float:
    """Mean NLL of ``target`` under ``logits / temperature`` (see the module docstring).

    ``problem``: ``"single_label"`` (``target`` class ids ``(n,)``) or ``"multi_label"``
    (``target`` 0/1 ``(n, labels)``). Rows with non-finite logits are left out.
    """
    logits, target = _check(logits, target, problem)
    if not len(logits):
        return float("nan")
    return _nll(logits, target, problem, float(temperature))


def fit_temperature(
    logits: Any, target: Any, problem: str, *, bounds: tuple[float, float] = TEMPERATURE_BOUNDS, tolerance: float = 1e-7
) -> float:
    """The ``T`` in ``bounds`` minimising :func:`negative_log_likelihood` (golden-section on ``log T``).

    Never returns a ``T`` whose NLL is worse than ``T = 1``. Raises ``ValueError`` when no
    row has finite logits.
    """
    logits, target = _check(logits, target, problem)
    if not len(logits):
        raise ValueError("temperature scaling needs at least one row with finite logits.")
    low, high = math.log(bounds[0]), math.log(bounds[1])

    def loss(log_t: float) -> float:
        return _nll(logits, target, problem, math.exp(log_t))

    a, b = low, high
    c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
    fc, fd = loss(c), loss(d)
    while b - a > tolerance:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - _GOLDEN * (b - a)
            fc = loss(c)
        else:
            a, c, fc = c, d, fd
            d = a + _GOLDEN * (b - a)
            fd = loss(d)
    best = (a + b) / 2.0
    candidates = [(loss(best), best), (loss(low), low), (loss(high), high), (loss(0.0), 0.0)]
    value, log_t = min(candidates)
    return 1.0 if value >= loss(0.0) else math.exp(log_t)


@dataclass(frozen=True)
class TemperatureFit:
    """A fitted temperature and the validation NLL / ECE before (``T = 1``) and after."""

    temperature: float
    rows: int
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def probabilities(logits: Any, problem: str, temperature: float = 1.0) -> np.ndarray:
    """``softmax(z / T)`` (single-label) or ``sigmoid(z / T)`` (multi-label), float64."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    if not get_problem(problem).multi_label:
        return np.exp(_log_softmax(z.reshape(len(z), -1)))
    return 1.0 / (1.0 + np.exp(-z))


def calibrate_temperature(logits: Any, target: Any, problem: str, *, n_bins: int = ECE_BINS) -> TemperatureFit:
    """Fit ``T`` on ``(logits, target)`` and report NLL and ECE (``n_bins`` bins) before and after."""
    logits, target = _check(logits, target, problem)
    temperature = fit_temperature(logits, target, problem)
    multi = get_problem(problem).multi_label

    def ece(t: float) -> float:
        return expected_calibration_error(probabilities(logits, problem, t), target, n_bins=n_bins, multi_label=multi)

    return TemperatureFit(
        temperature=temperature,
        rows=int(len(logits)),
        nll_before=_nll(logits, target, problem, 1.0),
        nll_after=_nll(logits, target, problem, temperature),
        ece_before=ece(1.0),
        ece_after=ece(temperature),
    )


def rescale_thresholds(thresholds: Any, old_temperature: float, new_temperature: float) -> np.ndarray:
    """Sigmoid thresholds that give the same decisions after the temperature changes.

    ``sigmoid(z / old) >= t`` holds exactly when ``sigmoid(z / new) >= sigmoid(logit(t) * old / new)``.
    """
    t = np.asarray(thresholds, dtype=np.float64)
    with np.errstate(divide="ignore", over="ignore"):
        logit = np.log(t) - np.log1p(-t)
        return 1.0 / (1.0 + np.exp(-logit * (float(old_temperature) / float(new_temperature))))

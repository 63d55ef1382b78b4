"""How unsure a classifier is about each row: pure functions of its probabilities.

Each function takes probabilities ``(rows, labels)`` (a torch tensor or a numpy array, and
gives back the same kind) and returns one float per row where **larger means more
uncertain**, except :func:`margin`, where **smaller means more uncertain** (it is the gap
between the two best answers). They are used by the operator's ``uncertainty=`` columns
and are meant to be reused by active-learning query strategies.

Single-label rows are one probability distribution (softmax); multi-label rows are
independent yes/no decisions (sigmoid per label), so each multi-label score is the mean
over labels of the binary version of that score. Rows holding NaN give NaN.

============================  =========================  ===================================
name                          single-label (softmax)     multi-label (sigmoid), per label
============================  =========================  ===================================
``entropy`` (nats)            ``-sum p ln p``            mean of ``-(p ln p + q ln q)``, q=1-p
``least_confidence``          ``1 - max p``              mean of ``1 - max(p, q)``
``margin`` (small=uncertain)  ``p_top1 - p_top2``        mean of ``|p - q| = |2p - 1|``
``mc_variance``               variance over k dropout samples of each probability, mean over labels
============================  =========================  ===================================

Ranges: entropy is in ``[0, ln(labels)]`` (multi-label ``[0, ln 2]``), least confidence in
``[0, 1 - 1/labels]`` (multi-label ``[0, 0.5]``), margin in ``[0, 1]``, the MC variance
in ``[0, 0.25]`` for probabilities (any size for regression values).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import torch

#: Names accepted by the operator's ``uncertainty=`` option, in column order.
UNCERTAINTY_MEASURES = ("entropy", "margin", "least_confidence", "mc_variance")
#: The measures computed from one deterministic pass (``mc_variance`` needs dropout samples).
PROBABILITY_MEASURES = ("entropy", "margin", "least_confidence")

ArrayLike = TypeVar("ArrayLike", torch.Tensor, np.ndarray)


def _as_tensor(function: Callable[..., torch.Tensor]) -> Callable[..., ArrayLike]:
    """Let a torch function take and give back numpy arrays too (computed in float64 there)."""

    def wrapper(values, *args, **kwargs):
        if isinstance(values, torch.Tensor):
            return function(values, *args, **kwargs)
        result = function(torch.as_tensor(np.asarray(values, dtype=np.float64)), *args, **kwargs)
        return result.numpy()

    wrapper.__name__ = function.__name__
    wrapper.__qualname__ = function.__qualname__
    wrapper.__doc__ = function.__doc__
    return wrapper


def _bernoulli_pair(probabilities: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return probabilities, 1.0 - probabilities


@_as_tensor
def entropy(probabilities: torch.Tensor, multi_label: bool = False) -> torch.Tensor:
    """Prediction entropy in nats; ``0 ln 0`` counts as 0 (a certain row scores 0)."""
    if multi_label:
        p, q = _bernoulli_pair(probabilities)
        return -(torch.xlogy(p, p) + torch.xlogy(q, q)).mean(dim=-1)
    return -torch.xlogy(probabilities, probabilities).sum(dim=-1)


@_as_tensor
def least_confidence(probabilities: torch.Tensor, multi_label: bool = False) -> torch.Tensor:
    """One minus the probability of the chosen answer (multi-label: of each yes/no answer)."""
    if multi_label:
        p, q = _bernoulli_pair(probabilities)
        return (1.0 - torch.maximum(p, q)).mean(dim=-1)
    return 1.0 - probabilities.max(dim=-1).values


@_as_tensor
def margin(probabilities: torch.Tensor, multi_label: bool = False) -> torch.Tensor:
    """Best minus second-best probability: **small means uncertain** ("breaking ties").

    A one-label model has no second answer; its margin is its one probability. Multi-label:
    the mean over labels of ``|p - (1 - p)|``, the gap between yes and no.
    """
    if multi_label:
        return (2.0 * probabilities - 1.0).abs().mean(dim=-1)
    if probabilities.shape[-1] < 2:
        return probabilities[..., 0].clone()
    top = probabilities.topk(2, dim=-1).values
    return top[..., 0] - top[..., 1]


@_as_tensor
def mc_variance(samples: torch.Tensor) -> torch.Tensor:
    """Spread of ``k`` Monte-Carlo dropout samples ``(k, rows, outputs)`` -> ``(rows,)``.

    The variance over the samples (population variance, divided by ``k``) of each output,
    then the mean over outputs. Outputs are probabilities for classifiers and the predicted
    values for regression models.
    """
    if samples.ndim != 3 or samples.shape[0] < 2:
        raise ValueError(f"mc_variance needs samples shaped (k >= 2, rows, outputs), got {tuple(samples.shape)}")
    return samples.var(dim=0, correction=0).mean(dim=-1)


_MEASURES: dict[str, Callable[..., torch.Tensor]] = {
    "entropy": entropy,
    "margin": margin,
    "least_confidence": least_confidence,
}


def uncertainty_scores(
    names: Sequence[str],
    probabilities: torch.Tensor | None,
    *,
    multi_label: bool = False,
    samples: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The requested measures, ``{name: (rows,) float32}``, in the order of ``names``.

    ``probabilities`` feeds entropy, margin and least confidence; ``samples``
    (``(k, rows, outputs)``, already probabilities or values) feeds ``mc_variance``.
    """
    scores: dict[str, torch.Tensor] = {}
    for name in names:
        if name == "mc_variance":
            if samples is None:
                raise ValueError("mc_variance needs dropout samples")
            scores[name] = mc_variance(samples.float()).float()
        elif name in _MEASURES:
            if probabilities is None:
                raise ValueError(f"{name} needs probabilities")
            scores[name] = _MEASURES[name](probabilities.float(), multi_label=multi_label).float()
        else:
            raise ValueError(f"unknown uncertainty measure {name!r}; choose from {UNCERTAINTY_MEASURES}")
    return scores

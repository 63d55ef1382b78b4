"""Training defaults that work on their own, per mode and data size, and the near-chance check.

``TextClassifier`` leaves ``epochs``, ``learning_rate``, ``head_learning_rate`` and
``early_stopping_patience`` at ``None``/``"auto"`` unless the user sets them; ``fit`` then
calls :func:`resolve_training_plan` with the number of training rows and gets concrete
values. The two modes need very different settings:

* **frozen backbone** (only the linear head learns, on embeddings computed once): a head
  learning rate of ``1e-2`` and a few hundred optimizer steps. The old shared default
  (``5e-5`` for 3 epochs) left the head near its random start: chance accuracy.
* **full fine-tune**: a small backbone learning rate and a much larger one for the new,
  randomly initialised head, with warmup; epochs scaled up for small data so that it still
  gets enough optimizer steps, and capped so that large data does not train for hours.

Early stopping (on the validation loss, best state restored) is on whenever there is
validation data. The values here were chosen by measurement on real Debian package
descriptions with all-MiniLM-L6-v2 (``benchmarks/bench_train_defaults.py``; the grid and the
held-out accuracy are in BENCHMARKS.md).

After fitting, :func:`near_chance_message` compares the validation metric with what a
constant prediction scores (the majority class, all labels on, the mean target); a fit that
does not clearly beat it gets a :class:`NearChanceWarning` that says what to try.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import InputError
from .data import MISSING_KEY, ROWS_KEY

AUTO = "auto"

#: Frozen backbone: learning rate of the head, optimizer steps aimed for, epoch range, patience.
FROZEN_HEAD_LR = 1e-2
FROZEN_TARGET_STEPS = 300
FROZEN_EPOCHS = (10, 200)
FROZEN_PATIENCE = 5

#: Full fine-tune: learning rates of the backbone and of the new head, steps, epochs, patience.
#: The rates are those of the measured 5,000-row fine-tune in BENCHMARKS.md ("Training":
#: held-out accuracy 0.827 after about 420 steps); the old shared 5e-5 reached 0.441 on 1,800 rows.
#: On 300 rows (6 epochs, about 30 steps) they reach 0.735 held-out, the old 5e-5 x 3 epochs
#: 0.303 (BENCHMARKS.md, "Training defaults").
FINETUNE_BACKBONE_LR = 1e-4
FINETUNE_HEAD_LR = 1e-3
FINETUNE_TARGET_STEPS = 200
FINETUNE_EPOCHS = (3, 6)
FINETUNE_PATIENCE = 2

#: A validation metric that closes less than this share of the gap between the constant
#: prediction and a perfect one counts as near chance.
NEAR_CHANCE_GAP = 0.1


class NearChanceWarning(UserWarning):
    """The fitted model does not clearly beat a constant prediction on the validation data."""


@dataclass(frozen=True)
class TrainingPlan:
    """The concrete training settings of one ``fit`` and where each came from.

    ``automatic`` names the settings that were resolved here (the user left them unset);
    ``steps_per_epoch`` is the estimate the epoch count was derived from (at most
    ``max_batch_rows x gradient_accumulation_steps`` rows per optimizer step).
    """

    mode: str
    epochs: int
    learning_rate: float
    head_learning_rate: float
    early_stopping_patience: int | None
    steps_per_epoch: int
    automatic: tuple[str, ...]

    def estimator_params(self) -> dict[str, Any]:
        """The resolved values under the estimator's parameter names."""
        return {"epochs": self.epochs, "learning_rate": self.learning_rate,
                "head_learning_rate": self.head_learning_rate,
                "early_stopping_patience": self.early_stopping_patience}

    def describe(self) -> str:
        """One line: mode, epochs, learning rates, patience, which were automatic."""
        patience = "off" if self.early_stopping_patience is None else str(self.early_stopping_patience)
        lrs = f"head lr {self.head_learning_rate:g}" if self.mode == "frozen_backbone" else (
            f"backbone lr {self.learning_rate:g}, head lr {self.head_learning_rate:g}")
        auto = f" (automatic: {', '.join(self.automatic)})" if self.automatic else ""
        return (f"{self.mode}: {self.epochs} epochs (~{self.steps_per_epoch} steps each), {lrs}, "
                f"early stopping patience {patience}{auto}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_positive_int(name: str, value: Any, allow: tuple = ()) -> None:
    if isinstance(value, (str, type(None))) and value in allow:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        allowed = " or ".join([repr(a) for a in allow] + ["a positive integer"])
        raise InputError(f"{name} must be {allowed}, got {value!r}.")


def _check_rate(name: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise InputError(f"{name} must be None (automatic) or a finite non-negative number, got {value!r}.")


def check_training_params(epochs: Any, learning_rate: Any, head_learning_rate: Any, early_stopping_patience: Any) -> None:
    """Raise :class:`InputError` for a value that is neither automatic nor valid."""
    _check_positive_int("epochs", epochs, allow=(None,))
    _check_rate("learning_rate", learning_rate)
    _check_rate("head_learning_rate", head_learning_rate)
    _check_positive_int("early_stopping_patience", early_stopping_patience, allow=(None, AUTO))


def resolve_training_plan(
    *,
    frozen_backbone: bool,
    n_train_rows: int,
    rows_per_step: int,
    has_validation: bool,
    epochs: int | None = None,
    learning_rate: float | None = None,
    head_learning_rate: float | None = None,
    early_stopping_patience: int | str | None = AUTO,
) -> TrainingPlan:
    """Concrete training settings: the user's values where given, measured defaults elsewhere.

    * learning rates: frozen backbone, the head gets ``head_learning_rate``, else
      ``learning_rate`` (the only rate that mode has), else :data:`FROZEN_HEAD_LR`; full
      fine-tune, the backbone gets ``learning_rate`` or :data:`FINETUNE_BACKBONE_LR` and the
      head ``head_learning_rate`` or :data:`FINETUNE_HEAD_LR`.
    * ``epochs=None``: enough epochs for about the mode's target number of optimizer steps,
      within the mode's epoch range.
    * ``early_stopping_patience="auto"``: the mode's patience when there is validation data,
      else off. ``None`` turns it off.
    """
    check_training_params(epochs, learning_rate, head_learning_rate, early_stopping_patience)
    automatic = []
    steps_per_epoch = max(1, math.ceil(max(n_train_rows, 1) / max(rows_per_step, 1)))
    if frozen_backbone:
        mode, target_steps, (low, high), patience = "frozen_backbone", FROZEN_TARGET_STEPS, FROZEN_EPOCHS, FROZEN_PATIENCE
        head_lr = head_learning_rate if head_learning_rate is not None else learning_rate
        if head_lr is None:
            head_lr = FROZEN_HEAD_LR
            automatic.append("head_learning_rate")
        backbone_lr = learning_rate if learning_rate is not None else 0.0  # unused: the backbone is frozen
    else:
        mode, target_steps, (low, high), patience = "fine_tune", FINETUNE_TARGET_STEPS, FINETUNE_EPOCHS, FINETUNE_PATIENCE
        backbone_lr = learning_rate
        if backbone_lr is None:
            backbone_lr = FINETUNE_BACKBONE_LR
            automatic.append("learning_rate")
        head_lr = head_learning_rate
        if head_lr is None:
            head_lr = FINETUNE_HEAD_LR
            automatic.append("head_learning_rate")
    if epochs is None:
        epochs = min(max(math.ceil(target_steps / steps_per_epoch), low), high)
        automatic.append("epochs")
    if early_stopping_patience == AUTO:
        early_stopping_patience = patience if has_validation else None
        automatic.append("early_stopping_patience")
    return TrainingPlan(mode, int(epochs), float(backbone_lr), float(head_lr), early_stopping_patience,
                        steps_per_epoch, tuple(automatic))


def constant_baseline(problem: str, summary: dict[str, float], n_labels: int) -> tuple[str, float, bool]:
    """``(metric, value, higher_is_better)`` that a constant prediction scores, from training counts.

    ``summary`` is the training data summary (rows, ``label:NAME`` counts, or for
    regression ``sum:COL``/``sumsq:COL``/``missing:COL``). Single-label: accuracy of the most
    frequent label. Multi-label: micro-F1 of switching every label on (precision = share of
    positive cells, recall 1). Regression: MSE of the mean, i.e. the mean target variance.
    """
    rows = float(summary.get(ROWS_KEY, 0.0))
    if problem == "regression":
        variances = []
        for key, total in summary.items():
            if key.startswith("sum:"):
                column = key[4:]
                count = rows - float(summary.get(f"missing:{column}", 0.0))
                if count > 0:
                    mean = total / count
                    variances.append(max(float(summary[f"sumsq:{column}"]) / count - mean * mean, 0.0))
        return "mse", (sum(variances) / len(variances) if variances else math.nan), False
    counts = [float(value) for key, value in summary.items() if key.startswith("label:")]
    labelled = rows - float(summary.get(MISSING_KEY, 0.0))
    if not counts or labelled <= 0:
        return ("accuracy" if problem == "single_label" else "micro_f1"), math.nan, True
    if problem == "single_label":
        return "accuracy", max(counts) / sum(counts), True
    positive_share = sum(counts) / (labelled * max(n_labels, 1))
    return "micro_f1", 2 * positive_share / (1 + positive_share), True


def near_chance_message(problem: str, metrics: dict[str, Any], summary: dict[str, float], n_labels: int,
                        plan: TrainingPlan | None = None) -> str | None:
    """A warning text when the validation ``metrics`` do not clearly beat a constant prediction.

    "Clearly" means closing at least :data:`NEAR_CHANCE_GAP` of the gap between the
    constant prediction and a perfect score (for MSE: at most ``1 - NEAR_CHANCE_GAP`` of the
    constant's MSE, an R² of at least 0.1). Multi-label uses the tuned-threshold micro-F1
    when there is one. Returns None when there are no validation metrics or the fit is fine.
    """
    metric, baseline, higher_is_better = constant_baseline(problem, summary, n_labels)
    value = metrics.get("tuned_" + metric, metrics.get(metric))
    if value is None or not math.isfinite(float(value)) or not math.isfinite(baseline):
        return None
    value = float(value)
    if higher_is_better:
        bar = baseline + NEAR_CHANCE_GAP * (1.0 - baseline)
        if value >= bar:
            return None
        constant = "always predicting the most frequent label" if problem == "single_label" else "switching every label on"
    else:
        bar = (1.0 - NEAR_CHANCE_GAP) * baseline
        if value <= bar:
            return None
        constant = "always predicting the mean target"
    settings = f" Settings used: {plan.describe()}." if plan is not None else ""
    return (
        f"The trained model is near chance: validation {metric} {value:.4f}, against {baseline:.4f} for "
        f"{constant} (a useful model needs {'at least' if higher_is_better else 'at most'} {bar:.4f}).{settings} "
        f"Check that the labels match the texts, give more training rows, or raise the learning rate"
        f"{' of the head' if plan is not None and plan.mode == 'frozen_backbone' else ''} or the epochs."
    )

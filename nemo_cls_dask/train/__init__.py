"""Training: :class:`TextClassifier` fits transformer classifiers that the operator can run."""

from .defaults import NearChanceWarning, TrainingPlan
from .estimator import DEFAULT_BACKBONE, TextClassifier, TrainingError

__all__ = ["DEFAULT_BACKBONE", "NearChanceWarning", "TextClassifier", "TrainingError", "TrainingPlan"]

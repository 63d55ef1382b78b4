"""DataFrame operators: the generic classifier and the ready-made ones."""

from .base import DistributedDataClassifier, classify
from .debian import DebianTopicClassifier

__all__ = ["DistributedDataClassifier", "DebianTopicClassifier", "classify"]

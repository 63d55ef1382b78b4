"""DataFrame operators: the generic classifier and the ready-made ones."""

from .base import DistributedDataClassifier, classify
from .debian import DebianTopicClassifier
from .registry import CLASSIFIERS, make_classifier

__all__ = ["CLASSIFIERS", "DistributedDataClassifier", "DebianTopicClassifier", "classify", "make_classifier"]

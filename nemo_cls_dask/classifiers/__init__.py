"""DataFrame operators: the generic classifier and the ready-made ones."""

from .. import arrow_dtypes  # noqa: F401  (pandas reads the operator's list columns back from parquet)

from .base import DistributedDataClassifier, classify
from .composed import ComposedClassifier
from .debian import DebianTopicClassifier
from .hub import HubClassifier
from .nvidia import (
    ContentTypeClassifier,
    DomainClassifier,
    FineWebEduClassifier,
    FineWebMixtralEduClassifier,
    FineWebNemotronEduClassifier,
    MultilingualDomainClassifier,
    QualityClassifier,
)
from .prompt_complexity import PromptTaskComplexityClassifier
from .registry import CLASSIFIERS, make_classifier

__all__ = [
    "CLASSIFIERS",
    "ComposedClassifier",
    "ContentTypeClassifier",
    "DebianTopicClassifier",
    "DistributedDataClassifier",
    "DomainClassifier",
    "FineWebEduClassifier",
    "FineWebMixtralEduClassifier",
    "FineWebNemotronEduClassifier",
    "HubClassifier",
    "MultilingualDomainClassifier",
    "PromptTaskComplexityClassifier",
    "QualityClassifier",
    "classify",
    "make_classifier",
]

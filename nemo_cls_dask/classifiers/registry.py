"""Short names for the ready-made classifiers, used by ``--classifier`` on the command line."""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from .base import DistributedDataClassifier
from .debian import DebianTopicClassifier
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

#: name -> classifier class; each class's defaults hold its model id and column names.
CLASSIFIERS: dict[str, type[DistributedDataClassifier]] = {
    "debian-topics": DebianTopicClassifier,
    "quality": QualityClassifier,
    "domain": DomainClassifier,
    "multilingual-domain": MultilingualDomainClassifier,
    "content-type": ContentTypeClassifier,
    "fineweb-edu": FineWebEduClassifier,
    "fineweb-mixtral-edu": FineWebMixtralEduClassifier,
    "fineweb-nemotron-edu": FineWebNemotronEduClassifier,
    "prompt-task-complexity": PromptTaskComplexityClassifier,
}


def make_classifier(name: str, **options: Any) -> DistributedDataClassifier:
    """Build the classifier registered as ``name`` with the given options."""
    try:
        cls = CLASSIFIERS[name]
    except KeyError:
        raise InputError(f"Unknown classifier {name!r}; choose from {sorted(CLASSIFIERS)}.") from None
    return cls(**options)

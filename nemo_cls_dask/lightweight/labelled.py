"""In-memory labelled rows for the light estimators, which train in one process.

:func:`training_rows` reads any input :meth:`~nemo_cls_dask.train.base.TextEstimatorBase._fit_frame`
accepts, checks it with the transformer trainer's helpers (:mod:`nemo_cls_dask.train.data`),
chooses the label set and returns the rows with usable text and their targets, so the
light models accept the same inputs as :class:`~nemo_cls_dask.TextClassifier`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .. import frames
from ..errors import InputError
from ..tokenization import clean_texts
from ..train import data as D


@dataclass
class Labelled:
    """In-memory training (or validation) rows: texts with a usable value, and their targets."""

    texts: list[str]
    targets: np.ndarray  # int64 ids, float32 0/1 matrix, or float32 values (see D.encode_targets)
    text_field: str
    label_fields: tuple[str, ...]
    dropped: int  # rows left out because their text was null, not a string or blank

    def subset(self, mask: np.ndarray) -> Labelled:
        """The rows where ``mask`` is True (``dropped`` stays with the complement's owner)."""
        return Labelled([t for t, m in zip(self.texts, mask) if m], self.targets[mask], self.text_field, self.label_fields, 0)


def labelled_rows(frame: pd.DataFrame, text_field: str, fields: tuple[str, ...], problem: str, label_sep: str | None,
                  label2id: dict[str, int] | None, what: str) -> Labelled:
    """Targets of every row, then only the rows with usable text (null/blank text is dropped:
    it has nothing to learn from, and the operator gives it null outputs)."""
    targets = D.encode_targets(frame, problem, fields, label_sep, label2id, what)
    texts, valid = clean_texts(frames.text_values(frame[text_field]), None)
    return Labelled(texts, targets[valid], text_field, fields, int((~valid).sum()))


def training_rows(est: Any, X: Any, y: Any, text_field: str, label_field: Any) -> tuple[Labelled, list[str] | None]:
    """``(rows with usable text, labels in output order)`` of in-memory training data for ``est``."""
    frame, text_field, fields = est._fit_frame(X, y, text_field, label_field, allow_dask=False)
    frame = D.FrameSource(frame, text_field, fields, None, "training data").frame
    if len(frame) == 0:
        raise InputError("training data has no rows.")
    summary = D.summarize_partition(frame, est.problem, fields, est.label_sep)
    D.check_missing(summary, est.problem, fields, "training data")
    labels = est._choose_labels(summary, fields)
    label2id = {label: i for i, label in enumerate(labels)} if labels is not None else None
    rows = labelled_rows(frame, text_field, fields, est.problem, est.label_sep, label2id, "training data")
    if not rows.texts:
        raise InputError(f"training data: every value of {text_field!r} is null or blank.")
    return rows, labels


def validation_rows(est: Any, validation: Any, train: Labelled, labels: list[str] | None) -> Labelled | None:
    """The rows of ``validation`` (a frame or ``(texts, y)``) with usable text; None if none."""
    if validation is None:
        return None
    frame = est._validation_frame(validation, train.text_field, train.label_fields)
    if frames.is_dask(frame):
        raise InputError("validation data: the light models train in memory; pass a pandas DataFrame.")
    frame = D.FrameSource(frame, train.text_field, train.label_fields, None, "validation data").frame
    D.check_missing(D.summarize_partition(frame, est.problem, train.label_fields, est.label_sep), est.problem,
                    train.label_fields, "validation data")
    label2id = {label: i for i, label in enumerate(labels)} if labels is not None else None
    rows = labelled_rows(frame, train.text_field, train.label_fields, est.problem, est.label_sep, label2id, "validation data")
    return rows if rows.texts else None

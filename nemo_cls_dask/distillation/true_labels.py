"""True-labelled rows trained on beside the teacher's outputs (``distill(..., labelled=frame)``).

Training a student on the teacher's labels of a large pool *and* the few rows people
labelled is common practice: the true labels correct some of the teacher's mistakes. Here
the true rows are put in the teacher's output space, so the student's training code does
not change: a single-label row becomes a one-hot probability vector (a soft student learns
it as a certain label), a multi-label row a 0/1 vector over the teacher's labels, a
regression row its value. Labels the teacher does not know are refused, naming them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from .teacher import Teacher


def true_label_targets(frame: Any, text_field: str, label_field: str, teacher: Teacher) -> tuple[list[str], np.ndarray, list[Any]]:
    """``(texts, scores, labels)`` of the rows of ``frame`` with text, in the teacher's outputs.

    ``scores`` is ``(rows, outputs)`` float32 as the teacher's would be; ``labels`` holds the
    label (single-label), the label list (multi-label) or None (regression) per row.
    """
    if not isinstance(frame, pd.DataFrame):
        raise InputError(f"labelled must be a pandas DataFrame of true-labelled rows, got a {type(frame).__name__}.")
    missing = [name for name in (text_field, label_field) if name not in frame.columns]
    if missing:
        raise InputError(f"labelled has no column(s) {missing}; its columns are {list(frame.columns)}.")
    texts = frame[text_field].tolist()
    keep = [isinstance(t, str) and bool(t.strip()) for t in texts]
    values = [v for v, ok in zip(frame[label_field].tolist(), keep) if ok]
    texts = [t for t, ok in zip(texts, keep) if ok]
    if not texts:
        raise InputError(f"labelled has no row with text in {text_field!r}.")
    names = list(teacher.output_names)
    if teacher.problem == "regression":
        if len(names) != 1:
            raise InputError(f"labelled rows give one value per row; the teacher has {len(names)} outputs {names}.")
        numbers = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64)
        if np.isnan(numbers).any():
            raise InputError(f"labelled column {label_field!r} has {int(np.isnan(numbers).sum())} missing or "
                             f"non-numeric value(s).")
        return texts, numbers.astype(np.float32).reshape(-1, 1), [None] * len(texts)
    index = {name: i for i, name in enumerate(names)}
    multi = teacher.problem == "multi_label"
    rows = [_label_list(v, label_field) if multi else [_label(v, label_field)] for v in values]
    unknown = sorted({label for row in rows for label in row if label not in index})
    if unknown:
        raise InputError(f"labelled column {label_field!r} has labels the teacher does not have: {unknown[:10]}; "
                         f"the teacher's labels are {names}.")
    scores = np.zeros((len(texts), len(names)), dtype=np.float32)
    for i, row in enumerate(rows):
        scores[i, [index[label] for label in row]] = 1.0
    return texts, scores, [row if multi else row[0] for row in rows]


def _label(value: Any, column: str) -> str:
    if value is None or (not isinstance(value, (list, tuple, np.ndarray)) and pd.isna(value)):
        raise InputError(f"labelled column {column!r} has a missing label; drop or fill those rows.")
    return str(value)


def _label_list(value: Any, column: str) -> list[str]:
    if isinstance(value, (list, tuple, np.ndarray)):
        return [str(v) for v in value]
    return [_label(value, column)]

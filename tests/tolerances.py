"""Float tolerances for tests that compare results across batch layouts, runs or CPU kinds.

Exact equality is sound only for fp32 with identical batching on one CPU (the same kernels
see the same shapes). Other partitions, token budgets or another row of the same batch
change the matmul shapes, and AVX2, AVX512 and AMX machines pick different oneDNN kernels,
so fp32 probabilities then differ by about 1e-7: compare within ``FP32_ATOL``. A label is
an argmax: it may flip only where the two highest probabilities are that close.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

FP32_ATOL = 1e-5  # fp32 round-off between batch shapes/kernels is ~1e-7; 100x headroom


def score_rows(series: pd.Series) -> list[Any]:
    """Probability lists of a score column as Python lists (None for null rows)."""
    return pa.array(series).to_pylist() if isinstance(series.dtype, pd.ArrowDtype) else list(series)


def assert_labels_agree(got: Sequence[Any], expected: Sequence[Any], expected_scores: Sequence[Any], atol: float = FP32_ATOL) -> None:
    """Labels of two batch layouts are equal, except on rows that are a near-tie.

    A row may differ only when its expected two highest probabilities are within
    ``2 * atol`` (each side may move by ``atol``); nulls must match exactly.
    """
    got, expected, expected_scores = list(got), list(expected), list(expected_scores)
    assert len(got) == len(expected) == len(expected_scores)
    for row, (a, b, probabilities) in enumerate(zip(got, expected, expected_scores)):
        if pd.isna(a) and pd.isna(b):
            continue
        if pd.isna(a) or pd.isna(b) or a != b:
            assert probabilities is not None and not pd.isna(a) and not pd.isna(b), f"row {row}: {a!r} vs {b!r}"
            top = np.sort(np.asarray(probabilities, dtype=np.float64))[-2:]
            assert top[1] - top[0] <= 2 * atol, (
                f"row {row}: label {a!r} vs {b!r}, but the top probabilities {top.tolist()} are no near-tie"
            )

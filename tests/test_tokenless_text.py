"""Text with no tokens (zero-width, combining, NUL characters only) gets null outputs, like "" (issue 14 item 15)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nemo_cls_dask import DistributedDataClassifier
from nemo_cls_dask.tokenization import has_content

TOKENLESS = ["", "\u200b\u200b\u200b", "\u0301\u0308", "\x00\x00", "\ufeff\u2060\u200d", " \u200b\n"]
REAL = ["a sentence about packages", "\u200bword", "e\u0301te\u0301"]


@pytest.mark.parametrize("checkpoint", ["head_checkpoint", "hf_checkpoint"])
@pytest.mark.parametrize("long_documents", ["truncate", "mean"])
def test_tokenless_text_gets_null_outputs_like_empty_text(request, checkpoint, long_documents):
    folder = request.getfixturevalue(checkpoint)
    frame = pd.DataFrame({"text": TOKENLESS + REAL}, index=np.arange(len(TOKENLESS + REAL))[::-1])
    out = DistributedDataClassifier(
        model_identifier=str(folder), score_field="p", long_documents=long_documents, device="cpu"
    )(frame)
    assert out.index.tolist() == frame.index.tolist()
    assert out["preds"].isna().tolist() == [True] * len(TOKENLESS) + [False] * len(REAL)
    assert out["p"].isna().tolist() == [True] * len(TOKENLESS) + [False] * len(REAL)


def test_has_content():
    assert not any(has_content(text) for text in TOKENLESS)
    assert all(has_content(text) for text in REAL + ["!", "\ufffd", "中"])

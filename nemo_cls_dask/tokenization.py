"""Text cleaning and tokenization into ragged token ids: no padding happens here.

Padding every row to ``max_length`` up front (what CrossFit does) wastes most of the
compute on short text. Here each text becomes just its own ids, stored flat with offsets,
and :mod:`nemo_cls_dask.batching` pads each batch only to its own longest row.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: UTF-16 surrogate code points. A Python ``str`` decoded from valid UTF-8 never holds
#: them, but strings built in Python (or read from JSON ``"\\ud800"`` escapes) can, and the
#: tokenizer cannot encode them (``UnicodeEncodeError``).
_SURROGATES = re.compile("[\ud800-\udfff]")


def _fix_surrogates(text: str) -> str:
    """Join surrogate pairs into their character and replace lone ones with U+FFFD."""
    if _SURROGATES.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


@dataclass(frozen=True)
class EncodedTexts:
    """Token ids of many texts, flat: row ``i`` is ``ids[offsets[i]:offsets[i] + lengths[i]]``.

    ``valid[i]`` is False for rows whose value was null or not a string; they have no ids
    (length 0) and get null outputs.
    """

    ids: np.ndarray  # int64, all rows' ids back to back
    offsets: np.ndarray  # int64, start of each row in ``ids``
    lengths: np.ndarray  # int64, number of ids of each row (0 for invalid rows)
    valid: np.ndarray  # bool

    @property
    def num_rows(self) -> int:
        return int(self.lengths.shape[0])

    @property
    def num_tokens(self) -> int:
        return int(self.lengths.sum())


def clean_texts(values: Sequence[Any], max_chars: int | None) -> tuple[list[str], np.ndarray]:
    """Keep non-blank strings (cut to ``max_chars``), mark everything else invalid.

    Returns the texts of the valid rows, in order, and the validity mask of all rows.
    Nulls, numbers, bytes and other non-string values are invalid, and so are empty or
    whitespace-only strings (there is nothing to classify): the row is kept and its
    outputs are null, rather than a crash or a label for the text "None" or "".
    Lone UTF-16 surrogates (``"\\ud800"``) are classified as U+FFFD (the input column
    is not changed).
    """
    if max_chars is not None:
        values = [value[:max_chars] if isinstance(value, str) else value for value in values]
    valid = np.fromiter(
        (isinstance(value, str) and value != "" and not value.isspace() for value in values),
        dtype=bool,
        count=len(values),
    )
    texts = [_fix_surrogates(value) for value, ok in zip(values, valid) if ok]
    return texts, valid


def encode(tokenizer: Any, texts: list[str], valid: np.ndarray, max_length: int) -> EncodedTexts:
    """Tokenize the valid texts (truncating to ``max_length`` tokens) into ragged ids."""
    n_rows = valid.shape[0]
    lengths = np.zeros(n_rows, dtype=np.int64)
    if texts:
        batch = tokenizer(
            texts,
            truncation=True,
            max_length=max_length,
            padding=False,
            add_special_tokens=True,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        valid_lengths = np.fromiter((len(row) for row in batch), dtype=np.int64, count=len(batch))
        lengths[valid] = valid_lengths
        ids = np.fromiter((token for row in batch for token in row), dtype=np.int64, count=int(valid_lengths.sum()))
    else:
        ids = np.zeros(0, dtype=np.int64)
    offsets = np.zeros(n_rows, dtype=np.int64)
    if n_rows:
        offsets[1:] = np.cumsum(lengths)[:-1]
    return EncodedTexts(ids=ids, offsets=offsets, lengths=lengths, valid=valid)

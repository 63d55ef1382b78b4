"""Sorted, token-budgeted batches, padded per batch, and a forward pass that halves on OOM.

A batch's cost is ``rows x padded_length`` tokens. Sorting rows by length makes rows of a
batch alike, so padding is small; the budget keeps every batch's activations about the
same size whatever the text length, so short text runs in wide batches and long text in
narrow ones. Nothing here knows about DataFrames.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .tokenization import EncodedTexts

DEFAULT_CPU_BATCH_TOKENS = 8192
DEFAULT_CUDA_BATCH_TOKENS = 131072
DEFAULT_MAX_BATCH_ROWS = 1024


def plan_batches(
    lengths: np.ndarray,
    rows: np.ndarray,
    *,
    batch_tokens: int,
    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS,
    sort_by_length: bool = True,
) -> list[np.ndarray]:
    """Split ``rows`` (positions into ``lengths``) into batches within the token budget.

    With ``sort_by_length`` the rows are taken shortest first (stable, so equal lengths keep
    their order); without it, in the given order. A batch grows while
    ``rows x longest_row <= batch_tokens`` and ``rows <= max_batch_rows``; a single row longer
    than the budget still gets a batch of its own.
    """
    if batch_tokens < 1 or max_batch_rows < 1:
        raise ValueError("batch_tokens and max_batch_rows must be positive")
    rows = np.asarray(rows, dtype=np.int64)
    if sort_by_length:
        rows = rows[np.argsort(lengths[rows], kind="stable")]
    batches: list[np.ndarray] = []
    start = 0
    longest = 0
    for position, row in enumerate(rows):
        length = max(int(lengths[row]), 1)
        count = position - start + 1
        grown = max(longest, length)
        if count > 1 and (count * grown > batch_tokens or count > max_batch_rows):
            batches.append(rows[start:position])
            start, grown = position, length
        longest = grown
    if start < len(rows):
        batches.append(rows[start:])
    return batches


def pad_batch(
    encoded: EncodedTexts, rows: np.ndarray, pad_id: int, padding_side: str = "right"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Input ids and attention mask for ``rows``, padded to the batch's longest row only."""
    lengths = encoded.lengths[rows]
    width = max(int(lengths.max()), 1)
    columns = np.arange(width)
    real = columns[None, :] < lengths[:, None]
    if padding_side == "left":
        real = real[:, ::-1]
        source = encoded.offsets[rows][:, None] + columns[None, :] - (width - lengths)[:, None]
    else:
        source = encoded.offsets[rows][:, None] + columns[None, :]
    source = np.clip(source, 0, max(encoded.ids.shape[0] - 1, 0))
    gathered = encoded.ids[source] if encoded.ids.shape[0] else np.zeros_like(source)
    input_ids = np.where(real, gathered, pad_id)
    return torch.from_numpy(np.ascontiguousarray(input_ids)), torch.from_numpy(np.ascontiguousarray(real).astype(np.int64))


def is_out_of_memory(error: BaseException) -> bool:
    """True for a CUDA (or other accelerator) out-of-memory error."""
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def forward_with_oom_split(
    forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    on_split: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Run ``forward``; on out-of-memory, free the cache and run each half, down to one row.

    A one-row batch that still does not fit re-raises the error, with the row's length.
    """
    try:
        return forward(input_ids, attention_mask)
    except (torch.OutOfMemoryError, RuntimeError) as error:
        if not is_out_of_memory(error):
            raise
        rows = input_ids.shape[0]
        if rows == 1:
            raise torch.OutOfMemoryError(
                f"Out of memory on a single row of {input_ids.shape[1]} tokens; lower "
                f"max_seq_length or free device memory. ({error})"
            ) from error
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if on_split is not None:
        on_split(rows)
    half = rows // 2
    first = forward_with_oom_split(forward, *_drop_padding_columns(input_ids[:half], attention_mask[:half]), on_split)
    second = forward_with_oom_split(forward, *_drop_padding_columns(input_ids[half:], attention_mask[half:]), on_split)
    return torch.cat([first, second])


def _drop_padding_columns(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Remove columns that are padding in every row (halves of a sorted batch are shorter)."""
    used = attention_mask.bool().any(dim=0)
    return input_ids[:, used], attention_mask[:, used]

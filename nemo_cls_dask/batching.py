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
#: Close a batch early when padding would exceed 3% of it (see plan_batches).
DEFAULT_MIN_PADDING_EFFICIENCY = 0.97
#: ... but only once it holds at least this share of the token budget. Training keeps this
#: default: there the batch size is an optimization setting, and halving it changes the run.
DEFAULT_MIN_FILL = 0.125
#: Inference closes batches earlier (256 tokens of the 8,192 CPU budget): there the batch
#: size is not an optimization setting. It still moves results a little: in fp32 by float
#: round-off (about 1e-6: other kernel shapes and padding), under bf16 autocast (the CPU
#: default where AMX or AVX512-BF16 exists) by up to about 1e-2 in a probability. The
#: operator's ``deterministic=True`` runs each row alone in fp32, so a row's outputs do not
#: depend on its partition or batch. Closing early keeps small partitions' padding low
#: (figures: BENCHMARKS.md, "Inference against the tools users would pick instead").
INFERENCE_MIN_FILL = 1 / 32
#: On CPU, attention models also cap ``rows x longest_row**2`` per batch (the size of one
#: head's attention scores, summed over rows) at one 512-token row. Self-attention's score
#: tensors grow with the square of the length; once a batch's no longer fit in cache the CPU
#: waits on memory. Measured on the 2-core AVX2 EPYC, fp32 (BENCHMARKS.md, "Speed, second
#: round"): DeBERTa-v3-base shape at ~490 tokens ran 0.50 docs/s at 16 rows per batch and
#: 0.81 docs/s at one row per batch; MiniLM at ~89 tokens ran 1.08x faster with ~23-row
#: batches than with ~92. GPUs keep the token budget alone. Only used when the user left
#: ``batch_tokens`` unset, and only for layouts whose cost is quadratic in the length.
DEFAULT_CPU_ATTENTION_CELLS = 512 * 512


def plan_batches(
    lengths: np.ndarray,
    rows: np.ndarray,
    *,
    batch_tokens: int,
    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS,
    sort_by_length: bool = True,
    min_padding_efficiency: float = DEFAULT_MIN_PADDING_EFFICIENCY,
    min_fill: float = DEFAULT_MIN_FILL,
    attention_cells: int | None = None,
) -> list[np.ndarray]:
    """Split ``rows`` (positions into ``lengths``) into batches within the token budget.

    With ``sort_by_length`` the rows are taken shortest first (stable, so equal lengths keep
    their order); without it, in the given order. A batch grows while
    ``rows x longest_row <= batch_tokens`` and ``rows <= max_batch_rows``; a single row longer
    than the budget still gets a batch of its own. A batch that already holds
    ``min_fill x batch_tokens`` tokens is also closed when the next row would bring its share
    of real (non-padding) tokens below ``min_padding_efficiency``: in sorted order, that is
    where lengths jump, and a new batch wastes less than padding every row up to the jump.
    ``attention_cells`` (optional) also keeps ``rows x longest_row**2`` within it (see
    :data:`DEFAULT_CPU_ATTENTION_CELLS`).
    """
    if batch_tokens < 1 or max_batch_rows < 1:
        raise ValueError("batch_tokens and max_batch_rows must be positive")
    rows = np.asarray(rows, dtype=np.int64)
    if sort_by_length:
        rows = rows[np.argsort(lengths[rows], kind="stable")]
    row_lengths = np.maximum(lengths[rows], 1).tolist()
    batches: list[np.ndarray] = []
    start = 0
    longest = 0
    real = 0
    for position, length in enumerate(row_lengths):
        count = position - start + 1
        grown = max(longest, length)
        if count > 1:
            over_budget = count * grown > batch_tokens or count > max_batch_rows
            if attention_cells is not None and count * grown * grown > attention_cells:
                over_budget = True
            full_enough = (count - 1) * longest >= min_fill * batch_tokens
            wasteful = full_enough and (real + length) < min_padding_efficiency * count * grown
            if over_budget or wasteful:
                batches.append(rows[start:position])
                start, grown, real = position, length, 0
        longest = grown
        real += length
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


#: Lower-case texts of out-of-memory errors: torch's caching allocator ("CUDA out of
#: memory"), and RMM's (``rmm::out_of_memory`` is a ``std::bad_alloc``; through torch's or
#: cupy's RMM allocator it arrives as a RuntimeError or MemoryError whose text has these).
OUT_OF_MEMORY_TEXTS = ("out of memory", "out_of_memory", "std::bad_alloc")
#: Exception types an out-of-memory error may come as (then told apart by their text).
OUT_OF_MEMORY_TYPES = (torch.OutOfMemoryError, RuntimeError, MemoryError)


def is_out_of_memory(error: BaseException) -> bool:
    """True for an accelerator out-of-memory error, from torch's allocator or from RMM's.

    A bare host ``MemoryError`` (no text) is not one: halving a batch would not help.
    """
    if isinstance(error, torch.OutOfMemoryError):
        return True
    text = str(error).lower()
    return isinstance(error, OUT_OF_MEMORY_TYPES) and any(part in text for part in OUT_OF_MEMORY_TEXTS)


Output = torch.Tensor | tuple[torch.Tensor, ...]


def forward_with_oom_split(
    forward: Callable[[torch.Tensor, torch.Tensor], Output],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    on_split: Callable[[int], None] | None = None,
) -> Output:
    """Run ``forward``; on out-of-memory, free the cache and run each half, down to one row.

    ``forward`` returns one tensor or a tuple of tensors (e.g. outputs and embeddings), each
    with one row per input row; the halves' results are joined the same way.
    A one-row batch that still does not fit re-raises the error, with the row's length.
    """
    try:
        return forward(input_ids, attention_mask)
    except OUT_OF_MEMORY_TYPES as error:
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
    if isinstance(first, tuple):
        return tuple(torch.cat([a, b]) for a, b in zip(first, second))
    return torch.cat([first, second])


def _drop_padding_columns(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Remove columns that are padding in every row (halves of a sorted batch are shorter)."""
    used = attention_mask.bool().any(dim=0)
    return input_ids[:, used], attention_mask[:, used]

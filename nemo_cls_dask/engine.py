"""Run a loaded model over encoded texts: sorted token-budget batches, autocast, OOM halving.

Input: :class:`EncodedTexts` (ragged ids). Output: one float32 row per input row, in the
input's order, left on the model's device (so cuDF can take it through DLPack). Rows are
put back by position, never by index alignment.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from .batching import (
    DEFAULT_CPU_BATCH_TOKENS,
    DEFAULT_CUDA_BATCH_TOKENS,
    DEFAULT_MAX_BATCH_ROWS,
    forward_with_oom_split,
    pad_batch,
    plan_batches,
)
from .models.loading import LoadedModel
from .tokenization import EncodedTexts

AUTOCAST_CHOICES = (True, False, None, "bf16", "bfloat16", "fp16", "float16", "fp32", "float32")

_STATS: Counter = Counter()
_STATS_LOCK = threading.Lock()


@dataclass(frozen=True)
class BatchSettings:
    """How rows are grouped into forward passes."""

    batch_tokens: int | None = None  # rows x padded length per batch; None: a per-device default
    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS
    sort_by_length: bool = True
    padding_side: str = "right"
    autocast: bool | str | None = True


def autocast_dtype(device: torch.device, autocast: bool | str | None) -> torch.dtype | None:
    """The reduced precision to run in, or None for full fp32.

    ``True`` means: bf16 on GPUs that support it, else fp16; fp32 on CPU (reduced precision
    on CPU is opt-in: pass ``"bf16"``). ``False``/``None``/``"fp32"`` disable it.
    """
    if autocast in (False, None, "fp32", "float32"):
        return None
    if autocast in ("bf16", "bfloat16"):
        if device.type == "cpu" and not cpu_has_fast_bf16():
            _warn_once(
                "bf16 autocast was asked for on a CPU without native bf16 matrix units "
                f"(torch reports {torch.backends.cpu.get_cpu_capability()}; AMX or AVX512-BF16 is "
                "needed): it runs far slower than fp32 here (about 60x measured on an AVX2 EPYC)."
            )
        return torch.bfloat16
    if autocast in ("fp16", "float16"):
        return torch.float16
    if autocast is True:
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return None
    raise ValueError(f"autocast must be one of {AUTOCAST_CHOICES}, got {autocast!r}")


@lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when torch's CPU kernels can use native bf16 matrix instructions (AVX512-BF16/AMX)."""
    capability = torch.backends.cpu.get_cpu_capability().upper()
    if "AMX" in capability:
        return True
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            flags = cpuinfo.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def default_batch_tokens(device: torch.device) -> int:
    return DEFAULT_CUDA_BATCH_TOKENS if device.type == "cuda" else DEFAULT_CPU_BATCH_TOKENS


def run_model(loaded: LoadedModel, encoded: EncodedTexts, settings: BatchSettings) -> torch.Tensor:
    """Outputs ``(rows, num_outputs)`` in float32 on the model's device; NaN for invalid rows."""
    device = loaded.device
    out = torch.full((encoded.num_rows, loaded.info.num_outputs), float("nan"), dtype=torch.float32, device=device)
    valid_rows = np.flatnonzero(encoded.valid)
    if valid_rows.size == 0:
        return out
    budget = settings.batch_tokens or default_batch_tokens(device)
    batches = plan_batches(
        encoded.lengths,
        valid_rows,
        batch_tokens=budget,
        max_batch_rows=settings.max_batch_rows,
        sort_by_length=settings.sort_by_length,
    )
    pad_id = loaded.tokenizer.pad_token_id
    pad_id = 0 if pad_id is None else int(pad_id)
    dtype = autocast_dtype(device, settings.autocast)
    cast = torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    splits = 0

    def count_split(_rows: int) -> None:
        nonlocal splits
        splits += 1

    padded_tokens = 0
    with torch.inference_mode(), cast:
        for rows in batches:
            input_ids, attention_mask = pad_batch(encoded, rows, pad_id, settings.padding_side)
            padded_tokens += input_ids.numel()
            input_ids = _to_device(input_ids, device)
            attention_mask = _to_device(attention_mask, device)
            result = forward_with_oom_split(loaded.module, input_ids, attention_mask, count_split)
            out[torch.from_numpy(rows).to(device)] = result.float()
    _record(rows=int(valid_rows.size), real_tokens=encoded.num_tokens, padded_tokens=padded_tokens,
            batches=len(batches), oom_splits=splits)
    return out


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor


def _record(**counts: int) -> None:
    with _STATS_LOCK:
        _STATS.update(counts)


def engine_stats() -> dict[str, int]:
    """Counters of this process: rows, real_tokens, padded_tokens, batches, oom_splits."""
    with _STATS_LOCK:
        return dict(_STATS)


def reset_engine_stats() -> None:
    with _STATS_LOCK:
        _STATS.clear()

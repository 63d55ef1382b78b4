"""Run a loaded model over encoded texts: sorted token-budget batches, autocast, OOM halving.

Input: :class:`EncodedTexts` (ragged ids). Output: one float32 row per input row, in the
input's order, left on the model's device (so cuDF can take it through DLPack). Rows are
put back by position, never by index alignment. On request (:func:`infer`) the same pass
also gives the pooled embeddings, and extra passes with dropout active give Monte-Carlo
samples; :func:`aggregate_windows` reduces long documents' window outputs to their rows.
"""

from __future__ import annotations

import contextlib
import copy
import os
import threading
import weakref
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import nn

from .allocator import release_free_heap
from .batching import (
    DEFAULT_CPU_ATTENTION_CELLS,
    DEFAULT_CPU_BATCH_TOKENS,
    DEFAULT_CUDA_BATCH_TOKENS,
    DEFAULT_MAX_BATCH_ROWS,
    INFERENCE_MIN_FILL,
    forward_with_oom_split,
    pad_batch,
    plan_batches,
)
from .errors import InputError
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

    ``True`` means: bf16 on GPUs that support it, else fp16; on CPU, bf16 where the CPU has
    native bf16 matrix instructions (AMX or AVX512-BF16, :func:`cpu_has_fast_bf16`), else
    fp32. ``False``/``None``/``"fp32"`` disable it; ``"bf16"``/``"fp16"`` force a dtype.

    bf16 is the CPU default only where it is native: there it is much faster than fp32 with
    almost every label unchanged; elsewhere it is emulated and far slower, so fp32 stays
    (figures: BENCHMARKS.md, "Engine options on CPU"). It makes probabilities depend a
    little on batching; the operator's ``deterministic=True`` runs fp32 whatever this says.
    """
    if autocast in (False, None, "fp32", "float32"):
        return None
    if autocast in ("bf16", "bfloat16"):
        if device.type == "cpu" and not _cpu_has_bf16_instructions():
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
        if device.type == "cpu" and cpu_has_fast_bf16():
            return torch.bfloat16
        return None
    raise ValueError(f"autocast must be one of {AUTOCAST_CHOICES}, got {autocast!r}")


#: Environment variable that overrides the CPU bf16 detection: ``0`` makes ``autocast=True``
#: run fp32 on every CPU (one precision across a fleet of mixed CPUs), ``1`` treats the CPU as
#: having fast bf16. Unset or empty: detect it. Read in each process, so it reaches workers
#: that inherit the environment.
CPU_BF16_ENV = "NEMO_CLS_DASK_CPU_BF16"


def cpu_has_fast_bf16() -> bool:
    """True when ``autocast=True`` should run bf16 on this CPU.

    Detected from native bf16 matrix instructions (AVX512-BF16 or AMX), unless
    ``NEMO_CLS_DASK_CPU_BF16`` says ``0`` or ``1``.
    """
    override = os.environ.get(CPU_BF16_ENV, "").strip()
    if override in ("0", "1"):
        return override == "1"
    if override:
        raise InputError(f"{CPU_BF16_ENV} must be 0, 1 or unset, got {override!r}.")
    return _cpu_has_bf16_instructions()


@lru_cache(maxsize=1)
def _cpu_has_bf16_instructions() -> bool:
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


def default_attention_cells(loaded: LoadedModel, settings: BatchSettings) -> int | None:
    """The CPU cap on ``rows x length**2`` per batch, where it applies (else ``None``).

    It applies on CPU when the user left ``batch_tokens`` unset and the model's layout costs
    quadratic time in the length (:attr:`CheckpointLayout.attention`): the light layouts
    (KimCNN, TF-IDF) are linear and keep large batches.
    """
    if loaded.device.type != "cpu" or settings.batch_tokens is not None:
        return None
    from .errors import ModelLoadError
    from .models.layouts import layout_named

    try:
        quadratic = layout_named(loaded.info.layout).attention
    except ModelLoadError:  # a layout unknown to this process: keep the token budget alone
        return None
    return DEFAULT_CPU_ATTENTION_CELLS if quadratic else None


@dataclass
class Inference:
    """One run over ragged rows: everything is in the rows' order, float32, on the model's device.

    Invalid rows (and rows never run) hold NaN in every tensor.
    """

    outputs: torch.Tensor  # (rows, num_outputs): the deterministic (eval-mode) pass
    embeddings: torch.Tensor | None = None  # (rows, hidden): pooled embeddings, when asked for
    samples: torch.Tensor | None = None  # (k, rows, num_outputs): passes with dropout active


def run_model(loaded: LoadedModel, encoded: EncodedTexts, settings: BatchSettings,
              on_batch: Callable[[int], Any] | None = None) -> torch.Tensor:
    """Outputs ``(rows, num_outputs)`` in float32 on the model's device; NaN for invalid rows."""
    return infer(loaded, encoded, settings, on_batch=on_batch).outputs


def infer(
    loaded: LoadedModel,
    encoded: EncodedTexts,
    settings: BatchSettings,
    *,
    embeddings: bool = False,
    dropout_samples: int | None = None,
    on_batch: Callable[[int], Any] | None = None,
) -> Inference:
    """Run the model over ``encoded`` in sorted, token-budgeted batches.

    ``embeddings=True`` also returns the pooled embedding the head sees, from the same
    forward pass (the module's ``forward_with_embedding``). ``dropout_samples=k`` also runs
    every batch ``k`` more times with dropout active (on a twin of the module, see
    :func:`mc_dropout_twin`); the ``outputs`` still come from the eval-mode pass.
    ``on_batch(rows)`` is called after each batch (a progress bar's ``update``).
    """
    device = loaded.device
    num_rows = encoded.num_rows
    out = _nan((num_rows, loaded.info.num_outputs), device)
    forward = embedding_forward(loaded) if embeddings else loaded.module
    twin = mc_dropout_twin(loaded) if dropout_samples else None
    samples = _nan((dropout_samples, num_rows, loaded.info.num_outputs), device) if dropout_samples else None
    vectors = _nan((num_rows, 0), device) if embeddings else None
    valid_rows = np.flatnonzero(encoded.valid)
    if valid_rows.size == 0:
        return Inference(out, vectors, samples)
    budget = settings.batch_tokens or default_batch_tokens(device)
    batches = plan_batches(
        encoded.lengths,
        valid_rows,
        batch_tokens=budget,
        max_batch_rows=settings.max_batch_rows,
        sort_by_length=settings.sort_by_length,
        min_fill=INFERENCE_MIN_FILL,
        attention_cells=default_attention_cells(loaded, settings),
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
            index = torch.from_numpy(rows).to(device)
            result = forward_with_oom_split(forward, input_ids, attention_mask, count_split)
            if embeddings:
                result, pooled = result
                if vectors.shape[1] != pooled.shape[1]:
                    vectors = _nan((num_rows, pooled.shape[1]), device)
                vectors[index] = pooled.float()
            out[index] = result.float()
            for sample in range(dropout_samples or 0):
                samples[sample, index] = forward_with_oom_split(twin, input_ids, attention_mask, count_split).float()
            if on_batch is not None:
                on_batch(len(rows))
    _record(rows=int(valid_rows.size), real_tokens=encoded.num_tokens, padded_tokens=padded_tokens,
            batches=len(batches), oom_splits=splits)
    if device.type == "cpu":
        release_free_heap()  # the batches' freed activations: keep RSS bounded by one call's work
    return Inference(out, vectors, samples)


def _nan(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    return torch.full(shape, float("nan"), dtype=torch.float32, device=device)


def embedding_forward(loaded: LoadedModel):
    """The module's ``forward_with_embedding(input_ids, attention_mask) -> (outputs, pooled)``.

    Model classes opt in by defining that method; the others cannot give embeddings.
    """
    forward = getattr(loaded.module, "forward_with_embedding", None)
    if forward is None:
        raise InputError(
            f"embedding_field needs a model that exposes its pooled embedding, and the "
            f"{loaded.info.layout!r} model in {loaded.info.path} ({type(loaded.module).__name__}) "
            f"has no forward_with_embedding(input_ids, attention_mask); drop embedding_field."
        )
    return forward


# ---------------------------------------------------------------------------- MC dropout

_TWINS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_TWINS_LOCK = threading.Lock()


def has_dropout(module: nn.Module) -> bool:
    """True when some dropout layer of ``module`` has a rate above 0."""
    return any(
        isinstance(layer, nn.modules.dropout._DropoutNd) and float(layer.p) > 0 for layer in module.modules()
    )


def mc_dropout_twin(loaded: LoadedModel) -> nn.Module:
    """A copy of the loaded module in training mode that shares every weight with it.

    Monte-Carlo dropout needs dropout active, but the loaded module is shared by every
    thread of the worker (one per process, see ``models.loading.get_model``): calling
    ``.train()`` on it would switch dropout on in other threads' passes too, and
    ``.eval()`` afterwards would race with them. So each module gets, once, a twin made
    by ``deepcopy`` with its parameters and buffers memoized to themselves: the twin's
    module objects (and their ``training`` flags) are its own, its tensors are the
    original's, so it costs no extra weight memory. It is kept per process beside the
    module (weakly keyed: it goes when the module goes). Training mode is safe for
    inference in these encoders: what changes is dropout, including attention dropout
    (which in transformers reads the attention module's own flag, not a ``Dropout``
    layer's). Raises :class:`InputError` if the module has no dropout at all.
    """
    module = loaded.module
    with _TWINS_LOCK:
        twin = _TWINS.get(module)
        if twin is None:
            if not has_dropout(module):
                raise InputError(
                    f"mc_variance needs dropout in the model, and the {loaded.info.layout!r} model in "
                    f"{loaded.info.path} has no dropout layer with a rate above 0; drop 'mc_variance'."
                )
            shared = {id(tensor): tensor for tensor in (*module.parameters(), *module.buffers())}
            twin = copy.deepcopy(module, shared).train()
            _TWINS[module] = twin
    return twin


# ---------------------------------------------------------------------------- long documents


def aggregate_windows(values: torch.Tensor, owner: np.ndarray, num_rows: int, how: str) -> torch.Tensor:
    """Reduce per-window values to per-row values by ``"mean"`` or ``"max"`` (per column).

    ``values`` is ``(windows, width)`` or ``(k, windows, width)``; ``owner[w]`` is the row of
    window ``w``. Rows without a window (invalid text) get NaN.
    """
    if how not in ("mean", "max"):
        raise ValueError(f"how must be 'mean' or 'max', got {how!r}")
    dim = values.ndim - 2
    shape = list(values.shape)
    shape[dim] = num_rows
    index = torch.from_numpy(np.asarray(owner, dtype=np.int64)).to(values.device)
    counts = torch.zeros(num_rows, dtype=values.dtype, device=values.device).index_add_(
        0, index, torch.ones_like(index, dtype=values.dtype)
    )
    if how == "mean":
        out = torch.zeros(shape, dtype=values.dtype, device=values.device).index_add_(dim, index, values)
        out = out / counts[:, None]  # 0/0 = NaN for rows without a window
    else:
        spread = index.view([-1, 1]).expand(values.shape[dim:]).expand(values.shape)
        out = torch.zeros(shape, dtype=values.dtype, device=values.device)
        out = out.scatter_reduce_(dim, spread, values, "amax", include_self=False)
        out[..., counts == 0, :] = float("nan")
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

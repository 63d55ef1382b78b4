"""Describe a checkpoint cheaply (client side) and load it once per process (worker side).

:func:`describe_model` reads only JSON files and weights headers, so an operator can
validate its options when it is applied, before any compute. :func:`get_model` loads
weights and tokenizer once per process and keeps them; the task graph carries only the
identifier. Both walk the registry of checkpoint layouts
(:mod:`nemo_cls_dask.models.layouts`) and know no layout by name.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..allocator import tune_for_tensors
from ..errors import ModelLoadError
from .deberta_positions import cache_position_projections
from .files import check_safetensors_complete, checkpoint_fingerprint, tokenizer_fingerprint  # noqa: F401  (public here too)
from .heads import load_head_module  # noqa: F401  (public here too)
from .hub import resolve_model_dir
from .layouts import CheckpointLayout, ModelInfo, describe_checkpoint, layout_named

__all__ = [
    "LoadedModel",
    "ModelInfo",
    "clear_models",
    "describe_model",
    "get_model",
    "get_tokenizer",
    "load_counts",
    "resolve_device",
]


def describe_model(identifier: str, cache_dir: str | None = None) -> ModelInfo:
    """Find a checkpoint and read its configs; raises a clear error if it cannot work."""
    return describe_checkpoint(identifier, cache_dir)


# ---------------------------------------------------------------------------------------
# Worker side: load once per process.


@dataclass
class LoadedModel:
    """A model ready for inference on one device, with its tokenizer."""

    info: ModelInfo
    module: nn.Module
    tokenizer: Any
    device: torch.device


#: (folder, content fingerprint, cache_dir, device) -> the loaded model.
_REGISTRY: dict[tuple, LoadedModel] = {}
_TOKENIZERS: dict[tuple, Any] = {}
_LOCK = threading.Lock()
LOAD_COUNTS: Counter = Counter()  # identifier -> number of times weights were loaded here


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` means the (first visible) CUDA GPU when there is one, else the CPU."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    return torch.device(device)


def get_model(identifier: str, cache_dir: str | None = None, device: str | torch.device = "auto") -> LoadedModel:
    """The model for ``identifier`` on ``device``, loaded on first use in this process.

    Cached by the resolved folder (so ``"./m"`` and ``"/abs/m"`` share one model) and by
    a fingerprint of its content (:func:`~nemo_cls_dask.models.files.checkpoint_fingerprint`):
    a model re-saved into the same folder is loaded again, never served stale, and the
    old one is dropped.
    """
    target = resolve_device(device)
    folder = str(resolve_model_dir(identifier, cache_dir))
    key = (folder, checkpoint_fingerprint(Path(folder)), cache_dir, str(target))
    loaded = _REGISTRY.get(key)
    if loaded is not None:
        return loaded
    with _LOCK:
        loaded = _REGISTRY.get(key)
        if loaded is None:
            tune_for_tensors()  # Dask workers: keep large tensors off mmap (see allocator.py)
            _quiet_transformers()
            info = describe_model(identifier, cache_dir)
            layout = layout_named(info.layout)
            module = layout.load(info, cache_dir).to(target).eval()
            cache_position_projections(module)  # DeBERTa: the same projections for every batch
            tokenizer = _tokenizer(layout, info)
            check_vocabulary(layout, module, tokenizer, info)
            loaded = LoadedModel(info, module, tokenizer, target)
            for stale in [old for old in _REGISTRY if old[0] == folder and old[2:] == key[2:]]:
                del _REGISTRY[stale]  # an older version of this folder: free its memory
            _REGISTRY[key] = loaded
            LOAD_COUNTS[str(identifier)] += 1
    return loaded


def _quiet_transformers() -> None:
    """No "Loading weights" progress bars: workers' logs are not terminals."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()


def _tokenizer(layout: CheckpointLayout, info: ModelInfo) -> Any:
    """The layout's tokenizer for ``info``, loaded once per process per tokenizer content."""
    key = (layout.name, str(info.tokenizer_path), info.tokenizer_key)
    tokenizer = _TOKENIZERS.get(key)
    if tokenizer is None:
        tokenizer = layout.load_tokenizer(info)
        _TOKENIZERS[key] = tokenizer
    return tokenizer


def check_vocabulary(layout: CheckpointLayout, module: nn.Module, tokenizer: Any, info: ModelInfo) -> None:
    """Refuse a tokenizer that can produce ids past the end of the model's token embedding.

    Such an id would fail deep in the forward pass with a bare ``IndexError`` (or read
    another row on some devices); here the error names both sizes.
    """
    rows = layout.embedding_rows(module)
    if rows is None:
        return
    size = len(tokenizer)
    if size > rows:
        raise ModelLoadError(
            f"The tokenizer in {info.tokenizer_path} has {size} tokens, but the model in {info.path} embeds only "
            f"{rows}: ids {rows}..{size - 1} would index past its embedding table. Use the tokenizer the model "
            f"was trained with (or resize the model's embeddings and save it again)."
        )


def get_tokenizer(path: Path) -> Any:
    """The Hugging Face tokenizer in ``path``, loaded once per process."""
    key = ("path", str(path), tokenizer_fingerprint(Path(path)))
    tokenizer = _TOKENIZERS.get(key)
    if tokenizer is None:
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
        except Exception as error:
            raise ModelLoadError(f"Cannot load the tokenizer in {path}: {error}") from error
        _TOKENIZERS[key] = tokenizer
    return tokenizer


def load_counts() -> dict[str, int]:
    """How many times each model was loaded in this process (for tests and benchmarks)."""
    return dict(LOAD_COUNTS)


def clear_models() -> None:
    """Forget every loaded model and tokenizer in this process (frees their memory)."""
    with _LOCK:
        _REGISTRY.clear()
        _TOKENIZERS.clear()

"""Describe a checkpoint cheaply (client side) and load it once per process (worker side).

:func:`describe_model` reads only JSON files, so an operator can validate its options when
it is applied, before any compute. :func:`get_model` loads weights and tokenizer once per
process and keeps them; the task graph carries only the identifier.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelLoadError
from .heads import (
    BackboneHeadModel,
    SequenceClassificationAdapter,
    check_head_config,
    head_width,
)
from .hub import read_json, resolve_backbone_dir, resolve_model_dir

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "spm.model", "vocab.txt")
_HUGE = 10**9  # tokenizers report int(1e30) when they do not know their maximum length


@dataclass(frozen=True)
class ModelInfo:
    """What the operator needs to know about a checkpoint without loading its weights."""

    path: Path
    layout: str  # "head" (NVIDIA backbone + fc) or "hf" (transformers sequence classification)
    problem_type: str
    labels: tuple[str, ...] | None  # in id order; None for unlabeled regression outputs
    num_outputs: int
    max_len: int
    tokenizer_path: Path
    config: dict[str, Any] = field(repr=False, compare=False, hash=False)


def describe_model(identifier: str, cache_dir: str | None = None) -> ModelInfo:
    """Find a checkpoint and read its configs; raises a clear error if it cannot work."""
    path = resolve_model_dir(identifier, cache_dir)
    config = read_json(path / "config.json")
    if "model_type" in config:
        return _describe_hf(path, config)
    check_head_config(config, str(path / "config.json"))
    _check_weights_present(path)
    labels = _labels(config)
    tokenizer_path = path if _has_tokenizer(path) else None
    if tokenizer_path is None:
        backbone = resolve_backbone_dir(str(config.get("base_model", "")), cache_dir)
        if backbone is None or not _has_tokenizer(backbone):
            raise ModelLoadError(
                f"{path}: no tokenizer files in the checkpoint and none found for its base_model "
                f"{config.get('base_model')!r}."
            )
        tokenizer_path = backbone
    return ModelInfo(
        path=path,
        layout="head",
        problem_type=config.get("problem_type", "single_label_classification"),
        labels=labels,
        num_outputs=head_width(config),
        max_len=int(config.get("max_len") or _tokenizer_max_len(tokenizer_path) or 512),
        tokenizer_path=tokenizer_path,
        config=config,
    )


def _describe_hf(path: Path, config: dict[str, Any]) -> ModelInfo:
    _check_weights_present(path)
    num_labels = len(config.get("id2label") or {}) or int(config.get("num_labels", 2))
    problem = config.get("problem_type") or (
        "regression" if num_labels == 1 else "single_label_classification"
    )
    labels = _labels(config) if problem != "regression" else None
    if not _has_tokenizer(path):
        raise ModelLoadError(f"{path}: no tokenizer files (tokenizer.json / tokenizer_config.json).")
    positions = int(config.get("max_position_embeddings") or 512)
    return ModelInfo(
        path=path,
        layout="hf",
        problem_type=problem,
        labels=labels,
        num_outputs=num_labels,
        max_len=min(_tokenizer_max_len(path) or positions, positions),
        tokenizer_path=path,
        config=config,
    )


def _labels(config: dict[str, Any]) -> tuple[str, ...] | None:
    id2label = config.get("id2label")
    if not id2label:
        return None
    return tuple(str(id2label[key]) for key in sorted(id2label, key=lambda k: int(k)))


def _has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in _TOKENIZER_FILES)


def _tokenizer_max_len(folder: Path) -> int | None:
    file = folder / "tokenizer_config.json"
    if not file.is_file():
        return None
    value = read_json(file).get("model_max_length")
    if isinstance(value, (int, float)) and 0 < value < _HUGE:
        return int(value)
    return None


def _weights_file(path: Path) -> Path:
    safetensors = path / "model.safetensors"
    if safetensors.is_file():
        return safetensors
    if (path / "model.safetensors.index.json").is_file():
        return path / "model.safetensors.index.json"
    pickled = [p.name for p in path.glob("*.bin")] + [p.name for p in path.glob("*.pt")]
    hint = (
        f" Found pickle-based weights {pickled}: they can run code when loaded and are refused. "
        f"Convert them to safetensors on a trusted machine."
        if pickled
        else ""
    )
    raise ModelLoadError(f"{path}: no model.safetensors weights file.{hint}")


def _check_weights_present(path: Path) -> None:
    _weights_file(path)


# ---------------------------------------------------------------------------------------
# Worker side: load once per process.


@dataclass
class LoadedModel:
    """A model ready for inference on one device, with its tokenizer."""

    info: ModelInfo
    module: nn.Module
    tokenizer: Any
    device: torch.device


_REGISTRY: dict[tuple, LoadedModel] = {}
_TOKENIZERS: dict[str, Any] = {}
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
    """The model for ``identifier`` on ``device``, loaded on first use in this process."""
    target = resolve_device(device)
    key = (str(identifier), cache_dir, str(target))
    loaded = _REGISTRY.get(key)
    if loaded is not None:
        return loaded
    with _LOCK:
        loaded = _REGISTRY.get(key)
        if loaded is None:
            info = describe_model(identifier, cache_dir)
            module = _load_module(info, cache_dir).to(target).eval()
            loaded = LoadedModel(info, module, get_tokenizer(info.tokenizer_path), target)
            _REGISTRY[key] = loaded
            LOAD_COUNTS[str(identifier)] += 1
    return loaded


def get_tokenizer(path: Path) -> Any:
    """A fast tokenizer for ``path``, loaded once per process."""
    key = str(path)
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


def _load_module(info: ModelInfo, cache_dir: str | None) -> nn.Module:
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # workers' logs are not terminals
    if info.layout == "hf":
        from transformers import AutoModelForSequenceClassification

        try:
            model = AutoModelForSequenceClassification.from_pretrained(info.path, use_safetensors=True)
        except Exception as error:
            raise ModelLoadError(f"Cannot load the model in {info.path}: {error}") from error
        return SequenceClassificationAdapter(model)
    return load_head_module(info.path, info.config, cache_dir)


def load_head_module(path: Path, config: dict[str, Any], cache_dir: str | None = None) -> BackboneHeadModel:
    """Build a :class:`BackboneHeadModel` and fill it from ``path/model.safetensors``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights = _weights_file(path)
    try:
        state = load_file(weights)
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelLoadError(f"Cannot read weights {weights}: {error} (truncated or corrupt file?)") from error
    head_only = not any(name.startswith("model.") for name in state)
    backbone = None
    if head_only:
        from transformers import AutoModel

        folder = resolve_backbone_dir(str(config.get("base_model", "")), cache_dir)
        if folder is None:
            raise ModelLoadError(
                f"{weights} holds only the head, and the backbone {config.get('base_model')!r} "
                f"named by base_model cannot be found locally."
            )
        backbone = AutoModel.from_pretrained(folder)
    model = BackboneHeadModel(config, backbone=backbone)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if head_only:
        missing = [name for name in missing if not name.startswith("model.")]
    unexpected = [name for name in unexpected if not name.endswith("position_ids")]
    if missing or unexpected:
        raise ModelLoadError(
            f"{weights} does not match config.json: missing {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
            f"{'...' if len(unexpected) > 5 else ''}."
        )
    return model

"""Describe a checkpoint cheaply (client side) and load it once per process (worker side).

:func:`describe_model` reads only JSON files, so an operator can validate its options when
it is applied, before any compute. :func:`get_model` loads weights and tokenizer once per
process and keeps them; the task graph carries only the identifier.
"""

from __future__ import annotations

import hashlib
import json
import threading
from functools import lru_cache
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..allocator import tune_for_tensors
from ..errors import ModelLoadError
from .heads import (
    BackboneHeadModel,
    SequenceClassificationAdapter,
    check_head_config,
    head_width,
)
from .weights import few_names, load_checked
from .hub import read_json, resolve_backbone_dir, resolve_model_dir
from .multihead import LAYOUT_KEY as MULTIHEAD_KEY
from .multihead import check_multihead_config, load_multihead_module, target_sizes

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "spm.model", "vocab.txt")
_HUGE = 10**9  # tokenizers report int(1e30) when they do not know their maximum length


@dataclass(frozen=True)
class ModelInfo:
    """What the operator needs to know about a checkpoint without loading its weights."""

    path: Path
    layout: str  # "head" (NVIDIA backbone + fc), "hf" (transformers sequence classification)
    # or "multihead" (NVIDIA backbone + one fc per target, e.g. prompt task and complexity)
    # or "composed" (one backbone + named head-only components, models/composed.py)
    problem_type: str
    labels: tuple[str, ...] | None  # in id order; None for unlabeled regression outputs
    num_outputs: int
    max_len: int
    tokenizer_path: Path
    config: dict[str, Any] = field(repr=False, compare=False, hash=False)
    #: Fingerprint of the tokenizer files: checkpoints whose tokenizers tokenize alike (the
    #: NVIDIA DeBERTa-v3 repos each ship a copy of one tokenizer) get the same key, so a
    #: one-pass ``classify`` tokenizes their text once.
    tokenizer_key: str = field(default="", compare=False)
    #: ``"composed"`` layout: each head's own info (name -> ModelInfo), in output order.
    components: dict[str, ModelInfo] | None = field(default=None, repr=False, compare=False, hash=False)


def describe_model(identifier: str, cache_dir: str | None = None) -> ModelInfo:
    """Find a checkpoint and read its configs; raises a clear error if it cannot work."""
    path = resolve_model_dir(identifier, cache_dir)
    config = read_json(path / "config.json")
    if "auto_map" in config:
        # Such a checkpoint names Python classes shipped in its own folder; loading it
        # means running that code (trust_remote_code). This package never does.
        raise ModelLoadError(
            f"{path / 'config.json'} has 'auto_map' {config['auto_map']!r}: the checkpoint needs its own "
            f"Python code, and nemo_cls_dask never runs code from a checkpoint (trust_remote_code is "
            f"never passed). Use a checkpoint of a standard transformers architecture, or remove "
            f"'auto_map' if the config names one."
        )
    if config.get("architecture") == "kimcnn":  # a light model fitted by nemo_cls_dask.lightweight
        from ..lightweight.checkpoint import describe_kimcnn

        return describe_kimcnn(path, config)
    if MULTIHEAD_KEY in config:
        return _describe_multihead(path, config, cache_dir)
    from .composed import describe_composed, is_composed_config

    if is_composed_config(config):
        return describe_composed(path, config, cache_dir)
    if "model_type" in config:
        return _describe_hf(path, config)
    check_head_config(config, str(path / "config.json"))
    _check_weights_present(path)
    labels = _labels(config)
    tokenizer_path = _head_tokenizer_path(path, config, cache_dir)
    return ModelInfo(
        path=path,
        layout="head",
        problem_type=config.get("problem_type", "single_label_classification"),
        labels=labels,
        num_outputs=head_width(config),
        max_len=int(config.get("max_len") or _tokenizer_max_len(tokenizer_path) or 512),
        tokenizer_path=tokenizer_path,
        config=config,
        tokenizer_key=tokenizer_fingerprint(tokenizer_path),
    )


def _head_tokenizer_path(path: Path, config: dict[str, Any], cache_dir: str | None) -> Path:
    """The checkpoint's own tokenizer, else its ``base_model``'s."""
    if _has_tokenizer(path):
        return path
    backbone = resolve_backbone_dir(str(config.get("base_model", "")), cache_dir)
    if backbone is None or not _has_tokenizer(backbone):
        raise ModelLoadError(
            f"{path}: no tokenizer files in the checkpoint and none found for its base_model "
            f"{config.get('base_model')!r}."
        )
    return backbone


def _describe_multihead(path: Path, config: dict[str, Any], cache_dir: str | None) -> ModelInfo:
    """A backbone with one head per target (``target_sizes``), e.g. prompt task and complexity.

    ``labels`` are the first target's class names when ``task_type_map`` gives them.
    """
    check_multihead_config(config, str(path / "config.json"))
    _check_weights_present(path)
    sizes = target_sizes(config)
    tokenizer_path = _head_tokenizer_path(path, config, cache_dir)
    first_map = config.get("task_type_map")
    labels = None
    if isinstance(first_map, dict) and first_map:
        try:
            labels = tuple(str(first_map[key]) for key in sorted(first_map, key=lambda k: int(k)))
        except ValueError:
            raise ModelLoadError(
                f"{path / 'config.json'}: task_type_map keys must be '0'..'{len(first_map) - 1}', "
                f"got {sorted(first_map)}."
            ) from None
    return ModelInfo(
        path=path,
        layout="multihead",
        problem_type="multi_head",
        labels=labels,
        num_outputs=sum(sizes.values()),
        max_len=int(config.get("max_len") or _tokenizer_max_len(tokenizer_path) or 512),
        tokenizer_path=tokenizer_path,
        config=config,
        tokenizer_key=tokenizer_fingerprint(tokenizer_path),
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
        tokenizer_key=tokenizer_fingerprint(path),
    )


def _labels(config: dict[str, Any]) -> tuple[str, ...] | None:
    id2label = config.get("id2label")
    if not id2label:
        return None
    return tuple(str(id2label[key]) for key in sorted(id2label, key=lambda k: int(k)))


def _has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in _TOKENIZER_FILES)


#: Tokenizer files whose content decides how text is split into ids.
_TOKENIZER_CONTENT_FILES = _TOKENIZER_FILES + ("special_tokens_map.json", "added_tokens.json", "merges.txt", "vocab.json")
#: tokenizer_config.json keys that cannot change the ids of ``encode`` (it passes its own
#: max_length and never pads), left out of the fingerprint.
_TOKENIZER_KEYS_IGNORED = ("model_max_length", "name_or_path", "_name_or_path", "tokenizer_file", "padding_side")


def tokenizer_fingerprint(folder: Path) -> str:
    """A hash of the tokenizer files in ``folder`` (ignoring settings that ``encode`` overrides).

    Cached by the files' sizes and modification times: ``describe_model`` runs for every
    operator and on workers for empty partitions, and a tokenizer.json can be megabytes.
    """
    stats = [(name, (folder / name).stat()) for name in _TOKENIZER_CONTENT_FILES if (folder / name).is_file()]
    return _fingerprint(str(folder), tuple((name, stat.st_size, stat.st_mtime_ns) for name, stat in stats))


@lru_cache(maxsize=256)
def _fingerprint(folder: str, stamps: tuple) -> str:
    digest = hashlib.sha256()
    for name, _size, _mtime in stamps:
        data = (Path(folder) / name).read_bytes()
        if name == "tokenizer_config.json":
            try:
                values = json.loads(data)
                for key in _TOKENIZER_KEYS_IGNORED:
                    values.pop(key, None)
                data = json.dumps(values, sort_keys=True).encode()
            except (ValueError, AttributeError):
                pass  # unreadable: hash the raw bytes
        digest.update(name.encode() + b"\0" + data + b"\0")
    return digest.hexdigest()


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
    """Check the weights file exists and is not truncated, reading only its header."""
    weights = _weights_file(path)
    if weights.suffix == ".safetensors":
        check_safetensors_complete(weights)


def check_safetensors_complete(file: Path) -> None:
    """Raise :class:`ModelLoadError` if ``file`` is shorter than its header says.

    A safetensors file is an 8-byte header length, a JSON header with each tensor's byte
    range, then the data; comparing the ranges to the file size catches interrupted
    downloads and copies when the operator is applied, without loading any weights.
    """
    size = file.stat().st_size
    try:
        with file.open("rb") as handle:
            header_length = int.from_bytes(handle.read(8), "little")
            if header_length <= 0 or 8 + header_length > size:
                raise ValueError("header longer than the file")
            header = json.loads(handle.read(header_length))
        data_end = max((entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"), default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
        raise ModelLoadError(f"Cannot read weights {file}: not a valid safetensors file ({error}).") from error
    if 8 + header_length + data_end > size:
        raise ModelLoadError(
            f"Weights file {file} is truncated: its header describes {8 + header_length + data_end} bytes "
            f"but the file has {size}. Download or copy it again."
        )


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
    # Key by the resolved folder, so "./m" and "/abs/m" share one loaded model.
    key = (str(resolve_model_dir(identifier, cache_dir)), cache_dir, str(target))
    loaded = _REGISTRY.get(key)
    if loaded is not None:
        return loaded
    with _LOCK:
        loaded = _REGISTRY.get(key)
        if loaded is None:
            tune_for_tensors()  # Dask workers: keep large tensors off mmap (see allocator.py)
            info = describe_model(identifier, cache_dir)
            module = _load_module(info, cache_dir).to(target).eval()
            loaded = LoadedModel(info, module, get_tokenizer(info.tokenizer_path), target)
            _REGISTRY[key] = loaded
            LOAD_COUNTS[str(identifier)] += 1
    return loaded


def get_tokenizer(path: Path) -> Any:
    """A fast tokenizer for ``path`` (a light model's ``text_vocab.json``: a
    :class:`~nemo_cls_dask.lightweight.vocab.TextVocab`), loaded once per process."""
    key = str(path)
    tokenizer = _TOKENIZERS.get(key)
    if tokenizer is None:
        from ..lightweight.vocab import VOCAB_FILE, TextVocab

        if Path(path).name == VOCAB_FILE:  # a light model's fitted vocabulary: no transformers
            tokenizer = TextVocab.load(path)
            _TOKENIZERS[key] = tokenizer
            return tokenizer
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
    if info.layout == "kimcnn":
        from ..lightweight.checkpoint import load_kimcnn_module

        return load_kimcnn_module(info)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # workers' logs are not terminals
    if info.layout == "hf":
        from transformers import AutoModelForSequenceClassification

        try:
            model, loading = AutoModelForSequenceClassification.from_pretrained(
                info.path, use_safetensors=True, output_loading_info=True
            )
        except Exception as error:
            raise ModelLoadError(
                f"Cannot load the model in {info.path} (weights {_weights_file(info.path)}): {error}"
            ) from error
        # transformers fills missing weights with random ones and only logs it: refuse instead.
        missing = sorted(loading.get("missing_keys") or ())
        mismatched = sorted(str(item[0] if isinstance(item, tuple) else item) for item in loading.get("mismatched_keys") or ())
        if missing or mismatched:
            raise ModelLoadError(
                f"{_weights_file(info.path)} does not match {info.path / 'config.json'}: missing "
                f"{few_names(missing)}, wrong shape {few_names(mismatched)}."
            )
        return SequenceClassificationAdapter(model)
    if info.layout == "multihead":
        return load_multihead_module(info.path, info.config, _weights_file(info.path), cache_dir)
    if info.layout == "composed":
        from .composed import load_composed_module

        return load_composed_module(info, cache_dir)
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
    load_checked(model, state, weights, "config.json", may_miss_prefix="model." if head_only else None)
    return model

"""The on-disk layout of a light (KimCNN) checkpoint, read by the operator like any other.

A folder holds::

    config.json        {"architecture": "kimcnn", "kimcnn": {...module settings...},
                        "problem_type", "id2label"/"label2id" (or "num_outputs" and
                        "output_names" for regression), "max_len", "thresholds" (multi-label),
                        "vocab_file": "text_vocab.json", ...}
    model.safetensors  the module's tensors (no pickle)
    text_vocab.json    the fitted :class:`~nemo_cls_dask.lightweight.vocab.TextVocab`

:class:`KimCNNLayout` registers this layout in :mod:`nemo_cls_dask.models.layouts`, so
``DistributedDataClassifier(model_identifier=folder)`` and the CLI load it like any other
checkpoint. The dependency points downward: this module uses the models layer's registry
and file helpers; the models layer never imports this package.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from torch import nn

from ..errors import ModelLoadError
from ..models.files import check_weights_present, config_labels, load_safetensors, tensor_shapes, weights_file
from ..models.layouts import MarkerLayout, ModelInfo, register_layout
from ..models.weights import check_shapes_on_meta, load_checked
from .kimcnn import KimCNN
from .vocab import VOCAB_FILE, TextVocab, vocab_fingerprint

#: ``config.json`` key and value that mark this layout.
LAYOUT_KEY, LAYOUT = MarkerLayout.marker_key, "kimcnn"
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")


def describe_kimcnn(path: Path, config: dict[str, Any]) -> ModelInfo:
    """What the operator needs, read from ``config.json`` (weights are only checked, not read)."""
    source = str(path / "config.json")
    settings = config.get(LAYOUT)
    if not isinstance(settings, dict):
        raise ModelLoadError(f"{source}: a KimCNN checkpoint needs a {LAYOUT!r} object with the module settings.")
    problem = config.get("problem_type", "single_label_classification")
    if problem not in PROBLEM_TYPES:
        raise ModelLoadError(f"{source}: problem_type must be one of {PROBLEM_TYPES}, got {problem!r}.")
    labels = config_labels(config) if problem != "regression" else None
    num_outputs = int(settings.get("num_outputs") or 0)
    if labels is not None and len(labels) != num_outputs:
        raise ModelLoadError(f"{source}: id2label has {len(labels)} labels but the head has {num_outputs} outputs.")
    if labels is None and problem != "regression":
        raise ModelLoadError(f"{source}: a {problem} checkpoint needs id2label.")
    vocab = path / str(config.get("vocab_file", VOCAB_FILE))
    if not vocab.is_file():
        raise ModelLoadError(f"{path}: no vocabulary file {vocab.name} (the fitted TextVocab) in the checkpoint.")
    check_weights_present(path)
    max_len = config.get("max_len")
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
        raise ModelLoadError(f"{source}: max_len must be a positive integer, got {max_len!r}.")
    return ModelInfo(
        path=path,
        layout=LAYOUT,
        problem_type=problem,
        labels=labels,
        num_outputs=num_outputs,
        max_len=max_len,
        tokenizer_path=vocab,
        config=config,
        tokenizer_key=vocab_fingerprint(vocab),
    )


def load_kimcnn_module(info: ModelInfo) -> KimCNN:
    """Build the module from ``config.json`` and fill it from ``model.safetensors``.

    The settings' shapes are compared with the weights header first (nothing allocated).
    """
    source = str(info.path / "config.json")
    weights = weights_file(info.path)
    expected = "the KimCNN settings in config.json"
    check_shapes_on_meta(lambda: KimCNN.from_config(info.config[LAYOUT], source), tensor_shapes(weights), weights, expected)
    model = KimCNN.from_config(info.config[LAYOUT], source)
    load_checked(model, load_safetensors(weights), weights, expected)
    return model


@register_layout
class KimCNNLayout(MarkerLayout):
    """A light KimCNN model: ``{"architecture": "kimcnn"}`` in config.json, a fitted vocabulary."""

    name = LAYOUT

    def describe(self, path: Path, config: dict[str, Any], cache_dir: str | None) -> ModelInfo:
        return describe_kimcnn(path, config)

    def load(self, info: ModelInfo, cache_dir: str | None) -> nn.Module:
        return load_kimcnn_module(info)

    def load_tokenizer(self, info: ModelInfo) -> Any:
        return TextVocab.load(info.tokenizer_path)

    def embedding_rows(self, module: nn.Module) -> int | None:
        return module.embedding.num_embeddings


def write_checkpoint(folder: Path, module: KimCNN, vocab: Any, config: dict[str, Any]) -> Path:
    """Write ``config.json`` (``config`` plus the layout marker and module settings), the
    weights as safetensors and the vocabulary; returns the folder."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().to("cpu", torch.float32).contiguous().clone() for name, t in module.state_dict().items()}
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    vocab.save(folder / VOCAB_FILE)
    full = {LAYOUT_KEY: LAYOUT, LAYOUT: module.config(), "vocab_file": VOCAB_FILE, **config}
    (folder / "config.json").write_text(json.dumps(full, indent=2, default=str), encoding="utf-8")
    return folder

"""A backbone with one linear head per target, in NVIDIA's prompt-task-and-complexity layout.

The layout is the one of ``nvidia/prompt-task-and-complexity-classifier`` (a
``PyTorchModelHubMixin`` checkpoint), read unchanged:

* ``config.json``: ``base_model`` (the backbone's hub id, e.g. ``"microsoft/DeBERTa-v3-base"``),
  ``target_sizes`` (an ordered mapping target name -> number of classes; its order is the
  order of the heads), and the maps that give the outputs a meaning (``task_type_map``,
  ``weights_map``, ``divisor_map``; read by the classifier, not here). No ``model_type``.
* ``model.safetensors``: the backbone under ``backbone.`` and head ``i`` as
  ``head_{i}.fc.weight`` / ``head_{i}.fc.bias``.
* Forward: backbone -> last hidden state -> mean over the real tokens (attention mask) ->
  every head. :class:`MultiHeadModel` returns the heads' logits side by side,
  ``(rows, sum(target_sizes))``, so the inference engine treats it like any other model;
  :func:`split_heads` cuts them apart again.

This module knows nothing about DataFrames or about what the targets mean.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoModel, PretrainedConfig

from ..errors import ModelLoadError
from .files import check_weights_present, load_safetensors, tensor_shapes, tokenizer_fingerprint, tokenizer_max_len
from .heads import _config_from_dict, backbone_config_from, head_tokenizer_path, pool, right_align
from .hub import bundled_backbone_config
from .layouts import CheckpointLayout, ModelInfo, register_layout
from .weights import check_layer_count, check_shapes_on_meta, load_checked

#: The config key whose presence marks this layout.
LAYOUT_KEY = "target_sizes"


def target_sizes(config: Mapping[str, Any]) -> dict[str, int]:
    """``target_sizes`` as an ordered ``{name: classes}`` dict (JSON object order = head order)."""
    return {str(name): int(size) for name, size in config[LAYOUT_KEY].items()}


def check_multihead_config(config: Mapping[str, Any], source: str) -> None:
    """Raise a :class:`ModelLoadError` naming ``source`` and the key if the config cannot work."""
    if not config.get("base_model") and not config.get("backbone_config"):
        raise ModelLoadError(f"{source}: missing required key 'base_model'.")
    sizes = config.get(LAYOUT_KEY)
    if not isinstance(sizes, Mapping) or not sizes:
        raise ModelLoadError(f"{source}: '{LAYOUT_KEY}' must be a non-empty object of target name -> size.")
    for name, size in sizes.items():
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ModelLoadError(f"{source}: {LAYOUT_KEY}[{name!r}] must be a positive integer, got {size!r}.")


def backbone_config_for(config: Mapping[str, Any], cache_dir: str | None = None) -> PretrainedConfig:
    """The backbone's transformers config, without downloading the backbone when it is known.

    ``nvidia/prompt-task-and-complexity-classifier`` names ``"microsoft/DeBERTa-v3-base"``
    (hub ids are case-insensitive); a bundled copy of that public config is used before
    looking in the HF cache, because the checkpoint itself carries all backbone weights.
    """
    base = str(config.get("base_model") or "")
    if "backbone_config" not in config and base and not Path(base).expanduser().is_dir():
        bundled = bundled_backbone_config(base) or bundled_backbone_config(base.lower())
        if bundled is not None:
            return _config_from_dict(bundled)
    return backbone_config_from(dict(config), cache_dir)


class _Head(nn.Module):
    """One target's linear layer, stored as ``head_{i}.fc`` like the hub checkpoint."""

    def __init__(self, hidden_size: int, classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(hidden_size, classes)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.fc(pooled)


class MultiHeadModel(nn.Module):
    """Backbone -> masked mean pooling -> one ``fc`` per target; logits concatenated."""

    def __init__(self, config: Mapping[str, Any], backbone: nn.Module | None = None, cache_dir: str | None = None) -> None:
        super().__init__()
        self.config = dict(config)
        self.sizes = target_sizes(self.config)
        if backbone is None:
            backbone = AutoModel.from_config(backbone_config_for(self.config, cache_dir))
        self.backbone = backbone
        hidden = self.backbone.config.hidden_size
        for index, classes in enumerate(self.sizes.values()):
            self.add_module(f"head_{index}", _Head(hidden, classes))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.forward_with_embedding(input_ids, attention_mask)[0]

    def forward_with_embedding(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Concatenated logits and the mean-pooled vector every head reads."""
        input_ids, attention_mask = right_align(input_ids, attention_mask)
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        pooled = pool(hidden, attention_mask, "mean")
        heads = [getattr(self, f"head_{index}") for index in range(len(self.sizes))]
        # Heads run in the autocast dtype if any; the concatenated logits leave as float32.
        return torch.cat([head(pooled.to(head.fc.weight.dtype)).float() for head in heads], dim=1), pooled


def split_heads(outputs: torch.Tensor, sizes: Mapping[str, int]) -> dict[str, torch.Tensor]:
    """Cut concatenated logits ``(rows, sum(sizes))`` back into ``{target: (rows, size)}``."""
    parts = torch.split(outputs, list(sizes.values()), dim=1)
    return dict(zip(sizes, parts))


def load_multihead_module(path: Path, config: Mapping[str, Any], weights: Path, cache_dir: str | None = None) -> MultiHeadModel:
    """Build a :class:`MultiHeadModel` for ``config`` and fill it from ``weights`` (strictly).

    The config's shapes are compared with the weights header first (nothing allocated).
    """
    expected = f"{path / 'config.json'} (backbone under 'backbone.', heads 'head_<i>.fc.*' for {len(config[LAYOUT_KEY])} targets)"
    shapes = tensor_shapes(weights)
    layers = getattr(backbone_config_for(config, cache_dir), "num_hidden_layers", None)
    check_layer_count(layers, shapes, weights, expected)
    check_shapes_on_meta(lambda: MultiHeadModel(config, cache_dir=cache_dir), shapes, weights, expected)
    state = load_safetensors(weights)
    model = MultiHeadModel(config, cache_dir=cache_dir)
    load_checked(model, state, weights, expected)
    return model


@register_layout
class MultiHeadLayout(CheckpointLayout):
    """``target_sizes`` checkpoints (one head per target), e.g. prompt task and complexity.

    ``labels`` are the first target's class names when ``task_type_map`` gives them.
    """

    name = "multihead"
    priority = 20

    def recognises(self, config: dict[str, Any]) -> bool:
        return LAYOUT_KEY in config

    def describe(self, path: Path, config: dict[str, Any], cache_dir: str | None) -> ModelInfo:
        check_multihead_config(config, str(path / "config.json"))
        check_weights_present(path)
        sizes = target_sizes(config)
        tokenizer_path = head_tokenizer_path(path, config, cache_dir)
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
            layout=self.name,
            problem_type="multi_head",
            labels=labels,
            num_outputs=sum(sizes.values()),
            max_len=int(config.get("max_len") or tokenizer_max_len(tokenizer_path) or 512),
            tokenizer_path=tokenizer_path,
            config=config,
            tokenizer_key=tokenizer_fingerprint(tokenizer_path),
        )

    def load(self, info: ModelInfo, cache_dir: str | None) -> nn.Module:
        return load_multihead_module(info.path, info.config, check_weights_present(info.path), cache_dir)

    def embedding_rows(self, module: nn.Module) -> int | None:
        return super().embedding_rows(module.backbone)

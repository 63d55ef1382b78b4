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

from .weights import load_checked
from ..errors import ModelLoadError
from .heads import _config_from_dict, backbone_config_from, pool, right_align
from .hub import bundled_backbone_config

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
    """Build a :class:`MultiHeadModel` for ``config`` and fill it from ``weights`` (strictly)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(weights)
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelLoadError(f"Cannot read weights {weights}: {error} (truncated or corrupt file?)") from error
    model = MultiHeadModel(config, cache_dir=cache_dir)
    load_checked(
        model, state, weights,
        f"{path / 'config.json'} (backbone under 'backbone.', heads 'head_<i>.fc.*' for {len(model.sizes)} targets)",
    )
    return model

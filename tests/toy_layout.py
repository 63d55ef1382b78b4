"""A checkpoint layout defined outside the package, in one small file: the extension point's proof.

"Mean bag": a token embedding averaged over the real tokens, then a linear layer. The
folder holds ``config.json`` (``{"architecture": "mean-bag", "mean_bag": {"vocab_size",
"dim"}, "id2label", "max_len"}``), ``model.safetensors`` and a Hugging Face tokenizer.
Importing this module registers the layout; nothing in the package names it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from nemo_cls_dask.models.files import check_weights_present, config_labels, load_safetensors, tensor_shapes, tokenizer_fingerprint
from nemo_cls_dask.models.layouts import CheckpointLayout, ModelInfo, register_layout
from nemo_cls_dask.models.weights import check_shapes_on_meta, load_checked

NAME = "mean-bag"


class MeanBag(nn.Module):
    def __init__(self, vocab_size: int, dim: int, outputs: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim)
        self.fc = nn.Linear(dim, outputs)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).float()
        mean = (self.embedding(input_ids) * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.fc(mean)


def build(config: dict[str, Any]) -> MeanBag:
    settings = config["mean_bag"]
    return MeanBag(int(settings["vocab_size"]), int(settings["dim"]), len(config["id2label"]))


@register_layout
class MeanBagLayout(CheckpointLayout):
    name = NAME

    def recognises(self, config: dict[str, Any]) -> bool:
        return config.get("architecture") == NAME

    def describe(self, path: Path, config: dict[str, Any], cache_dir: str | None) -> ModelInfo:
        check_weights_present(path)
        return ModelInfo(
            path=path, layout=self.name, problem_type="single_label_classification",
            labels=config_labels(config), num_outputs=len(config["id2label"]), max_len=int(config["max_len"]),
            tokenizer_path=path, config=config, tokenizer_key=tokenizer_fingerprint(path),
        )

    def load(self, info: ModelInfo, cache_dir: str | None) -> nn.Module:
        weights = info.path / "model.safetensors"
        check_shapes_on_meta(lambda: build(info.config), tensor_shapes(weights), weights, "mean_bag settings")
        module = build(info.config)
        load_checked(module, load_safetensors(weights), weights, "mean_bag settings")
        return module

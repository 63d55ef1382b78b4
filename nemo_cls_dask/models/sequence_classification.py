"""Plain transformers sequence-classification checkpoints (``save_pretrained`` folders).

The layout is whatever ``AutoModelForSequenceClassification.save_pretrained`` writes: a
``config.json`` with ``model_type`` (and ``id2label``/``num_labels``/``problem_type``),
``model.safetensors`` and the tokenizer files. Loading refuses what transformers would
silently fill with random weights (missing or mismatched tensors), and compares the
config's sizes with the weights header before building anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelLoadError
from .files import check_weights_present, config_labels, has_tokenizer, tensor_shapes, tokenizer_fingerprint, tokenizer_max_len
from .heads import right_align
from .layouts import CheckpointLayout, ModelInfo, register_layout
from .weights import check_config_sizes, check_shapes_on_meta, few_names


class SequenceClassificationAdapter(nn.Module):
    """Gives a transformers ``...ForSequenceClassification`` model the same call as the head."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        input_ids, attention_mask = right_align(input_ids, attention_mask)
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

    def forward_with_embedding(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and the final hidden state of the token the classifier starts from.

        Encoders (BERT, DeBERTa, RoBERTa, ...): the first token (``[CLS]``/``<s>``), the
        input of their pooler or classification head (which add a dense layer of their own
        before the output layer; the state before it is the architecture-independent
        sentence vector). Decoder classifiers (a ``score`` layer, as in GPT-2 or Llama): the
        last real token, the one they classify from.
        """
        input_ids, attention_mask = right_align(input_ids, attention_mask)
        result = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        hidden = result.hidden_states[-1]
        reads_last = hasattr(self.model, "score") and not hasattr(self.model, "classifier")
        position = attention_mask.sum(dim=1) - 1 if reads_last else torch.zeros_like(attention_mask[:, 0])
        return result.logits, hidden[torch.arange(hidden.shape[0], device=hidden.device), position]


def config_num_labels(config: dict[str, Any], source: str) -> int:
    """The number of outputs a transformers config asks for (``id2label`` or ``num_labels``)."""
    value = len(config.get("id2label") or {}) or config.get("num_labels", 2)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelLoadError(f"{source}: num_labels must be a positive integer, got {value!r}.")
    return value


@register_layout
class SequenceClassificationLayout(CheckpointLayout):
    """A transformers ``...ForSequenceClassification`` folder (its config has ``model_type``)."""

    name = "hf"
    priority = 40

    def recognises(self, config: dict[str, Any]) -> bool:
        return "model_type" in config

    def describe(self, path: Path, config: dict[str, Any], cache_dir: str | None) -> ModelInfo:
        source = str(path / "config.json")
        weights = check_weights_present(path)
        num_labels = config_num_labels(config, source)
        if weights.suffix == ".safetensors":
            sizes = {"num_labels": num_labels}
            if isinstance(config.get("hidden_size"), int):
                sizes["hidden_size"] = config["hidden_size"]
            check_config_sizes(sizes, config.get("num_hidden_layers"), tensor_shapes(weights), weights)
        problem = config.get("problem_type") or ("regression" if num_labels == 1 else "single_label_classification")
        if not has_tokenizer(path):
            raise ModelLoadError(f"{path}: no tokenizer files (tokenizer.json / tokenizer_config.json).")
        positions = int(config.get("max_position_embeddings") or 512)
        return ModelInfo(
            path=path,
            layout=self.name,
            problem_type=problem,
            labels=config_labels(config) if problem != "regression" else None,
            num_outputs=num_labels,
            max_len=min(tokenizer_max_len(path) or positions, positions),
            tokenizer_path=path,
            config=config,
            tokenizer_key=tokenizer_fingerprint(path),
        )

    def load(self, info: ModelInfo, cache_dir: str | None) -> nn.Module:
        from transformers import AutoConfig, AutoModelForSequenceClassification
        weights = check_weights_present(info.path)
        try:
            config = AutoConfig.from_pretrained(info.path)
        except Exception as error:
            raise ModelLoadError(f"Cannot read the config in {info.path}: {error}") from error
        if weights.suffix == ".safetensors":
            check_shapes_on_meta(
                lambda: AutoModelForSequenceClassification.from_config(config),
                tensor_shapes(weights), weights, str(info.path / "config.json"),
            )
        try:
            model, loading = AutoModelForSequenceClassification.from_pretrained(
                info.path, use_safetensors=True, output_loading_info=True
            )
        except Exception as error:
            raise ModelLoadError(f"Cannot load the model in {info.path} (weights {weights}): {error}") from error
        # transformers fills missing weights with random ones and only logs it: refuse instead.
        missing = sorted(loading.get("missing_keys") or ())
        mismatched = sorted(str(item[0] if isinstance(item, tuple) else item) for item in loading.get("mismatched_keys") or ())
        if missing or mismatched:
            raise ModelLoadError(
                f"{weights} does not match {info.path / 'config.json'}: missing "
                f"{few_names(missing)}, wrong shape {few_names(mismatched)}."
            )
        return SequenceClassificationAdapter(model)

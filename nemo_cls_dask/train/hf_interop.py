"""Interchange between :class:`TextClassifier` and plain transformers sequence classifiers.

Two directions:

* :func:`to_transformers` turns a fitted :class:`~nemo_cls_dask.models.heads.BackboneHeadModel`
  into an equivalent ``...ForSequenceClassification`` model, *only* where that
  architecture's head can compute exactly ``fc(pool(hidden))``. What the heads compute:

  - DeBERTa / DeBERTa-v2: ``classifier(dropout(act(dense(dropout(h_CLS)))))``
    (``ContextPooler``). With ``dense`` = identity, ``pooler_hidden_act="linear"`` and
    ``pooler_dropout=0`` this is ``classifier(h_CLS)``: our ``"cls"`` pooling, exactly.
  - BERT-family: ``classifier(tanh(W h_CLS + b))`` (the pooler); no weights make ``tanh``
    the identity, so refused. RoBERTa/XLM-R: ``out_proj(tanh(dense(h_CLS)))``, refused
    for the same reason. DistilBERT: a ReLU layer before the classifier, refused.
  - ``"mean"`` pooling: no transformers sequence-classification head averages token
    states, so refused for every architecture.

* :class:`TransformersClassifierModel` wraps a loaded ``...ForSequenceClassification``
  model so :class:`TextClassifier` can predict with it and fine-tune it further: the
  model's own final linear layer is exposed as ``fc`` (head learning rate, temperature).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import InputError
from ..models.heads import apply_temperature, check_temperature, right_align

#: transformers ``model_type`` values whose sequence-classification head is ContextPooler + classifier.
CONTEXT_POOLER_TYPES = ("deberta", "deberta-v2")
#: Why other heads cannot express ``fc(pool(hidden))``, for the error message.
HEAD_REASONS = {
    "bert": "BertForSequenceClassification classifies tanh(pooler(h_CLS)); no weights make tanh the identity",
    "roberta": "RobertaForSequenceClassification classifies out_proj(tanh(dense(h_CLS)))",
    "xlm-roberta": "XLMRobertaForSequenceClassification classifies out_proj(tanh(dense(h_CLS)))",
    "distilbert": "DistilBertForSequenceClassification classifies classifier(relu(pre_classifier(h_CLS)))",
}
#: The final linear layer of common sequence-classification heads, by attribute path.
FINAL_LAYERS = ("classifier.out_proj", "classifier", "score")


def transformers_refusal(model_type: str, pooling: str) -> str | None:
    """Why a backbone of ``model_type`` with ``pooling`` cannot be saved in the transformers layout (None: it can)."""
    if pooling != "cls":
        return (f"pooling={pooling!r}: no transformers ...ForSequenceClassification head averages token states; "
                f"only pooling='cls' on a DeBERTa backbone maps exactly")
    if model_type in CONTEXT_POOLER_TYPES:
        return None
    reason = HEAD_REASONS.get(model_type, f"the {model_type!r} sequence-classification head is not known to read h_CLS linearly")
    return f"{reason}, which differs from this model's 'cls' pooling + fc; only DeBERTa backbones map exactly"


def to_transformers(model: nn.Module, labels: list[str] | None, problem_type: str) -> nn.Module:
    """An ``AutoModelForSequenceClassification`` model computing the same logits as ``model``.

    ``model`` is a fitted BackboneHeadModel; its temperature is folded into the classifier
    (``(Wx + b) / T``). Raises :class:`InputError` naming why when the head cannot be expressed.
    """
    from transformers import AutoConfig, AutoModelForSequenceClassification

    backbone_config = model.model.config
    refusal = transformers_refusal(backbone_config.model_type, model.pooling)
    if refusal is not None:
        raise InputError(f"Cannot save in the transformers layout: {refusal}. Save with layout='head' instead.")
    values = backbone_config.to_dict()
    for key in ("model_type", "id2label", "label2id", "num_labels"):
        values.pop(key, None)  # the backbone's defaults (2 labels) would clash with num_labels
    values.update(
        num_labels=model.fc.out_features,
        problem_type=problem_type,
        pooler_hidden_size=backbone_config.hidden_size,
        pooler_hidden_act="linear",
        pooler_dropout=0.0,
        cls_dropout=float(model.dropout.p),
        architectures=None,
    )
    if labels is not None:
        values.update(id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)})
    config = AutoConfig.for_model(backbone_config.model_type, **values)
    hf_model = AutoModelForSequenceClassification.from_config(config)
    hidden = backbone_config.hidden_size
    state = {f"{hf_model.base_model_prefix}.{k}": v for k, v in model.model.state_dict().items()}
    with torch.no_grad():
        state["pooler.dense.weight"] = torch.eye(hidden)
        state["pooler.dense.bias"] = torch.zeros(hidden)
        state["classifier.weight"] = model.fc.weight.detach().cpu().float() / model.temperature
        state["classifier.bias"] = model.fc.bias.detach().cpu().float() / model.temperature
    hf_model.load_state_dict({k: v.detach().cpu().float() for k, v in state.items()}, strict=True)
    return hf_model.eval()


def final_linear(model: nn.Module) -> nn.Linear:
    """The output layer of a ``...ForSequenceClassification`` model (``classifier``, ``score``...)."""
    for path in FINAL_LAYERS:
        module: Any = model
        for part in path.split("."):
            module = getattr(module, part, None)
        if isinstance(module, nn.Linear):
            return module
    raise InputError(f"{type(model).__name__} has no final linear layer among {FINAL_LAYERS}; TextClassifier cannot train it.")


class TransformersClassifierModel(nn.Module):
    """A transformers sequence classifier with the call and attributes :class:`TextClassifier` uses.

    ``fc`` is registered before ``model`` so its parameters are named ``fc.*`` (the head
    learning rate applies to them); it is the same layer as the model's own classifier.
    """

    def __init__(self, model: nn.Module, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.fc = final_linear(model)
        self.model = model
        self.config = dict(config or {})
        self.temperature = 1.0

    def set_temperature(self, temperature: float | None) -> None:
        """Divide future logits by ``temperature`` (None: no scaling); kept in ``config``."""
        self.temperature = 1.0 if temperature is None else check_temperature(temperature, "temperature")

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        input_ids, attention_mask = right_align(input_ids, attention_mask)
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
        return apply_temperature(logits, self.temperature)

    def to_transformers(self) -> nn.Module:
        """The wrapped model with any temperature folded into its output layer (a copy)."""
        import copy

        hf_model = copy.deepcopy(self.model).float().cpu().eval()
        if self.temperature != 1.0:
            layer = final_linear(hf_model)
            with torch.no_grad():
                layer.weight /= self.temperature
                layer.bias /= self.temperature
        return hf_model

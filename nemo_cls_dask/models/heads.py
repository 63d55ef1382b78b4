"""A transformer backbone with a linear head, in NVIDIA NeMo Curator's hub layout.

The layout (``config.json`` + ``model.safetensors``) is the one of
``nvidia/quality-classifier-deberta`` and its siblings:

* ``config.json``: ``base_model`` (backbone hub id or folder), ``fc_dropout``, ``max_len``,
  ``id2label`` (string keys ``"0"..""N-1"``), ``label2id``.
* ``model.safetensors``: the backbone under ``model.`` and the head as ``fc.weight`` /
  ``fc.bias``.

Backward-compatible extensions this package reads and writes (absent = NVIDIA behaviour):

* ``pooling``: ``"cls"`` (default; the first real token) or ``"mean"`` (masked mean).
* ``problem_type``: ``"single_label_classification"`` (default), ``"multi_label_classification"``
  or ``"regression"``.
* ``num_outputs``: head width when there are no labels (regression).
* ``backbone_config``: the backbone's full config, so loading needs no hub access.
* ``temperature``: a finite number > 0 that every forward pass divides the logits by
  (temperature scaling, fitted by :mod:`nemo_cls_dask.train.calibration`); absent = 1.0,
  so NVIDIA checkpoints are unchanged. Classifiers only, not regression heads.
* Head-only weights: when ``model.safetensors`` holds no ``model.*`` tensor, the backbone's
  pretrained weights come from ``base_model`` (how the packaged default model ships 30 KB
  of head instead of another copy of MiniLM).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig

from ..errors import ModelLoadError
from .files import (
    check_weights_present,
    config_labels,
    has_tokenizer,
    read_json,
    load_safetensors,
    tensor_shapes,
    tokenizer_fingerprint,
    tokenizer_max_len,
    weights_file,
)
from .hub import PACKAGED_MODELS, bundled_backbone_config, resolve_backbone_dir
from .layouts import CheckpointLayout, ModelInfo, register_layout
from .weights import check_config_sizes, check_layer_count, check_shapes_on_meta, load_checked

POOLINGS = ("cls", "mean")
PROBLEM_TYPES = ("single_label_classification", "multi_label_classification", "regression")
TEMPERATURE_KEY = "temperature"


def check_temperature(value: Any, source: str) -> float:
    """``value`` as a float if it is a usable temperature (finite, > 0), else :class:`ModelLoadError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ModelLoadError(f"{source}: {TEMPERATURE_KEY!r} must be a finite number > 0, got {value!r}.")
    return float(value)


def config_temperature(config: dict[str, Any], source: str = "config.json") -> float:
    """The temperature a head config asks for (1.0 when absent); checked."""
    if TEMPERATURE_KEY not in config:
        return 1.0
    temperature = check_temperature(config[TEMPERATURE_KEY], source)
    if temperature != 1.0 and config.get("problem_type") == "regression":
        raise ModelLoadError(f"{source}: {TEMPERATURE_KEY!r} is for classifiers; a regression head cannot have one.")
    return temperature


def apply_temperature(outputs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Logits divided by ``temperature`` (returned untouched for 1.0, so results stay bit-identical)."""
    return outputs if temperature == 1.0 else outputs / temperature


def head_width(config: dict[str, Any]) -> int:
    """Number of outputs of the ``fc`` layer described by a head config."""
    if config.get("id2label"):
        return len(config["id2label"])
    return int(config.get("num_outputs", 1))


def backbone_config_from(config: dict[str, Any], cache_dir: str | None = None) -> PretrainedConfig:
    """Build the backbone's transformers config for a head checkpoint, offline if possible.

    Order: the embedded ``backbone_config``; the config of ``base_model`` found locally
    (folder, HF cache, packaged backbone); a bundled copy of a known public config.
    """
    embedded = config.get("backbone_config")
    if isinstance(embedded, dict):
        return _config_from_dict(embedded)
    base_model = config.get("base_model")
    if not base_model:
        raise ModelLoadError("Head config has no 'base_model' (the backbone's hub id or folder).")
    folder = resolve_backbone_dir(str(base_model), cache_dir)
    if folder is not None and (folder / "config.json").is_file():
        return AutoConfig.from_pretrained(folder)
    bundled = bundled_backbone_config(str(base_model))
    if bundled is not None:
        return _config_from_dict(bundled)
    raise ModelLoadError(
        f"Cannot find the config of backbone {base_model!r}: it is not a local folder, not in the "
        f"HF cache and not a known backbone. Download it, or add 'backbone_config' to config.json."
    )


def _config_from_dict(values: dict[str, Any]) -> PretrainedConfig:
    values = dict(values)
    model_type = values.pop("model_type", None)
    if not model_type:
        raise ModelLoadError("backbone config has no 'model_type'.")
    return AutoConfig.for_model(model_type, **values)


def right_align(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each row's tokens to the front, so padding is on the right.

    Encoders with absolute position embeddings (BERT, MiniLM) and ``[CLS]`` poolers read
    position 0 and number positions from 0: a left-padded row would get shifted positions
    and, in transformers' poolers, a padding token as its ``[CLS]``. Rows already starting
    with a real token (right padding, the default) are returned as they are.
    """
    if attention_mask.shape[1] == 0 or bool(attention_mask[:, 0].all()):
        return input_ids, attention_mask
    width = attention_mask.shape[1]
    first = attention_mask.argmax(dim=1)
    index = (torch.arange(width, device=attention_mask.device)[None, :] + first[:, None]) % width
    return input_ids.gather(1, index), attention_mask.gather(1, index)


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, how: str) -> torch.Tensor:
    """Reduce token states ``(n, length, hidden)`` to one vector per row.

    ``cls`` takes the first real token (position 0 with right padding, and still the
    right token with left padding); ``mean`` averages the real tokens in float32 (sums of
    hundreds of bf16 states lose precision), and rows without real tokens give 0.
    """
    if how == "cls":
        first = attention_mask.argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), first]
    mask = attention_mask.unsqueeze(-1).to(torch.float32)
    return (hidden.to(torch.float32) * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class BackboneHeadModel(nn.Module, PyTorchModelHubMixin):
    """Backbone -> pooling -> dropout -> ``fc``; returns raw outputs (logits or values).

    ``config`` is the plain dict stored in ``config.json``; ``save_pretrained``,
    ``from_pretrained`` and ``push_to_hub`` come from :class:`PyTorchModelHubMixin`.
    """

    def __init__(self, config: dict[str, Any], backbone: nn.Module | None = None) -> None:
        super().__init__()
        self.config = dict(config)
        pooling = self.config.get("pooling", "cls")
        if pooling not in POOLINGS:
            raise ModelLoadError(f"config.json: pooling must be one of {POOLINGS}, got {pooling!r}.")
        self.pooling = pooling
        if backbone is None:
            backbone = AutoModel.from_config(backbone_config_from(self.config))
        self.model = backbone
        self.dropout = nn.Dropout(float(self.config.get("fc_dropout", 0.0)))
        self.fc = nn.Linear(self.model.config.hidden_size, head_width(self.config))
        self.temperature = config_temperature(self.config)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs: Any) -> BackboneHeadModel:
        """Load a head checkpoint: a folder, a hub id, or a packaged name (``"debian-topics"``).

        Weights load strictly. A head-only checkpoint (no ``model.*`` tensors, such as the
        packaged ``debian-topics``) gets the pretrained backbone named by ``base_model``, or
        :class:`ModelLoadError` when it cannot be found; never a randomly initialised one.
        Other keyword arguments (``revision``, ``token``, ``cache_dir``...) are the mixin's.
        """
        name = str(pretrained_model_name_or_path)
        if name in PACKAGED_MODELS:
            pretrained_model_name_or_path = PACKAGED_MODELS[name]
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        map_location: str = "cpu",
        strict: bool = True,
        **model_kwargs: Any,
    ) -> BackboneHeadModel:
        """The mixin's loading hook, replaced so a head-only file gets its real backbone."""
        if Path(model_id).is_dir():
            folder = Path(model_id)
        else:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(
                model_id, revision=revision, cache_dir=cache_dir, force_download=force_download, token=token,
                local_files_only=local_files_only, allow_patterns=["*.json", "*.safetensors"],
            ))
        config = model_kwargs.get("config") or read_json(folder / "config.json")
        check_head_config(config, str(folder / "config.json"))
        backbone_cache = None if cache_dir is None else str(cache_dir)
        return load_head_module(folder, dict(config), backbone_cache).to(map_location)

    def set_temperature(self, temperature: float | None) -> None:
        """Divide future logits by ``temperature`` (None or 1.0: no scaling); kept in ``config``."""
        value = 1.0 if temperature is None else check_temperature(temperature, "temperature")
        probe = dict(self.config, **{TEMPERATURE_KEY: value})
        config_temperature(probe, "temperature")  # refuses regression heads
        self.temperature = value
        if value == 1.0:
            self.config.pop(TEMPERATURE_KEY, None)
        else:
            self.config[TEMPERATURE_KEY] = value

    def head_outputs(self, pooled: torch.Tensor) -> torch.Tensor:
        """The head on pooled vectors: dropout -> ``fc`` -> divide by the temperature."""
        return apply_temperature(self.fc(self.dropout(pooled)), self.temperature)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.forward_with_embedding(input_ids, attention_mask)[0]

    def forward_with_embedding(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Outputs and the pooled backbone vector the head reads (before its dropout)."""
        input_ids, attention_mask = right_align(input_ids, attention_mask)
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        pooled = pool(hidden, attention_mask, self.pooling)
        return self.head_outputs(pooled), pooled


def check_head_config(config: dict[str, Any], source: str) -> None:
    """Raise a clear error naming ``source`` if a head config lacks what inference needs."""
    if not config.get("base_model") and not config.get("backbone_config"):
        raise ModelLoadError(f"{source}: missing required key 'base_model'.")
    problem = config.get("problem_type", "single_label_classification")
    if problem not in PROBLEM_TYPES:
        raise ModelLoadError(f"{source}: problem_type must be one of {PROBLEM_TYPES}, got {problem!r}.")
    if problem != "regression" and not config.get("id2label"):
        raise ModelLoadError(f"{source}: missing required key 'id2label' for a classifier.")
    config_temperature(config, source)
    id2label = config.get("id2label") or {}
    expected = {str(i) for i in range(len(id2label))}
    if set(map(str, id2label)) != expected:
        raise ModelLoadError(
            f"{source}: id2label keys must be '0'..'{len(id2label) - 1}', got {sorted(id2label)}."
        )


# ---------------------------------------------------------------------------- the layout


def head_tokenizer_path(path: Path, config: dict[str, Any], cache_dir: str | None) -> Path:
    """The checkpoint's own tokenizer, else its ``base_model``'s."""
    if has_tokenizer(path):
        return path
    backbone = resolve_backbone_dir(str(config.get("base_model", "")), cache_dir)
    if backbone is None or not has_tokenizer(backbone):
        raise ModelLoadError(
            f"{path}: no tokenizer files in the checkpoint and none found for its base_model "
            f"{config.get('base_model')!r}."
        )
    return backbone


def is_head_only(weights: Path) -> bool:
    """True when a head checkpoint's weights hold no backbone tensor (``model.*``)."""
    return weights.suffix == ".safetensors" and not any(name.startswith("model.") for name in tensor_shapes(weights))


def backbone_folder(config: dict[str, Any], cache_dir: str | None, source: str) -> Path:
    """The local folder of a head-only checkpoint's ``base_model``, with safetensors weights.

    A folder with only pickle weights (``pytorch_model.bin``) is refused like every pickle.
    """
    folder = resolve_backbone_dir(str(config.get("base_model", "")), cache_dir)
    if folder is None:
        raise ModelLoadError(
            f"{source} holds only the head, and the backbone {config.get('base_model')!r} "
            f"named by base_model cannot be found locally."
        )
    try:
        check_weights_present(folder)
    except ModelLoadError as error:
        raise ModelLoadError(f"The backbone of {source} (base_model {config.get('base_model')!r}): {error}") from None
    return folder


def load_pretrained_backbone(config: dict[str, Any], cache_dir: str | None, source: str) -> nn.Module:
    """The pretrained backbone named by ``base_model``, its config checked against its weights first."""
    folder = backbone_folder(config, cache_dir, source)
    backbone_config = AutoConfig.from_pretrained(folder)
    weights = weights_file(folder)
    if weights.suffix == ".safetensors":  # a sharded index is checked by transformers while loading
        shapes = tensor_shapes(weights)
        expected = f"{folder / 'config.json'}"
        check_layer_count(getattr(backbone_config, "num_hidden_layers", None), shapes, weights, expected)
        check_shapes_on_meta(lambda: AutoModel.from_config(backbone_config), shapes, weights, expected)
    return AutoModel.from_pretrained(folder, use_safetensors=True)


def load_head_module(path: Path, config: dict[str, Any], cache_dir: str | None = None) -> BackboneHeadModel:
    """Build a :class:`BackboneHeadModel` and fill it from ``path/model.safetensors``.

    The config's shapes are compared with the weights header before anything is
    allocated; a head-only file gets the pretrained backbone named by ``base_model``.
    """
    weights = weights_file(path)
    source = str(path / "config.json")
    shapes = tensor_shapes(weights)
    head_only = not any(name.startswith("model.") for name in shapes)
    if head_only:
        backbone = load_pretrained_backbone(config, cache_dir, str(weights))
        check_shapes_on_meta(lambda: BackboneHeadModel(config, backbone=backbone), shapes, weights, source)
    else:
        backbone = None
        check_layer_count(_backbone_layers(config, cache_dir), shapes, weights, source)
        check_shapes_on_meta(lambda: BackboneHeadModel(config), shapes, weights, source)
    state = load_safetensors(weights)
    model = BackboneHeadModel(config, backbone=backbone)
    load_checked(model, state, weights, "config.json", may_miss_prefix="model." if head_only else None)
    return model


def _backbone_layers(config: dict[str, Any], cache_dir: str | None) -> int | None:
    return getattr(backbone_config_from(config, cache_dir), "num_hidden_layers", None)


def _check_sizes(config: dict[str, Any], weights: Path, cache_dir: str | None) -> None:
    """The backbone width, head width and layer count of the config, against the weights header."""
    try:
        backbone = backbone_config_from(config, cache_dir)
    except (ModelLoadError, OSError, ValueError):
        return  # no backbone config to compare yet: loading says what is missing
    sizes = {"head outputs": head_width(config)}
    hidden = getattr(backbone, "hidden_size", None)
    if isinstance(hidden, int):
        sizes["hidden_size"] = hidden
    check_config_sizes(sizes, getattr(backbone, "num_hidden_layers", None), tensor_shapes(weights), weights)


@register_layout
class HeadLayout(CheckpointLayout):
    """NVIDIA NeMo Curator's backbone + ``fc`` layout (this module's docstring).

    Tried last: it accepts any config without a more specific marker, and its checks say
    what a head config lacks.
    """

    name = "head"
    priority = 100

    def recognises(self, config: dict[str, Any]) -> bool:
        return True

    def describe(self, path: Path, config: dict[str, Any], cache_dir: str | None) -> ModelInfo:
        check_head_config(config, str(path / "config.json"))
        weights = check_weights_present(path)
        if is_head_only(weights):
            backbone_folder(config, cache_dir, str(weights))
        if weights.suffix == ".safetensors":
            _check_sizes(config, weights, cache_dir)
        tokenizer_path = head_tokenizer_path(path, config, cache_dir)
        return ModelInfo(
            path=path,
            layout=self.name,
            problem_type=config.get("problem_type", "single_label_classification"),
            labels=config_labels(config),
            num_outputs=head_width(config),
            max_len=int(config.get("max_len") or tokenizer_max_len(tokenizer_path) or 512),
            tokenizer_path=tokenizer_path,
            config=config,
            tokenizer_key=tokenizer_fingerprint(tokenizer_path),
        )

    def load(self, info: ModelInfo, cache_dir: str | None) -> nn.Module:
        return load_head_module(info.path, info.config, cache_dir)

    def embedding_rows(self, module: nn.Module) -> int | None:
        return super().embedding_rows(module.model)

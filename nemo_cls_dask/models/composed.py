"""Composed models: one backbone pass feeding several heads, kept as re-usable components.

A *component* is a head-only checkpoint in the NVIDIA head layout (``config.json`` +
``model.safetensors`` holding only ``fc.*``), such as
``TextClassifier(frozen_backbone=True).save_pretrained(folder)`` writes: its backbone is
the pretrained ``base_model``. Components trained separately on the same frozen backbone
can be composed into one model that runs that backbone once per batch and every head on
its pooled vectors, so a topic head, a multi-label tags head and a regression score head
cost one forward pass instead of three.

Folder layout (``"composed"``; :func:`compose` and :meth:`ComposedModel.save_pretrained`
write it, :func:`~nemo_cls_dask.models.loading.describe_model` and ``get_model`` read it)::

    my-composed/
      config.json         {"nemo_cls_dask_layout": "composed", "format_version": 1,
                           "components": {"topic": "topic", "tags": "tags", "score": "score"},
                           "base_model": "...", "max_len": 128}
      tokenizer files     (a copy of the components' shared tokenizer)
      topic/              a complete head-only checkpoint: config.json, model.safetensors,
      tags/               tokenizer files; each loads on its own in DistributedDataClassifier
      score/              and TextClassifier.from_pretrained, and can join other compositions

* ``components`` maps each head's name to its sub-folder (relative, inside the folder);
  its order is the order of the heads and of their outputs.
* ``base_model`` and ``max_len`` repeat what every component says (for people reading the
  file; loading checks they agree).

Compatibility rules (checked when composing and when loading, with errors naming the
component): every component is a head-only ``"head"`` checkpoint; all name the same
backbone (``base_model``, and the same backbone shape when ``backbone_config`` is
embedded); all tokenize alike (same tokenizer files) and use the same ``max_len``.
``pooling`` may differ: each pooling the heads need is computed once per batch. Each head
keeps its own ``problem_type``, labels, thresholds and ``temperature``.

Outputs: :meth:`ComposedModel.forward` returns the heads' raw outputs side by side,
``(rows, sum of head widths)`` in ``components`` order (:func:`split_outputs` cuts them
apart). :meth:`ComposedModel.forward_with_embedding` also returns the pooled vector of
the *first* component's pooling (so a composition's embedding equals its first
component's embedding).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError, ModelLoadError, ModelNotFoundError
from .files import has_tokenizer, load_safetensors, tensor_shapes, tokenizer_fingerprint, weights_file
from .heads import POOLINGS, apply_temperature, config_temperature, head_width, load_pretrained_backbone, pool, right_align
from .layouts import CheckpointLayout, ModelInfo, describe_checkpoint, register_layout
from .weights import check_shapes_on_meta, load_checked

#: The config key listing the components; its presence (as an object) marks the layout.
LAYOUT_KEY = "components"
#: A second, explicit marker written into config.json.
MARKER_KEY = "nemo_cls_dask_layout"
LAYOUT = "composed"
FORMAT_VERSION = 1
#: Head names: used as sub-folder names, module names and column names.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
#: Backbone config keys that decide its shape (compared when components embed a config).
_SHAPE_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
#: Tokenizer files copied next to the composed config and into each component folder.
_TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.txt", "vocab.json", "merges.txt", "spm.model",
)


def is_composed_config(config: Mapping[str, Any]) -> bool:
    """True for a composed model's ``config.json``."""
    return isinstance(config.get(LAYOUT_KEY), Mapping) and "model_type" not in config


def check_name(name: Any, source: str) -> str:
    """A head name usable as folder, module and column name, or :class:`InputError`."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InputError(
            f"{source}: component name {name!r} must be a non-empty string of letters, digits, '_' "
            f"and '-', starting with a letter or digit."
        )
    return name


def _as_pairs(components: Mapping[str, Any] | Sequence[tuple[str, Any]]) -> list[tuple[str, Path]]:
    """Named component folders in order; duplicate names (also by case) are refused."""
    pairs = list(components.items()) if isinstance(components, Mapping) else list(components)
    if not pairs:
        raise InputError("A composed model needs at least one component, e.g. {'topic': 'topic-head/'}.")
    seen: dict[str, str] = {}
    out = []
    for item in pairs:
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise InputError(f"Components are name -> folder pairs, got {item!r}.")
        name, folder = item
        check_name(name, "components")
        if name.lower() in seen:
            raise InputError(
                f"Duplicate component name {name!r} (already used as {seen[name.lower()]!r}; names "
                f"are folder names, so they must differ also when case is ignored)."
            )
        seen[name.lower()] = name
        out.append((name, Path(folder).expanduser()))
    return out


def describe_component(name: str, folder: Path, cache_dir: str | None = None) -> ModelInfo:
    """Describe one component (JSON and the weights header only) and check it can be composed."""
    try:
        info = describe_checkpoint(str(folder), cache_dir)
    except ModelNotFoundError as error:
        raise ModelLoadError(f"Component {name!r}: {error}") from error
    if info.layout != "head":
        raise ModelLoadError(
            f"Component {name!r} ({info.path}) is a {info.layout!r} checkpoint; components are head "
            f"checkpoints (a backbone named by base_model + one fc), such as "
            f"TextClassifier(frozen_backbone=True).save_pretrained(folder) writes."
        )
    weights = weights_file(info.path)
    if weights.suffix == ".safetensors" and any(n.startswith("model.") for n in tensor_shapes(weights)):
        raise ModelLoadError(
            f"Component {name!r} ({weights}) carries its own backbone weights; components share the "
            f"pretrained backbone named by base_model, so each must hold only its head (fc.*). Train "
            f"it with TextClassifier(frozen_backbone=True), or save_pretrained(folder, head_only=True) "
            f"if its backbone was not changed."
        )
    return info


def _backbone_key(config: Mapping[str, Any]) -> str:
    """What identifies a component's backbone: its folder (resolved) or its hub id."""
    base = str(config.get("base_model") or "")
    path = Path(base).expanduser()
    return str(path.resolve()) if base and path.is_dir() else base


def check_compatible(components: Mapping[str, ModelInfo], source: str = "composed model") -> None:
    """Raise :class:`ModelLoadError` unless all components share backbone, tokenizer and max_len."""
    items = list(components.items())
    first_name, first = items[0]
    for name, info in items[1:]:
        where = f"{source}: components {first_name!r} ({first.path}) and {name!r} ({info.path})"
        if _backbone_key(info.config) != _backbone_key(first.config):
            raise ModelLoadError(
                f"{where} have different backbones (base_model {first.config.get('base_model')!r} vs "
                f"{info.config.get('base_model')!r}); composed heads must be trained on the same frozen backbone."
            )
        a, b = first.config.get("backbone_config"), info.config.get("backbone_config")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            differ = [key for key in _SHAPE_KEYS if a.get(key) != b.get(key)]
            if differ:
                raise ModelLoadError(f"{where} embed backbone configs that differ in {differ}.")
        if info.max_len != first.max_len:
            raise ModelLoadError(
                f"{where} have different max_len ({first.max_len} vs {info.max_len}); retrain one, or "
                f"set the same max_len in both config.json files."
            )
        if info.tokenizer_key != first.tokenizer_key:
            raise ModelLoadError(
                f"{where} have different tokenizers ({first.tokenizer_path} vs {info.tokenizer_path}); "
                f"one backbone pass needs one tokenization."
            )


def component_folders(path: Path, config: Mapping[str, Any]) -> dict[str, Path]:
    """``{name: sub-folder}`` of a composed folder, checked to stay inside ``path``."""
    source = str(path / "config.json")
    listed = config.get(LAYOUT_KEY)
    if not isinstance(listed, Mapping) or not listed:
        raise ModelLoadError(f"{source}: {LAYOUT_KEY!r} must be a non-empty object of name -> sub-folder.")
    version = config.get("format_version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise ModelLoadError(f"{source}: format_version {version!r} is not supported (this package reads {FORMAT_VERSION}).")
    root = path.resolve()
    folders: dict[str, Path] = {}
    for name, relative in listed.items():
        try:
            check_name(name, source)
        except InputError as error:
            raise ModelLoadError(str(error)) from None
        if not isinstance(relative, str) or not relative or Path(relative).is_absolute():
            raise ModelLoadError(f"{source}: components[{name!r}] must be a relative sub-folder, got {relative!r}.")
        folder = (root / relative).resolve()
        if root not in folder.parents:
            raise ModelLoadError(f"{source}: components[{name!r}] = {relative!r} points outside {root}.")
        if not folder.is_dir():
            raise ModelLoadError(f"{source}: components[{name!r}]: folder {folder} does not exist.")
        folders[name] = folder
    return folders


def describe_composed(path: Path, config: dict[str, Any], cache_dir: str | None = None) -> ModelInfo:
    """The :class:`ModelInfo` of a composed folder; ``components`` holds each head's info."""
    source = str(path / "config.json")
    components = {name: describe_component(name, folder, cache_dir) for name, folder in component_folders(path, config).items()}
    check_compatible(components, source)
    first = next(iter(components.values()))
    if "max_len" in config and config["max_len"] != first.max_len:
        raise ModelLoadError(f"{source}: max_len {config['max_len']!r} differs from the components' {first.max_len}.")
    if "base_model" in config and _backbone_key(config) != _backbone_key(first.config):
        raise ModelLoadError(
            f"{source}: base_model {config['base_model']!r} differs from the components' {first.config.get('base_model')!r}."
        )
    tokenizer_path = path if has_tokenizer(path) else first.tokenizer_path
    tokenizer_key = tokenizer_fingerprint(tokenizer_path)
    if tokenizer_key != first.tokenizer_key:
        raise ModelLoadError(f"{source}: the tokenizer files in {path} differ from the components' tokenizer.")
    return ModelInfo(
        path=path,
        layout=LAYOUT,
        problem_type=LAYOUT,
        labels=None,
        num_outputs=sum(info.num_outputs for info in components.values()),
        max_len=first.max_len,
        tokenizer_path=tokenizer_path,
        config=config,
        tokenizer_key=tokenizer_key,
        components=components,
    )


def split_outputs(outputs: torch.Tensor, widths: Mapping[str, int]) -> dict[str, torch.Tensor]:
    """Cut side-by-side outputs ``(..., sum of widths)`` into ``{name: (..., width)}`` (last dimension)."""
    return dict(zip(widths, torch.split(outputs, list(widths.values()), dim=-1)))


# ---------------------------------------------------------------------------------------
# The module


class ComponentHead(nn.Module):
    """One component's head on a pooled vector: dropout -> ``fc`` -> divide by its temperature.

    The same computation as :meth:`BackboneHeadModel.head_outputs`, so a head gives the
    same numbers composed and alone.
    """

    def __init__(self, config: Mapping[str, Any], hidden_size: int) -> None:
        super().__init__()
        self.config = dict(config)
        self.pooling = self.config.get("pooling", "cls")
        if self.pooling not in POOLINGS:
            raise ModelLoadError(f"config.json: pooling must be one of {POOLINGS}, got {self.pooling!r}.")
        self.dropout = nn.Dropout(float(self.config.get("fc_dropout", 0.0)))
        self.fc = nn.Linear(hidden_size, head_width(self.config))
        self.temperature = config_temperature(self.config)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return apply_temperature(self.fc(self.dropout(pooled)), self.temperature)


class ComposedModel(nn.Module):
    """A shared backbone and named heads; one backbone pass per batch.

    Build it with :meth:`from_components` (named head-only checkpoints) or
    :meth:`from_pretrained` (a composed folder); :meth:`save_pretrained` writes the folder
    layout described in :mod:`nemo_cls_dask.models.composed`. ``components`` holds each
    head's :class:`~nemo_cls_dask.models.loading.ModelInfo` (labels, problem type, config).
    """

    def __init__(self, components: Mapping[str, ModelInfo], backbone: nn.Module) -> None:
        super().__init__()
        if not components:
            raise InputError("A composed model needs at least one component.")
        self.components = dict(components)
        self.backbone = backbone
        hidden = backbone.config.hidden_size
        self.heads = nn.ModuleDict({name: ComponentHead(info.config, hidden) for name, info in self.components.items()})
        self.poolings = tuple(dict.fromkeys(head.pooling for head in self.heads.values()))
        #: The pooling of :meth:`forward_with_embedding`'s vector: the first component's.
        self.embedding_pooling = next(iter(self.heads.values())).pooling

    @property
    def names(self) -> list[str]:
        return list(self.heads)

    @property
    def widths(self) -> dict[str, int]:
        return {name: head.fc.out_features for name, head in self.heads.items()}

    def _pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        input_ids, attention_mask = right_align(input_ids, attention_mask)
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return {how: pool(hidden, attention_mask, how) for how in self.poolings}

    def _heads(self, pooled: Mapping[str, torch.Tensor]) -> torch.Tensor:
        # Heads may run in an autocast dtype; the side-by-side outputs leave as float32.
        return torch.cat([head(pooled[head.pooling]).float() for head in self.heads.values()], dim=1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Every head's raw outputs (logits / temperature, or values), ``(rows, sum of widths)``."""
        return self._heads(self._pooled(input_ids, attention_mask))

    def forward_with_embedding(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(outputs, pooled)``: :meth:`forward`'s outputs and the first component's pooled vector."""
        pooled = self._pooled(input_ids, attention_mask)
        return self._heads(pooled), pooled[self.embedding_pooling]

    def split(self, outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{name: (rows, width)}`` from :meth:`forward`'s outputs."""
        return split_outputs(outputs, self.widths)

    # ------------------------------------------------------------------ building / saving

    @classmethod
    def from_components(cls, components: Mapping[str, Any] | Sequence[tuple[str, Any]], *, cache_dir: str | None = None) -> ComposedModel:
        """Load named head-only checkpoints (``{"topic": folder, ...}``) onto one shared backbone.

        Raises :class:`InputError` for bad or duplicate names and :class:`ModelLoadError` for
        components that cannot be composed (see the module docstring).
        """
        infos = {name: describe_component(name, folder, cache_dir) for name, folder in _as_pairs(components)}
        check_compatible(infos)
        return _load(infos, cache_dir)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, cache_dir: str | None = None) -> ComposedModel:
        """Load a composed folder (or hub id) written by :meth:`save_pretrained` or :func:`compose`."""
        info = describe_checkpoint(str(path), cache_dir)
        if info.layout != LAYOUT:
            raise ModelLoadError(f"{info.path} is a {info.layout!r} checkpoint, not a composed model (no {LAYOUT_KEY!r} in config.json).")
        return _load(info.components, cache_dir)

    def save_pretrained(self, save_directory: str | Path) -> Path:
        """Write the composed folder layout, each head from its current weights; returns the folder."""
        from safetensors.torch import save_file

        heads = {}
        for name, head in self.heads.items():
            config = dict(head.config)
            config.pop("temperature", None)
            if head.temperature != 1.0:
                config["temperature"] = head.temperature
            tensors = {key: value.detach().to("cpu", torch.float32).contiguous().clone() for key, value in head.state_dict().items()}
            heads[name] = (config, lambda file, tensors=tensors: save_file(tensors, str(file), metadata={"format": "pt"}),
                           self.components[name].tokenizer_path)
        return _write_layout(Path(save_directory), heads)


def compose(components: Mapping[str, Any] | Sequence[tuple[str, Any]], save_directory: str | Path, *, cache_dir: str | None = None) -> Path:
    """Check named head-only checkpoints and write them as one composed folder (no weights loaded).

    The components' files are copied, so a component of another composed folder
    (``other/topic``) can be mixed in. Returns the folder, which loads with
    ``ComposedClassifier(model_identifier=folder)`` or :meth:`ComposedModel.from_pretrained`.
    """
    infos = {name: describe_component(name, folder, cache_dir) for name, folder in _as_pairs(components)}
    check_compatible(infos)
    heads = {}
    for name, info in infos.items():
        weights = weights_file(info.path)
        heads[name] = (dict(info.config), lambda file, weights=weights: _copy(weights, file), info.tokenizer_path)
    return _write_layout(Path(save_directory), heads)


def _copy(source: Path, target: Path) -> None:
    if source.resolve() != target.resolve():
        shutil.copyfile(source, target)


def _write_layout(out: Path, heads: Mapping[str, tuple[dict[str, Any], Any, Path]]) -> Path:
    """Write ``out/config.json``, the shared tokenizer and one sub-folder per head.

    ``heads``: name -> (component config, function writing its weights to a path, tokenizer folder).
    Files are written to a staging folder first and moved in place, so saving a composition
    over one of its own sources works.
    """
    import tempfile

    out.mkdir(parents=True, exist_ok=True)
    first_config = next(iter(heads.values()))[0]
    with tempfile.TemporaryDirectory(dir=out, prefix=".composing-") as staging:
        stage = Path(staging)
        for name, (config, write_weights, tokenizer_path) in heads.items():
            folder = stage / name
            folder.mkdir()
            (folder / "config.json").write_text(json.dumps(config, indent=2, default=str), encoding="utf-8")
            write_weights(folder / "model.safetensors")
            _copy_tokenizer(tokenizer_path, folder)
        for name in heads:
            target = out / name
            if target.exists():
                shutil.rmtree(target)
            shutil.move(str(stage / name), str(target))
    _copy_tokenizer(out / next(iter(heads)), out)
    first = dict(first_config)
    top = {
        MARKER_KEY: LAYOUT,
        "format_version": FORMAT_VERSION,
        LAYOUT_KEY: {name: name for name in heads},
        "base_model": first.get("base_model"),
        "max_len": first.get("max_len"),
    }
    (out / "config.json").write_text(json.dumps({k: v for k, v in top.items() if v is not None}, indent=2), encoding="utf-8")
    return out


def _copy_tokenizer(source: Path, target: Path) -> None:
    for name in _TOKENIZER_FILES:
        file = source / name
        if file.is_file():
            _copy(file, target / name)


def _load(components: Mapping[str, ModelInfo], cache_dir: str | None) -> ComposedModel:
    """Build a :class:`ComposedModel` and fill every head from its component's weights (strictly).

    Each head's config is compared with its weights header before anything is allocated.
    """
    first = next(iter(components.values()))
    backbone = load_pretrained_backbone(first.config, cache_dir, f"composed model {first.path.parent}")
    hidden = backbone.config.hidden_size
    for name, info in components.items():
        weights = weights_file(info.path)
        check_shapes_on_meta(lambda info=info: ComponentHead(info.config, hidden), tensor_shapes(weights), weights,
                             f"component {name!r} ({info.path / 'config.json'})")
    model = ComposedModel(components, backbone)
    for name, info in components.items():
        weights = weights_file(info.path)
        load_checked(model.heads[name], load_safetensors(weights), weights, f"component {name!r} (head-only: fc.weight, fc.bias)")
    return model.eval()


@register_layout
class ComposedLayout(CheckpointLayout):
    """One backbone and named head-only components (this module's docstring)."""

    name = LAYOUT
    priority = 30

    def recognises(self, config: dict[str, Any]) -> bool:
        return is_composed_config(config)

    def describe(self, path: Path, config: dict[str, Any], cache_dir: str | None) -> ModelInfo:
        return describe_composed(path, config, cache_dir)

    def load(self, info: ModelInfo, cache_dir: str | None) -> nn.Module:
        return _load(info.components, cache_dir)

    def embedding_rows(self, module: nn.Module) -> int | None:
        return super().embedding_rows(module.backbone)

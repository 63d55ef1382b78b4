"""What produced the outputs of a folder: a small manifest next to them.

``OUTPUT/_nemo_cls_dask.json`` records, for a :func:`~nemo_cls_dask.classify_files` run,
the package version and, per classifier, its class, model, a fingerprint of the model's
files (config, weights and tokenizer contents), the settings that change outputs, and the
columns it writes. A later run into the same folder compares its own record with it: a
resume with other settings would mix outputs of two models, so it is refused unless
``overwrite`` is given. Outputs with no manifest (written by hand, or by an older version)
count as made with unknown settings and are refused the same way.

Settings that change only speed (``batch_tokens``, ``max_batch_rows``, ``device``,
``cache_dir``, ``sort_by_length``, ``padding_side``) are not compared. The name starts with
``_``, so readers of this package skip it as input.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import InputError
from .storage import AnyPath, write_bytes_atomic

MANIFEST_NAME = "_nemo_cls_dask.json"
SPEED_ONLY = frozenset({"batch_tokens", "max_batch_rows", "device", "cache_dir", "sort_by_length", "padding_side"})
_HASHES: dict[tuple[str, int, int], str] = {}


def _file_digest(path: Path) -> str:
    """sha256 of a file's content, remembered per (path, size, mtime) within the process."""
    info = path.stat()
    key = (str(path), info.st_size, info.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def model_fingerprint(folder: Path, others: Sequence[Path] = ()) -> str:
    """One sha256 over the names and contents of a checkpoint folder's files (not sub-folders)
    and of the ``others`` folders its outputs also depend on (see :func:`model_folders`).

    Without ``others`` the value is the one earlier versions wrote, so their outputs resume.
    """
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        digest.update(path.name.encode() + b"\0" + _file_digest(path).encode() + b"\0")
    for other in others:
        digest.update(b"\1" + str(other).encode() + b"\0" + model_fingerprint(other).encode() + b"\0")
    return digest.hexdigest()[:16]


def model_folders(info: Any, cache_dir: str | None) -> list[Path]:
    """The folders besides ``info.path`` whose files change the model's outputs.

    A head-only NVIDIA checkpoint's backbone folder (its ``base_model``: a re-saved
    backbone changes every output though the head's folder is the same), and a composed
    model's component folders with their own backbones. Empty for self-contained folders.
    """
    from .errors import ModelLoadError
    from .models.files import weights_file
    from .models.heads import backbone_folder, is_head_only

    found: list[Path] = []
    for component in (info.components or {}).values():
        found += [component.path, *model_folders(component, cache_dir)]
    if info.layout == "head":
        try:
            head_only = is_head_only(weights_file(info.path))
        except ModelLoadError:  # describe() checked the weights already; nothing to add here
            head_only = False
        if head_only:
            found.append(backbone_folder(info.config, cache_dir, str(info.path)))
    unique: list[Path] = []
    for folder in map(Path, found):
        if folder.resolve() != Path(info.path).resolve() and folder not in unique:
            unique.append(folder)
    return unique


def _plain(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return repr(value)


def run_record(classifiers: Sequence[Any], output_format: str | None) -> dict[str, Any]:
    """The manifest of a run: package version, output format(s) written and each classifier's record."""
    from . import __version__

    records = []
    for classifier in classifiers:
        info = classifier.describe()
        settings = {
            name: _plain(value)
            for name, value in sorted(vars(classifier).items())
            if not name.startswith("_") and name not in SPEED_ONLY and name != "model_identifier"
        }
        records.append({
            "class": type(classifier).__name__,
            "model": _plain(classifier.model_identifier),
            "model_fingerprint": model_fingerprint(Path(info.path), model_folders(info, getattr(classifier, "cache_dir", None))),
            "settings": settings,
            "columns": list(classifier.all_output_names()),
        })
    return {"package_version": __version__, "output_format": output_format, "classifiers": records}


def read_manifest(output: AnyPath) -> dict[str, Any] | None:
    path = output / MANIFEST_NAME
    if not path.is_file() or path.is_symlink():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return {"unreadable": True}


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable lines for what differs between two run records."""
    lines = []
    if old.get("output_format") != new.get("output_format"):
        lines.append(f"output format: {old.get('output_format') or 'as input'} -> {new.get('output_format') or 'as input'}")
    before, after = old.get("classifiers", []), new.get("classifiers", [])
    if len(before) != len(after):
        lines.append(f"classifiers: {[c.get('model') for c in before]} -> {[c.get('model') for c in after]}")
        return lines
    for i, (a, b) in enumerate(zip(before, after)):
        where = f"classifier {i + 1}" if len(after) > 1 else "classifier"
        for key in ("class", "model", "model_fingerprint", "columns"):
            if a.get(key) != b.get(key):
                label = "model files" if key == "model_fingerprint" else key
                lines.append(f"{where} {label}: {a.get(key)} -> {b.get(key)}")
        old_settings, new_settings = a.get("settings", {}), b.get("settings", {})
        for name in sorted(set(old_settings) | set(new_settings)):
            if old_settings.get(name) != new_settings.get(name):
                lines.append(f"{where} {name}: {old_settings.get(name)!r} -> {new_settings.get(name)!r}")
    if old.get("package_version") != new.get("package_version") and not lines:
        return []  # a newer package with the same settings and model: outputs stay comparable
    return lines


def check_manifest(output: AnyPath, record: dict[str, Any], existing_outputs: int, overwrite: bool) -> None:
    """Refuse to resume into outputs made with other (or unknown) settings unless ``overwrite``."""
    if overwrite or existing_outputs == 0:
        return
    old = read_manifest(output)
    if old is None or old.get("unreadable"):
        raise InputError(
            f"{output} holds {existing_outputs} output file(s) but no record of the settings that made them "
            f"({MANIFEST_NAME} is missing or unreadable); pass --overwrite (overwrite=True) to redo them, "
            f"or choose another output folder."
        )
    changed = differences(old, record)
    if changed:
        raise InputError(
            f"{output} holds {existing_outputs} output file(s) made with other settings:\n  "
            + "\n  ".join(changed)
            + "\nResuming would mix them; pass --overwrite (overwrite=True) to redo every file, or choose another output folder."
        )


def write_manifest(output: AnyPath, record: dict[str, Any]) -> AnyPath:
    """Write the manifest atomically (a reader never sees half of it; see :func:`~nemo_cls_dask.storage.write_bytes_atomic`)."""
    path = output / MANIFEST_NAME
    if path.is_symlink():
        raise InputError(f"{path} is a link; remove it (this run never writes through links).")
    write_bytes_atomic(path, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
    return path

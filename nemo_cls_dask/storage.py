"""Where inputs and outputs live: local paths, or fsspec URLs (``s3://``, ``gs://``, ``memory://``...).

:func:`location` turns what a user gave into either a :class:`pathlib.Path` (plain paths
and ``file://`` URLs: the local code path, with its guarantees, is used unchanged) or a
:class:`StoragePath` on an fsspec filesystem. A :class:`StoragePath` offers the small part
of the ``pathlib`` API that this package uses (``/``, ``name``, ``parent``, ``exists``,
``is_file``, ``is_dir``, ``open``...), so readers, the planner and the manifest work on
both; the few places that need a local-only operation (``os.replace``, ``flock``, link
checks) branch on :func:`is_remote`.

What a write guarantees (:func:`write_bytes_atomic`):

* local disk: a temporary name in the same folder, flushed, then ``os.replace``: the final
  name holds the old file or the complete new one, never a part;
* other stores: there is no atomic rename (``mv`` is a copy and a delete). The complete
  bytes are uploaded under a hidden temporary key next to the target (one upload), then
  copied to the final key and the temporary key is deleted. On S3 and GCS a copy is done
  by the server and creates the destination object whole, so the final key again holds the
  old or the complete new object, and a crash leaves at most the temporary key, which the next run
  removes because its name is one this plan's writer makes
  (:func:`~nemo_cls_dask.output_folder.remove_own_temporaries`). On stores where a copy is
  a streamed write (FTP, SFTP...), or where a copy can be pending (Azure copies between
  accounts), a crash during the copy can leave a partial file under the final name; do not
  resume into such stores after a crash without ``overwrite``.

A filesystem package that is missing (``s3fs`` for ``s3://``, ``gcsfs`` for ``gs://``) or
an unknown protocol is an :class:`~nemo_cls_dask.errors.InputError` naming what to install,
raised when the path is first resolved, before any cluster starts.
"""

from __future__ import annotations

import os
import posixpath
import re
import uuid
from pathlib import Path, PurePosixPath
from typing import IO, Any, Union

from .errors import InputError

_PROTOCOL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
#: Protocols that name the local disk: these URLs become plain :class:`~pathlib.Path` objects.
LOCAL_PROTOCOLS = ("file", "local")


class StoragePath:
    """A file or folder on an fsspec filesystem, with the ``pathlib`` subset this package uses.

    ``str()`` gives the URL (``memory:///data/a.jsonl``, ``s3://bucket/a.jsonl``), which dask readers and
    :func:`location` take back. Two paths are equal when filesystem and path are.
    """

    def __init__(self, fs: Any, path: str, storage_options: dict[str, Any] | None = None) -> None:
        self.fs = fs
        self.path = fs._strip_protocol(path).rstrip("/") or "/"
        self.storage_options = dict(storage_options or {})

    # -- names
    @property
    def protocol(self) -> str:
        protocol = self.fs.protocol
        return protocol if isinstance(protocol, str) else protocol[0]

    @property
    def url(self) -> str:
        return self.fs.unstrip_protocol(self.path)

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"StoragePath({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StoragePath) and (self.protocol, self.path) == (other.protocol, other.path)

    def __hash__(self) -> int:
        return hash((self.protocol, self.path))

    def __lt__(self, other: StoragePath) -> bool:
        return self.path < other.path

    def _with(self, path: str) -> StoragePath:
        return StoragePath(self.fs, path, self.storage_options)

    def __truediv__(self, part: str | os.PathLike[str]) -> StoragePath:
        return self._with(posixpath.normpath(posixpath.join(self.path, os.fspath(part))))

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix

    @property
    def parent(self) -> StoragePath:
        return self._with(posixpath.dirname(self.path) or self.path)

    @property
    def parents(self) -> list[StoragePath]:
        found, current = [], self
        while current.parent.path != current.path:
            current = current.parent
            found.append(current)
        return found

    def relative_to(self, other: StoragePath) -> PurePosixPath:
        if not (self == other or other in self.parents):
            raise ValueError(f"{self} is not inside {other}")
        return PurePosixPath(posixpath.relpath(self.path, other.path))

    def expanduser(self) -> StoragePath:
        return self

    def resolve(self) -> StoragePath:
        return self  # object stores have no links

    # -- queries
    def exists(self) -> bool:
        return bool(self.fs.exists(self.path))

    def is_file(self) -> bool:
        return bool(self.fs.isfile(self.path))

    def is_dir(self) -> bool:
        return bool(self.fs.isdir(self.path))

    def is_symlink(self) -> bool:
        return False

    def size(self) -> int:
        return int(self.fs.size(self.path))

    def files(self) -> list[StoragePath]:
        """Every file below this folder, sorted (``find``: recursive)."""
        return sorted(self._with(name) for name in self.fs.find(self.path))

    def children(self) -> list[tuple[StoragePath, str]]:
        """``(path, type)`` of the entries directly in this folder (``type``: ``"file"``, ``"directory"``)."""
        return [(self._with(entry["name"]), entry.get("type", "")) for entry in self.fs.ls(self.path, detail=True)]

    # -- contents
    def open(self, mode: str = "rb", **kwargs: Any) -> IO[Any]:
        return self.fs.open(self.path, mode, **kwargs)

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.fs.cat_file(self.path).decode(encoding)

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        self.fs.makedirs(self.path, exist_ok=True)  # object stores have no folders; a no-op there

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self.fs.rm_file(self.path)
        except FileNotFoundError:
            if not missing_ok:
                raise


#: What the readers and writers of this package take: a local path or a remote one.
AnyPath = Union[Path, StoragePath]


def split_protocol(text: str) -> tuple[str | None, str]:
    """``("s3", "bucket/key")`` for ``"s3://bucket/key"``; ``(None, text)`` for a plain path."""
    protocol, sep, rest = text.partition("://")
    if not sep or not _PROTOCOL.fullmatch(protocol):
        return None, text  # a local name that merely contains "://" stays a local path
    return protocol.lower(), rest


def filesystem(protocol: str, storage_options: dict[str, Any] | None = None) -> Any:
    """The fsspec filesystem for ``protocol``, or an :class:`InputError` naming the package to install."""
    import fsspec
    from fsspec.registry import known_implementations

    try:
        cls = fsspec.get_filesystem_class(protocol)
    except ImportError as error:
        known = known_implementations.get(protocol, {})
        missing = getattr(error.__cause__, "name", None) or getattr(error, "name", None)  # sftp:// lacks paramiko, not fsspec
        package = (missing or str(known.get("class", ""))).split(".")[0] or "the fsspec filesystem package"
        raise InputError(
            f"{protocol}:// paths need the {package} package, which is not installed: "
            f"pip install {package} ({error})."
        ) from None
    except ValueError:
        raise InputError(
            f"Unknown storage protocol {protocol!r}: give a local path or a URL that fsspec knows "
            "(file://, s3://, gs://, abfs://, memory://...)."
        ) from None
    try:
        return cls(**(storage_options or {}))
    except TypeError as error:
        raise InputError(f"Bad storage options for {protocol}://: {error}") from None
    except OSError as error:  # credentials refused, endpoint unreachable
        raise InputError(f"Cannot open the {protocol}:// filesystem: {type(error).__name__}: {error}") from error


def location(path: str | os.PathLike[str] | StoragePath, storage_options: dict[str, Any] | None = None) -> AnyPath:
    """A local :class:`~pathlib.Path` (plain paths, ``file://`` URLs) or a :class:`StoragePath`.

    ``storage_options`` (e.g. ``{"anon": True}`` for public S3 buckets) go to the remote
    filesystem; they are refused for local paths, where they would be silently ignored.
    """
    if isinstance(path, StoragePath):
        return path
    protocol, rest = split_protocol(os.fspath(path))
    if protocol is None or protocol in LOCAL_PROTOCOLS:
        if storage_options:
            raise InputError(f"storage options {sorted(storage_options)} apply to URLs such as s3://..., not to the local path {path}.")
        return Path(rest).expanduser()
    fs = filesystem(protocol, storage_options)
    return StoragePath(fs, os.fspath(path), storage_options)


def locations(paths: list[Any], storage_options: dict[str, Any] | None = None) -> list[AnyPath]:
    """:func:`location` of each path, the ``storage_options`` going to the URLs among them.

    A local input with an ``s3://`` output (or the reverse) is fine; options with no URL
    at all are refused, since nothing would use them.
    """
    remote = [_names_a_store(path) for path in paths]
    if storage_options and not any(remote):
        return [location(path, storage_options) for path in paths]  # raises, naming the local path
    return [location(path, storage_options if is_url else None) for path, is_url in zip(paths, remote)]


def _names_a_store(path: Any) -> bool:
    """True for a :class:`StoragePath` or a URL of another store than the local disk."""
    if isinstance(path, StoragePath):
        return True
    protocol, _ = split_protocol(os.fspath(path))
    return protocol is not None and protocol not in LOCAL_PROTOCOLS


def is_remote(path: Any) -> bool:
    """True for a :class:`StoragePath` (any store but the local disk)."""
    return isinstance(path, StoragePath)


def in_process_only(path: Any) -> bool:
    """True for a store that only the current Python process sees (``memory://``)."""
    return is_remote(path) and path.protocol == "memory"


def read_options(path: Any) -> dict[str, Any]:
    """``storage_options`` for a dask reader of ``path`` (empty for local paths)."""
    return dict(path.storage_options) if is_remote(path) else {}


def write_bytes_atomic(target: AnyPath, data: bytes) -> None:
    """Write ``data`` so the name ``target`` only ever holds a complete file (see the module docstring)."""
    from .output_folder import temporary_name

    temp = temporary_name(target, uuid.uuid4().hex[:12])
    if not is_remote(target):
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(temp, "xb") as handle:  # "x": never reuse an existing file
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, target)
        finally:
            temp.unlink(missing_ok=True)
        return
    fs = target.fs
    try:
        fs.pipe_file(temp.path, data)  # one upload of the complete bytes
        fs.cp_file(temp.path, target.path)  # object stores: the destination appears whole (no glob expansion)
    finally:
        try:
            fs.rm_file(temp.path)
        except FileNotFoundError:
            pass


def same_store(a: AnyPath, b: AnyPath) -> bool:
    """True when both paths are local, or both on the same remote protocol."""
    if is_remote(a) != is_remote(b):
        return False
    return not is_remote(a) or a.protocol == b.protocol


def local_path(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` as a local :class:`~pathlib.Path` (plain path or ``file://`` URL), or an error for other URLs.

    For what is saved to and read from the local disk only: models (``--model`` takes a
    folder or a hub id, not a URL) and HTML reports. A URL there is refused instead of
    becoming a local folder named ``s3:``.
    """
    protocol, rest = split_protocol(os.fspath(path))
    if protocol is not None and protocol not in LOCAL_PROTOCOLS:
        raise InputError(
            f"{what} must be a local path (it is written to and read from the local disk), got {path}; "
            "write it locally, then copy it to the store."
        )
    return Path(rest).expanduser()

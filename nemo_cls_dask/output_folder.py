"""Safety rules for an output folder that a run writes many files into.

A run only ever touches paths it planned itself:

* :func:`check_targets` refuses, before anything is written, any planned output whose
  resolved path lands in the input tree (a subfolder of OUTPUT may be a link into the
  input), or which is itself a link (a link is never written through or replaced).
* :func:`remove_own_temporaries` removes only the temporary names that this plan's writer
  makes (``.<target name>.<12 hex digits>.tmp`` next to a planned target), never a user's
  own ``.x.tmp``, and never through a link.
* :class:`OutputLock` holds ``OUTPUT/.nemo-cls-dask.lock`` (an ``flock`` on a file that
  records the holder's pid, host, start time and command) for the whole run, so a second
  run on the same folder stops with a message naming the run that holds it. The kernel
  drops an ``flock`` when its process dies, so a lock left by a killed run is simply taken
  over (and the takeover is reported).

On another store than the local disk (an fsspec URL, :mod:`nemo_cls_dask.storage`) there
are no links and no ``flock``: the same checks run without the link rules, temporaries are
found by listing the folder, and :class:`RemoteOutputLock` is an advisory lock object.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import socket
import stat
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import NemoClsDaskError
from .storage import AnyPath, StoragePath, is_remote, same_store

LOCK_NAME = ".nemo-cls-dask.lock"
TEMP_SUFFIX = ".tmp"
_TEMP_TAIL = re.compile(r"\.[0-9a-f]{12}" + re.escape(TEMP_SUFFIX) + r"$")


class OutputError(NemoClsDaskError, OSError):
    """An output file could not be written or would be unsafe to write; names the path."""


class OutputLockedError(OutputError):
    """Another run holds the lock of this output folder."""


def temporary_name(target: AnyPath, token: str) -> AnyPath:
    """The hidden temporary name next to ``target`` for the random 12-hex-digit ``token``."""
    return target.parent / f".{target.name}.{token}{TEMP_SUFFIX}"


def is_temporary_of(path: AnyPath, target: AnyPath) -> bool:
    """True when ``path`` is a temporary name that the writer of ``target`` makes."""
    prefix = f".{target.name}"
    name = path.name
    return path.parent == target.parent and name.startswith(prefix) and bool(_TEMP_TAIL.fullmatch(name[len(prefix):]))


def _is_within(path: AnyPath, root: AnyPath) -> bool:
    if not same_store(path, root):
        return False
    return path == root or root in path.parents


def check_targets(targets: Iterable[AnyPath], source: AnyPath, output: AnyPath) -> None:
    """Refuse planned outputs that would touch the input or write through a link.

    ``source`` is the input file or folder. Every target's parent folder and the target
    itself are resolved (links followed) and compared with the resolved input tree, so a
    subfolder of ``output`` that links into the input is caught, not only ``output``.
    On a remote store (no links) the paths are compared as they are.
    """
    source_root = source.resolve()
    output_root = output.resolve()
    if _is_within(output_root, source_root) or _is_within(source_root, output_root):
        raise OutputError(f"Output {output} overlaps the input {source}; choose another output folder.")
    for target in targets:
        if is_remote(target):
            if target.exists() and not target.is_file():
                raise OutputError(f"Output {target} exists and is not a file; move it away or choose another output folder.")
            continue
        if target.is_symlink():
            raise OutputError(
                f"{target} is a link (to {os.readlink(target)}); this run never writes through or replaces links. "
                "Remove the link or choose another output folder."
            )
        resolved = _resolve_planned(target)
        if _is_within(resolved, source_root):
            raise OutputError(
                f"Output {target} resolves to {resolved}, inside the input {source} (a folder under {output} "
                "is a link into the input); remove that link or choose another output folder."
            )
        if target.exists() and not target.is_file() and not _is_parts_folder(target):
            raise OutputError(f"Output {target} exists and is not a file; move it away or choose another output folder.")


def _is_parts_folder(target: Path) -> bool:
    from .output_parts import is_parts_folder  # a large input's output: a folder of parts

    return is_parts_folder(target)


def _resolve_planned(target: Path) -> Path:
    """``target`` with every existing link on its way resolved (the file need not exist)."""
    parent = target.parent
    missing: list[str] = []
    while not parent.exists() and parent != parent.parent:
        missing.append(parent.name)
        parent = parent.parent
    resolved = parent.resolve()
    for name in reversed(missing):
        resolved = resolved / name
    return resolved / target.name


def _own_temporary(name: str, names: set[str]) -> bool:
    """True when ``name`` is ``.<planned target name>.<12 hex digits>.tmp``."""
    return name.startswith(".") and bool(_TEMP_TAIL.search(name)) and _TEMP_TAIL.sub("", name) in names


def _remove_remote_temporaries(folder: StoragePath, names: set[str]) -> list[StoragePath]:
    """The remote form of :func:`remove_own_temporaries` for one folder (listing, then ``rm_file``)."""
    removed = []
    if not folder.is_dir():
        return removed
    for path, kind in folder.children():
        if kind == "file" and _own_temporary(path.name, names):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def remove_own_temporaries(targets: Iterable[AnyPath]) -> list[Any]:
    """Delete temporary files that a killed writer of one of ``targets`` left; return them.

    Only names matching a planned target's temporary pattern are removed, and only
    regular files (``lstat``: a link is never followed nor removed; on a remote store,
    only objects listed as files).
    """
    removed: list[Path] = []
    remote: list[StoragePath] = []
    by_folder: dict[AnyPath, list[AnyPath]] = {}
    for target in targets:
        by_folder.setdefault(target.parent, []).append(target)
    for folder, folder_targets in by_folder.items():
        if is_remote(folder):
            remote.extend(_remove_remote_temporaries(folder, {f".{t.name}" for t in folder_targets}))
            continue
        if folder.is_symlink() or not folder.is_dir():
            continue
        names = {f".{t.name}" for t in folder_targets}
        for entry in os.scandir(folder):
            if not _own_temporary(entry.name, names):
                continue
            if not stat.S_ISREG(entry.stat(follow_symlinks=False).st_mode):
                continue
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            removed.append(Path(entry.path))
    return [*sorted(removed), *sorted(remote)]


def _held_message(folder: Any, holder: dict[str, Any], advice: str) -> str:
    """Why a lock cannot be taken: who holds ``folder`` (pid, host, start, command), then ``advice``."""
    who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started {holder.get('started', '?')}"
    command = holder.get("command")
    return (
        f"Output folder {folder} is in use by another run ({who}"
        + (f": {command}" if command else "")
        + f"). Wait for it to finish, or choose another output folder. {advice}"
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutputLock:
    """An exclusive lock on an output folder for the duration of one run.

    Use as a context manager. ``previous`` holds the record of a run that ended without
    releasing its lock (it was killed), when this lock took it over.
    """

    def __init__(self, folder: str | Path, command: str | None = None) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.command = command if command is not None else " ".join(sys.argv)
        self.previous: dict[str, Any] | None = None
        self._fd: int | None = None

    def acquire(self) -> OutputLock:
        """Take the lock or raise :class:`OutputLockedError` naming the run that holds it."""
        if self.path.is_symlink():
            raise OutputError(f"{self.path} is a link; remove it (this run never writes through links).")
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                os.close(fd)
                if error.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                raise OutputLockedError(self._held_message()) from None
            # The holder may have released and unlinked the file between our open and flock.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path, follow_symlinks=False))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = os.read(fd, 65536)
        if previous.strip():
            try:
                self.previous = json.loads(previous)
            except ValueError:
                self.previous = {"unreadable": previous[:200].decode("utf-8", "replace")}
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                  "command": self.command}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self._fd = fd
        return self

    def _held_message(self) -> str:
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
            holder = {}
        return _held_message(self.folder, holder, f"(Lock file: {self.path})")

    def previous_note(self) -> str | None:
        """A line about a lock taken over from a run that did not release it, or None."""
        if not self.previous:
            return None
        pid = self.previous.get("pid")
        state = "no longer running" if isinstance(pid, int) and not _pid_alive(pid) else "its lock was released"
        return f"took over the lock of an earlier run that did not finish (pid {pid}, {state})"

    def release(self) -> None:
        """Remove the lock file and drop the lock."""
        if self._fd is None:
            return
        try:
            if os.path.samestat(os.fstat(self._fd), os.stat(self.path, follow_symlinks=False)):
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> OutputLock:
        return self if self._fd is not None else self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class RemoteOutputLock:
    """An advisory lock on an output folder on a remote store (``OUTPUT/.nemo-cls-dask.lock``).

    Object stores have no ``flock`` and a process id means nothing on another machine, so
    this lock is a small object recording the holder's host, pid, start time, command and a
    random token. It is created with exclusive create (mode ``"xb"``: a conditional write
    where the filesystem supports one, as s3fs and gcsfs do; other filesystems check that
    it is absent first, which leaves a short race between two runs that start together).
    A second run finding it stops with a message naming the holder, except when the
    holder ran on this host and its pid is no longer running: then the lock is taken over
    and the takeover reported, as on a local disk. A lock left by a run killed on another
    machine stays until it is removed by hand (the message names it). ``release`` deletes
    the object only while it still holds this run's token.
    """

    def __init__(self, folder: StoragePath, command: str | None = None) -> None:
        self.folder = folder
        self.path = folder / LOCK_NAME
        self.command = command if command is not None else " ".join(sys.argv)
        self.previous: dict[str, Any] | None = None
        self._record: bytes | None = None

    def _holder(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def acquire(self) -> RemoteOutputLock:
        """Take the lock or raise :class:`OutputLockedError` naming the run that holds it."""
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                  "command": self.command, "token": os.urandom(8).hex()}
        data = json.dumps(record).encode()
        if self.path.exists():
            holder = self._holder()
            pid = holder.get("pid")
            if holder.get("host") != record["host"] or not isinstance(pid, int) or _pid_alive(pid):
                raise OutputLockedError(self._held_message(holder))
            self.previous = holder  # a run on this host that is gone: take its lock over
            self.path.fs.pipe_file(self.path.path, data)
        else:
            try:
                with self.path.open("xb") as handle:
                    handle.write(data)
            except FileExistsError:
                raise OutputLockedError(self._held_message(self._holder())) from None
            except (NotImplementedError, ValueError):  # no exclusive create on this filesystem
                self.path.fs.pipe_file(self.path.path, data)
        self._record = data
        return self

    def _held_message(self, holder: dict[str, Any]) -> str:
        return _held_message(self.folder, holder, f"This lock is advisory: if that run is known to be gone "
                                                  f"(killed on another machine), delete {self.path} and run again.")

    def previous_note(self) -> str | None:
        """A line about a lock taken over from a run on this host that is no longer running, or None."""
        if not self.previous:
            return None
        return f"took over the lock of an earlier run that did not finish (pid {self.previous.get('pid')}, no longer running)"

    def release(self) -> None:
        """Delete the lock object if it is still this run's."""
        if self._record is None:
            return
        try:
            if self.path.fs.cat_file(self.path.path) == self._record:
                self.path.unlink(missing_ok=True)
        except FileNotFoundError:
            pass
        finally:
            self._record = None

    def __enter__(self) -> RemoteOutputLock:
        return self if self._record is not None else self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def lock_output(folder: AnyPath) -> OutputLock | RemoteOutputLock:
    """The lock of an output folder: :class:`OutputLock` on a local disk, else :class:`RemoteOutputLock`."""
    return RemoteOutputLock(folder) if is_remote(folder) else OutputLock(folder)

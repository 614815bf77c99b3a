"""One way to write a file: whole or not at all, also across a power cut.

``write_atomic(path, write)`` calls ``write(fh)`` on a temporary file in the
same directory (``.NAME.XXXXXXXX.tmp``), flushes and fsyncs it, renames it
onto `path` and fsyncs the directory, so after a crash at any moment `path`
holds the old content or the new one, never part of either, and the new
name survives the crash once the call returns. On any failure the
temporary file is removed; a process killed in the middle leaves it behind,
and :func:`remove_orphans` (run by whoever owns the directory, e.g. a resumed
run) removes such files.

New files get the mode a plain ``open()`` would give (0666 less the umask);
an existing file keeps its mode.
"""
from __future__ import annotations

import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Callable, List, Union

__all__ = ["write_atomic", "write_bytes", "write_text", "remove_orphans"]

PathLike = Union[str, "os.PathLike[str]"]

# Callables (stage, path) run at each write's stages ("before_rename": the
# temporary file is complete and synced; "after_rename": the file is in
# place). Empty in production; fault-injection tests append to it.
_hooks: List[Callable[[str, str], None]] = []

_ORPHAN = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


def _umask() -> int:
    """The process umask (read without changing it where /proc allows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _new_file_mode(path: str) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # e.g. a platform where directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def _notify(stage: str, path: str) -> None:
    for hook in list(_hooks):
        hook(stage, path)


def write_atomic(path: PathLike, write: Callable) -> None:
    """Write `path` through ``write(fh)`` on a binary file object, atomically
    and durably (see the module docstring). The directory must exist."""
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    mode = _new_file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        _notify("before_rename", path)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(directory)
    _notify("after_rename", path)


def write_bytes(path: PathLike, data: bytes) -> None:
    write_atomic(path, lambda fh: fh.write(data))


def write_text(path: PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def remove_orphans(directory: PathLike, recursive: bool = True) -> List[Path]:
    """Remove the temporary files that writes killed in the middle left in
    `directory` (and below it when `recursive`); returns their paths. Only
    names of the form ``.NAME.XXXXXXXX.tmp`` are touched."""
    root = Path(directory)
    found = root.rglob(".*.tmp") if recursive else root.glob(".*.tmp")
    removed = []
    for p in found:
        if _ORPHAN.match(p.name) and p.is_file():
            try:
                p.unlink()
                removed.append(p)
            except FileNotFoundError:
                pass
    return removed

"""Atomic writes (modes follow the umask), pickle-free reads of user files, and
the lock that keeps one run per run folder."""
from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
from pathlib import Path

import numpy as np

from .. import _atomic, _paths
from ..errors import InvalidInputError, PcoresetError


def write_bytes(path, data: bytes) -> None:
    """Write `data` to `path` atomically and durably (pcoreset._atomic): readers
    see the old file or the new one, never half of it. Creates the directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic.write_bytes(path, data)


def write_text(path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def write_npy(path, arr: np.ndarray) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(arr)
    _atomic.write_atomic(path, lambda fh: np.save(fh, arr, allow_pickle=False))


def write_csv(path, rows, fields) -> None:
    """`rows` (dicts) as CSV with columns `fields` (None -> empty cell)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in fields})
    write_text(path, buf.getvalue())


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def read_json(path, what: str = ""):
    """The JSON in `path`. A file that is not UTF-8 JSON (cut short by a full
    disk, edited by hand) raises PcoresetError in one line naming it."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except UnicodeDecodeError:
        raise PcoresetError(f"{what or path.name}: {str(path)!r} is damaged (not UTF-8 text)") from None
    except json.JSONDecodeError as exc:
        raise PcoresetError(f"{what or path.name}: {str(path)!r} is damaged (not JSON: {exc.msg} at line "
                            f"{exc.lineno}, column {exc.colno})") from None


def load_array(path, what: str) -> np.ndarray:
    """Load a .npy/.npz (allow_pickle=False) or .pt/.pth (torch.load weights_only=True)
    file holding one numeric array. A missing, truncated or damaged file raises
    InvalidInputError naming `what` and the path."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{what}: file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return np.asarray(_paths.load_npy(path, what))
    try:
        if suffix == ".npz":
            with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as obj:
                keys = list(obj.keys())
                if len(keys) != 1:
                    raise InvalidInputError(f"{what}: {str(path)!r} holds arrays {keys}; expected exactly one")
                return np.asarray(obj[keys[0]])
        if suffix in (".pt", ".pth"):
            import torch

            obj = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(obj, dict) and len(obj) == 1:
                obj = next(iter(obj.values()))
            if not isinstance(obj, torch.Tensor):
                raise InvalidInputError(f"{what}: {str(path)!r} holds a {type(obj).__name__}; expected one tensor")
            return obj.detach().cpu().float().numpy()
    except InvalidInputError:
        raise
    except Exception as exc:  # truncated zip, pickled object refused, ...
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidInputError(f"{what}: cannot read {str(path)!r} (damaged, or holds pickled objects: "
                                f"{first})") from exc
    raise InvalidInputError(f"{what}: {str(path)!r} has suffix {suffix!r}; expected .npy, .npz, .pt or .pth")


def load_arrays(path, what: str) -> dict:
    """Every array of a .npz file (never unpickled), read whole; a damaged file
    raises PcoresetError naming `what`."""
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as f:
            return {k: np.asarray(f[k]) for k in f.files}
    except FileNotFoundError:
        raise InvalidInputError(f"{what}: file {str(path)!r} does not exist") from None
    except Exception as exc:  # noqa: BLE001 - a damaged zip raises many kinds
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PcoresetError(f"{what}: {str(path)!r} is damaged ({first})") from None


# ------------------------------------------------------------------ one run per run folder

LOCK_NAME = ".pcoreset.lock"
_held: dict = {}  # realpath of a run folder -> [fd, depth]: this process's locks


@contextlib.contextmanager
def run_lock(out):
    """Hold the run folder `out` for this process: an exclusive ``flock`` on
    ``out/.pcoreset.lock`` (the folder is created if needed). A second process
    asking for the same folder fails at once with PcoresetError naming the
    folder and the holder's PID. The kernel drops the lock when its holder
    exits, however it exits, so a lock left by a killed run never blocks. A
    process may take the lock again while it holds it (nested calls)."""
    out = Path(out).expanduser()
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    key = os.path.realpath(out)
    if key in _held:
        _held[key][1] += 1
        try:
            yield out
        finally:
            _held[key][1] -= 1
        return
    path = out / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise PcoresetError(f"run folder {str(out)!r} is in use by another pcoreset process (PID {holder}); "
                            "wait for it to finish, or use another --out") from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    _held[key] = [fd, 1]
    try:
        yield out
    finally:
        del _held[key]
        if created and [p.name for p in out.iterdir()] == [LOCK_NAME]:
            os.unlink(path)  # nothing was written: leave no folder behind
            os.rmdir(out)
        else:
            os.ftruncate(fd, 0)
        os.close(fd)  # releases the flock

"""Atomic writes (modes follow the umask) and pickle-free reads of user files."""
from __future__ import annotations

import csv
import io
import json
import os
import stat
import tempfile
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError


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


def _new_file_mode(path: Path) -> int:
    """The mode a plain open() would give: an existing file keeps its mode, a new
    one gets 0666 less the umask (mkstemp alone would make it 0600)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _atomic(path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _new_file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_bytes(path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and os.replace: readers see
    the old file or the new one, never half of it."""
    _atomic(path, lambda fh: fh.write(data))


def write_text(path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def write_npy(path, arr: np.ndarray) -> None:
    _atomic(path, lambda fh: np.save(fh, np.asarray(arr), allow_pickle=False))


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


def read_json(path):
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def load_array(path, what: str) -> np.ndarray:
    """Load a .npy/.npz (allow_pickle=False) or .pt/.pth (torch.load weights_only=True)
    file holding one numeric array."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{what}: file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix in (".npy", ".npz"):
            obj = np.load(path, allow_pickle=False)
            if isinstance(obj, np.lib.npyio.NpzFile):
                keys = list(obj.keys())
                if len(keys) != 1:
                    raise InvalidInputError(f"{what}: {str(path)!r} holds arrays {keys}; expected exactly one")
                obj = obj[keys[0]]
            return np.asarray(obj)
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
    except Exception as exc:  # corrupt file, pickled object refused, ...
        raise InvalidInputError(f"{what}: cannot read {str(path)!r} without unpickling: {exc}") from exc
    raise InvalidInputError(f"{what}: {str(path)!r} has suffix {suffix!r}; expected .npy, .npz, .pt or .pth")


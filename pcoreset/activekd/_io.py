"""Atomic writes and pickle-free reads of user files."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError


def _atomic(path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
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

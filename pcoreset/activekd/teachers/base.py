"""The teacher interface and the on-disk cache of teacher outputs.

A teacher maps a dataset to (N, C) logits. The driver computes them once per
pool and caches them under ``CACHE/teachers/``, keyed by the teacher's
:meth:`Teacher.identity` (what the model is and what it is asked: its weights'
content hash, never where they are installed, and the prompt) and the
dataset's fingerprint (its ids, contents and class names)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

from ...errors import InvalidInputError
from .. import _io
from ..config import RunConfig
from ..datasets.base import Dataset


class Teacher:
    """name: registry name. adaptive: True for teachers refit each round.

    Subclasses implement ``identity`` and ``predict``, and usually the
    classmethods ``from_config`` (build from a RunConfig) and
    ``default_settings`` (what the RunConfig fields this teacher reads mean when
    left at None)."""

    name = "?"
    adaptive = False

    @classmethod
    def from_config(cls, cfg: RunConfig) -> "Teacher":
        raise NotImplementedError

    @classmethod
    def default_settings(cls, ds: Dataset) -> Dict[str, object]:
        """RunConfig field -> value used when the field is None (e.g. ``prompt``)."""
        return {}

    def identity(self) -> Dict[str, object]:
        """Everything that changes the teacher's outputs (the cache key). Local
        files enter by content hash, not by path."""
        raise NotImplementedError

    def describe(self) -> Dict[str, object]:
        """identity() plus details for people (paths), saved next to cached outputs."""
        return self.identity()

    def predict(self, ds: Dataset) -> np.ndarray:
        """(len(ds), ds.num_classes) float32 logits for every row."""
        raise NotImplementedError

    def adapt(self, ds: Dataset, labeled_idx: np.ndarray, labels: np.ndarray,
              base_logits: np.ndarray) -> Optional[np.ndarray]:
        """Adaptive teachers return refit (N, C) logits given the labeled rows; the
        frozen ones return None (keep `base_logits`)."""
        return None


def file_sha256(path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def content_sha256(path) -> str:
    """Hex SHA-256 of a file, or of a directory's files (relative path, size and
    bytes of every regular file, in sorted order; names starting with '.' are
    skipped): the same for every copy of a model wherever it is installed."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    for f in files:
        rel = f.relative_to(path).as_posix()
        h.update(f"{rel}\0{f.stat().st_size}\0".encode())
        h.update(bytes.fromhex(file_sha256(f)))
    return h.hexdigest()


def default_cache_dir() -> Path:
    """$PCORESET_CACHE, else $XDG_CACHE_HOME/pcoreset, else ~/.cache/pcoreset."""
    env = os.environ.get("PCORESET_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pcoreset"


def cache_key(teacher: Teacher, ds: Dataset) -> Tuple[str, str]:
    """(key, the JSON it hashes) for `teacher`'s outputs on `ds`."""
    key_src = json.dumps({"teacher": teacher.identity(), "dataset": ds.fingerprint()}, sort_keys=True)
    return hashlib.sha256(key_src.encode()).hexdigest()[:20], key_src


def teacher_logits(teacher: Teacher, ds: Dataset, cache_dir=None) -> Tuple[np.ndarray, bool]:
    """(N, C) float32 teacher logits for `ds`, and whether they came from the cache.
    Computed at most once per (teacher identity, dataset fingerprint)."""
    key, key_src = cache_key(teacher, ds)
    path = Path(cache_dir or default_cache_dir()) / "teachers" / f"{teacher.name}-{key}.npy"
    if path.is_file():
        try:
            logits = _io.load_array(path, "teacher cache")
        except InvalidInputError:  # a damaged cache entry (cut short by a full disk): computed again
            logits = np.zeros((0, 0), dtype=np.float32)
        if logits.shape == (len(ds), ds.num_classes):
            return logits.astype(np.float32, copy=False), True
    logits = np.ascontiguousarray(teacher.predict(ds), dtype=np.float32)
    check_logits(logits, ds, f"teacher {teacher.name!r}")
    _io.write_npy(path, logits)
    _io.write_text(path.with_suffix(".json"),
                   json.dumps({"key": json.loads(key_src), "teacher": teacher.describe()}, sort_keys=True,
                              indent=1, default=str) + "\n")
    return logits, False


def check_logits(logits: np.ndarray, ds: Dataset, what: str) -> None:
    want = (len(ds), ds.num_classes)
    if logits.ndim != 2 or logits.shape != want:
        raise InvalidInputError(f"{what}: logits have shape {tuple(logits.shape)}; expected (N, C) = {want}")
    bad = np.flatnonzero(~np.isfinite(logits).all(axis=1))
    if len(bad):
        raise InvalidInputError(f"{what}: logits row {int(bad[0])} is not finite ({len(bad)} bad rows)")

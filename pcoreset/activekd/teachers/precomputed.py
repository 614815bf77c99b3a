"""``precomputed``: logits of any model, read from a file (no model is run)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import InvalidInputError
from .. import _io
from ..config import RunConfig
from ..datasets.base import Dataset
from .base import Teacher, file_sha256


class PrecomputedTeacher(Teacher):
    """Logits of any model, read from an (N_file, C) .npy/.npz/.pt file whose rows
    follow the dataset file's rows. The cache key holds the file's content hash."""

    name = "precomputed"

    def __init__(self, path: str) -> None:
        if not path:
            raise InvalidInputError("teacher='precomputed' needs teacher_logits=FILE (--teacher-logits)")
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise InvalidInputError(f"teacher_logits={path!r}: file does not exist")
        self._sha = None

    @classmethod
    def from_config(cls, cfg: RunConfig) -> "PrecomputedTeacher":
        return cls(cfg.teacher_logits)

    def identity(self):
        if self._sha is None:
            self._sha = file_sha256(self.path)
        return {"name": self.name, "sha256": self._sha}

    def describe(self):
        return {**self.identity(), "path": str(self.path.resolve())}

    def predict(self, ds: Dataset) -> np.ndarray:
        arr = _io.load_array(self.path, "teacher_logits")
        if not np.issubdtype(arr.dtype, np.number):
            raise InvalidInputError(f"teacher_logits={str(self.path)!r}: dtype {arr.dtype} is not numeric")
        rows = np.asarray(ds.meta.get("source_rows", np.arange(len(ds))))
        n_file = int(rows.max()) + 1 if len(rows) else 0
        if arr.ndim != 2 or arr.shape[0] < n_file or arr.shape[1] != ds.num_classes:
            raise InvalidInputError(
                f"teacher_logits={str(self.path)!r}: shape {tuple(arr.shape)}; expected (N, C) with "
                f"N >= {n_file} dataset rows and C = {ds.num_classes} classes")
        return arr[rows].astype(np.float32)

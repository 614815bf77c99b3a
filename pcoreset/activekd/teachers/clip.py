"""``clip``: zero-shot CLIP through open_clip (docs/guide/activekd.rst).

logits = 100 * cos(image, class text embedding), the class embedding being the
normalised mean of the normalised embeddings of every prompt template (CLIP's
prompt ensembling). ``--teacher-model`` is ``ARCH[:PRETRAINED]``: an open_clip
architecture and a pretrained tag (``ViT-B-32:openai``,
``ViT-B-32:laion2b_s34b_b79k``), a local checkpoint file
(``ViT-B-32:/models/clip.safetensors``, read with ``weights_only=True``), or
``hf-hub:ORG/REPO``. Default ``ViT-B-32:openai``. ``--prompt`` holds one template
or several separated by ``|``; ``{}`` (or ``{class}``) marks the class name.
Left unset (None), the dataset's own templates are used, else
``"a photo of a {}."``; ``--teacher-scale`` unset means CLIP's 100.
Image features are cached under ``CACHE/clip-features/`` (keyed by the weights'
identity, never their path), logits by the driver.

open_clip is imported at the point of use: without it only this teacher is
unavailable, with a "pip install open_clip_torch" message.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import InvalidInputError
from .. import _io
from .._deps import require
from ..config import RunConfig
from ..datasets.base import Dataset
from ..datasets.images import load_image, need_images
from .base import Teacher, default_cache_dir, file_sha256

DEFAULT_TEMPLATE = "a photo of a {}."
CLIP_LOGIT_SCALE = 100.0
DEFAULT_CLIP_MODEL = "ViT-B-32:openai"


def class_prompts(template: str, class_name: str) -> str:
    """`template` with ``{}`` or ``{class}`` replaced by the class name (underscores
    read as spaces)."""
    name = class_name.replace("_", " ")
    return template.replace("{class}", name).replace("{}", name)


def resolve_templates(cfg: RunConfig, ds: Optional[Dataset] = None) -> List[str]:
    """The prompt templates: the user's (``|``-separated), else the dataset's own,
    else ``[DEFAULT_TEMPLATE]``."""
    user = cfg.prompt
    if user is not None:
        out = [t.strip() for t in str(user).split("|") if t.strip()]
        bad = [t for t in out if "{}" not in t and "{class}" not in t]
        if not out or bad:
            raise InvalidInputError(f"prompt={user!r}: every template needs '{{}}' where the class name goes")
        return out
    if ds is not None and ds.meta.get("templates"):
        return list(ds.meta["templates"])
    return [DEFAULT_TEMPLATE]


def parse_clip_spec(spec: str) -> Tuple[str, Optional[str]]:
    """``ARCH[:PRETRAINED]`` -> (arch, pretrained tag or file path or None)."""
    spec = (spec or DEFAULT_CLIP_MODEL).strip()
    if spec.startswith("hf-hub:"):
        return spec, None
    arch, _, pretrained = spec.partition(":")
    if not arch:
        raise InvalidInputError(f"teacher_model={spec!r}: expected ARCH[:PRETRAINED], e.g. {DEFAULT_CLIP_MODEL!r}")
    return arch, (pretrained or None)


class CLIPTeacher(Teacher):
    """Zero-shot CLIP through open_clip. logits[i, c] = scale * cos(image_i, text_c),
    text_c = normalise(mean_t normalise(encode_text(template_t(class_c)))).

    model: ``ARCH[:PRETRAINED]`` (see the module docstring); templates: None = the
    dataset's or DEFAULT_TEMPLATE; cache_dir: where image features are cached."""

    name = "clip"

    def __init__(self, model: str = "", templates: Optional[Sequence[str]] = None,
                 scale: float = CLIP_LOGIT_SCALE, cache_dir=None, batch_size: int = 64,
                 device: Optional[str] = None) -> None:
        self.arch, self.pretrained = parse_clip_spec(model)
        self.templates = list(templates) if templates else None
        self.scale = float(scale)
        if not self.scale > 0:
            raise InvalidInputError(f"teacher_scale={scale!r} must be positive")
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.batch_size = int(batch_size)
        self.device = device
        self._model = None
        self._features: Dict[str, np.ndarray] = {}
        self.images_encoded = 0  # images run through the image tower by this object
        self._weights_sha = None

    @classmethod
    def from_config(cls, cfg: RunConfig, **kwargs):
        return cls(model=cfg.teacher_model, templates=resolve_templates(cfg) if cfg.prompt is not None else None,
                   scale=CLIP_LOGIT_SCALE if cfg.teacher_scale is None else cfg.teacher_scale,
                   cache_dir=cfg.cache_dir or None, **kwargs)

    @classmethod
    def default_settings(cls, ds: Dataset):
        """The dataset's own templates (else DEFAULT_TEMPLATE), joined by '|', and 100."""
        return {"prompt": "|".join(ds.meta.get("templates") or [DEFAULT_TEMPLATE]),
                "teacher_scale": CLIP_LOGIT_SCALE}

    def _weights_identity(self):
        """arch + pretrained tag, or + the checkpoint's content hash (not its path)."""
        src = self.pretrained
        if src and Path(src).expanduser().is_file():
            if self._weights_sha is None:
                self._weights_sha = file_sha256(Path(src).expanduser())
            src = {"sha256": self._weights_sha}
        return {"arch": self.arch, "pretrained": src}

    def identity(self):
        return {"name": self.name, **self._weights_identity(), "templates": self.templates or "dataset-default",
                "scale": self.scale}

    def describe(self):
        return {**self.identity(), "model": self.arch + (f":{self.pretrained}" if self.pretrained else "")}

    def _load(self):
        if self._model is None:
            open_clip = require("open_clip", f"teacher={self.name!r}")
            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            pretrained = self.pretrained
            if pretrained and Path(pretrained).expanduser().is_file():
                pretrained = str(Path(pretrained).expanduser())
            quick_gelu = False  # OpenAI's weights were trained with QuickGELU; their tag says so
            if pretrained and not Path(pretrained).is_file():
                try:
                    quick_gelu = bool(open_clip.get_pretrained_cfg(self.arch, pretrained).get("quick_gelu", False))
                except Exception:  # unknown tag: create_model_and_transforms below says why
                    quick_gelu = False
            try:
                model, _, preprocess = open_clip.create_model_and_transforms(
                    self.arch, pretrained=pretrained, device=device, weights_only=True, force_quick_gelu=quick_gelu)
                tokenizer = open_clip.get_tokenizer(self.arch)
            except Exception as exc:  # unknown arch/tag, no network, a checkpoint of another arch, ...
                spec = self.arch + (f":{self.pretrained}" if self.pretrained else "")
                hint = ("; offline, pass a local checkpoint: --teacher-model ARCH:/path/to/open_clip_model.safetensors"
                        if pretrained and not Path(pretrained).is_file() else "")
                raise InvalidInputError(f"teacher_model={spec!r}: open_clip cannot build it "
                                        f"({type(exc).__name__}: {exc}){hint}") from exc
            model.eval()
            self._model, self._preprocess, self._tokenizer, self._device = model, preprocess, tokenizer, device
        return self._model

    @torch.no_grad()
    def text_weights(self, class_names: Sequence[str], templates: Optional[Sequence[str]] = None) -> np.ndarray:
        """(C, D) float32 unit rows: the prompt-ensembled class embeddings."""
        model = self._load()
        templates = list(templates or self.templates or [DEFAULT_TEMPLATE])
        rows = []
        for c in class_names:
            tokens = self._tokenizer([class_prompts(t, c) for t in templates]).to(self._device)
            emb = F.normalize(model.encode_text(tokens).float(), dim=-1)
            rows.append(F.normalize(emb.mean(0), dim=-1))
        return torch.stack(rows).cpu().numpy().astype(np.float32)

    def _features_path(self, ds: Dataset) -> Path:
        key_src = json.dumps({"clip": self._weights_identity(), "dataset": ds.fingerprint()}, sort_keys=True)
        key = hashlib.sha256(key_src.encode()).hexdigest()[:20]
        return self.cache_dir / "clip-features" / f"{key}.npy"

    @torch.no_grad()
    def image_features(self, ds: Dataset) -> np.ndarray:
        """(N, D) float32 unit rows, CLIP-preprocessed; cached on disk per dataset."""
        need_images(ds, f"teacher={self.name!r}")
        path = self._features_path(ds)
        if path.name in self._features:
            return self._features[path.name]
        if path.is_file():
            feats = _io.load_array(path, "CLIP feature cache").astype(np.float32)
            if feats.ndim == 2 and len(feats) == len(ds):
                self._features[path.name] = feats
                return feats
        model = self._load()
        out = []
        for s in range(0, len(ds), self.batch_size):
            batch = torch.stack([self._preprocess(load_image(it)) for it in ds.items[s:s + self.batch_size]])
            out.append(F.normalize(model.encode_image(batch.to(self._device)).float(), dim=-1).cpu())
            self.images_encoded += len(batch)
        feats = torch.cat(out).numpy().astype(np.float32)
        _io.write_npy(path, feats)
        self._features[path.name] = feats
        return feats

    def predict(self, ds: Dataset) -> np.ndarray:
        feats = self.image_features(ds)
        weights = self.text_weights(ds.class_names, resolve_templates_for(self, ds))
        return (self.scale * feats @ weights.T).astype(np.float32)


def resolve_templates_for(teacher: CLIPTeacher, ds: Dataset) -> List[str]:
    if teacher.templates:
        return teacher.templates
    return list(ds.meta.get("templates") or [DEFAULT_TEMPLATE])

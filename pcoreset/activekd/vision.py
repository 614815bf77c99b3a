"""The vision path of ActiveKD (DESIGN.md §5, issue 7): CLIP teachers through
open_clip, dual-head image students over torchvision backbones, image datasets.

Registered when the driver loads (``from . import vision`` in the package
``__init__``). Only numpy and torch are imported here; open_clip, torchvision and
Pillow are imported at the point of use, so a machine without them keeps the text
path and gets a clear "pip install ..." message when it asks for a vision part.

Datasets (``--dataset``):
  ``fashion-mnist`` / ``fashion-mnist:DIR``  IDX files (``*-idx?-ubyte.gz``) from
        DIR, default the Debian package ``dataset-fashion-mnist``
        (/usr/share/datasets/fashion-mnist); never downloads.
  ``imagefolder:DIR``  torchvision ImageFolder layout (DIR/<class>/<image>). With
        DIR/train and DIR/test (or DIR/val) those are the splits; otherwise a seeded
        ``test_fraction`` split. ``classes`` renames the folders (sorted order) for
        the prompts.
  ``torchvision:NAME:ROOT``  a torchvision built-in dataset already on disk under
        ROOT (e.g. ``torchvision:CIFAR10:~/data``), opened with ``download=False``.

Teachers (``--teacher``):
  ``clip``     zero-shot CLIP: logits = 100 * cos(image, class text embedding), the
               class embedding being the normalised mean of the normalised
               embeddings of every prompt template (CLIP's prompt ensembling).
  ``fewshot``  the same logits before round 0; :meth:`FewShotCLIPTeacher.adapt`
               refits a CLAP-style linear probe on the labeled rows' CLIP features.
  ``--teacher-model`` is ``ARCH[:PRETRAINED]``: an open_clip architecture and a
  pretrained tag (``ViT-B-32:openai``, ``ViT-B-32:laion2b_s34b_b79k``), a local
  checkpoint file (``ViT-B-32:/models/clip.safetensors``, read with
  ``weights_only=True``), or ``hf-hub:ORG/REPO``. Default ``ViT-B-32:openai``.
  ``--prompt`` holds one template or several separated by ``|``; ``{}`` (or
  ``{class}``) marks the class name. Left at the driver's text default, the
  dataset's own templates are used, else ``"a photo of a {}."``. Likewise
  ``--teacher-scale`` left at the text default means CLIP's 100.
  Image features are cached under ``CACHE/clip-features/``, logits by the driver.

Students (``--student``): ``smallcnn`` (32 px), ``resnet18``, ``mobilenet_v2``
(224 px, random init); ``resnet18-imagenet`` and ``mobilenet_v2-imagenet`` start
from torchvision's ImageNet weights. The teacher sees CLIP preprocessing; the
student sees ImageNet-normalised images, with random crop + flip when training.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InvalidInputError
from . import _io
from .config import RunConfig
from .data import Dataset, register_dataset
from .student import DualHeadStudent, register_student
from .teachers import Teacher, default_cache_dir, register_teacher

DEFAULT_TEMPLATE = "a photo of a {}."
CLIP_LOGIT_SCALE = 100.0
DEFAULT_CLIP_MODEL = "ViT-B-32:openai"
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ["T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
                         "bag", "ankle boot"]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _require(module: str, what: str):
    """Import `module` or say which package the vision feature `what` needs."""
    import importlib

    pip = {"open_clip": "open_clip_torch", "torchvision": "torchvision", "PIL": "pillow"}.get(module, module)
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise InvalidInputError(f"{what} needs the {module!r} package (pip install {pip}); "
                                f"the vision path is disabled without it ({exc})") from exc


def _user_setting(cfg: RunConfig, name: str):
    """cfg.<name> when the user changed it from RunConfig's (text-oriented) default,
    else None: the vision teachers then use their own default."""
    value = getattr(cfg, name, None)
    defaults = {f.name: f.default for f in dataclasses.fields(RunConfig)}
    if value is None or value == "" or (name in defaults and value == defaults[name]):
        return None
    return value


# ----------------------------------------------------------------------------- images


class ArrayImage:
    """One image held in a shared (N, H, W) or (N, H, W, 3) uint8 array; ``str()`` is
    its stable id (what the teacher-cache fingerprint and export-picks see)."""

    __slots__ = ("array", "index", "key")

    def __init__(self, array: np.ndarray, index: int, key: str) -> None:
        self.array, self.index, self.key = array, int(index), key

    def load(self):
        Image = _require("PIL.Image", "image datasets")
        return Image.fromarray(np.asarray(self.array[self.index])).convert("RGB")

    def __str__(self) -> str:
        return self.key

    __repr__ = __str__


class DatasetImage:
    """Image `index` of a map-style dataset returning (image, label) pairs."""

    __slots__ = ("source", "index", "key")

    def __init__(self, source, index: int, key: str) -> None:
        self.source, self.index, self.key = source, int(index), key

    def load(self):
        img = self.source[self.index][0]
        if isinstance(img, torch.Tensor):
            tv = _require("torchvision", "image datasets")
            img = tv.transforms.functional.to_pil_image(img)
        return img.convert("RGB")

    def __str__(self) -> str:
        return self.key

    __repr__ = __str__


def load_image(item):
    """An RGB PIL image from a dataset item (a file path, or an object with ``load()``)."""
    if hasattr(item, "load"):
        return item.load()
    Image = _require("PIL.Image", "image datasets")
    try:
        with Image.open(item) as img:
            return img.convert("RGB")
    except OSError as exc:
        raise InvalidInputError(f"image {str(item)!r}: cannot read it ({exc})") from exc


def _need_images(ds: Dataset, what: str) -> None:
    if ds.items is None:
        raise InvalidInputError(f"{what} needs an image dataset (fashion-mnist, imagefolder:DIR, "
                                f"torchvision:NAME:ROOT); {ds.name!r} has no images")


# ----------------------------------------------------------------------------- datasets

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path) -> np.ndarray:
    """Read an IDX file (the MNIST format; gzip-compressed or not) into an array of
    its native shape, e.g. (N, 28, 28) uint8 images or (N,) uint8 labels.

    Raises InvalidInputError for a missing, truncated or non-IDX file."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"IDX file {str(path)!r} does not exist")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise InvalidInputError(f"IDX file {str(path)!r}: broken gzip data ({exc})") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise InvalidInputError(f"IDX file {str(path)!r}: bad magic number {raw[:4].hex()!r} "
                                "(expected 0000<type><ndim>)")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise InvalidInputError(f"IDX file {str(path)!r}: truncated header")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    count = int(np.prod(shape, dtype=np.int64))
    have = len(raw) - 4 - 4 * ndim
    if have != count * dtype.itemsize:
        raise InvalidInputError(f"IDX file {str(path)!r}: header says shape {shape} ({count * dtype.itemsize} "
                                f"bytes) but the file holds {have} bytes of data")
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=4 + 4 * ndim)
    return data.reshape(shape).astype(dtype.newbyteorder("="))


def _idx_file(root: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (root / name).is_file():
            return root / name
    raise InvalidInputError(f"dataset='fashion-mnist': {str(root / (stem + '.gz'))!r} not found (on Debian/Ubuntu: "
                            "apt install dataset-fashion-mnist, or pass fashion-mnist:DIR with the four IDX files)")


def load_fashion_mnist(cfg: RunConfig) -> Dataset:
    """Fashion-MNIST from IDX files: 60000 pool rows (``train/<i>``) and 10000 test
    rows (``test/<i>``); images are 28x28 grayscale."""
    if cfg.dataset != "fashion-mnist" and not cfg.dataset.startswith("fashion-mnist:"):
        # the registry matches prefixes: "fashion-mnist.csv" is somebody's CSV file
        from .data import read_text_csv

        path = Path(cfg.dataset)
        if not path.is_file():
            raise InvalidInputError(f"dataset={cfg.dataset!r}: no such file (did you mean 'fashion-mnist' or "
                                    "'fashion-mnist:DIR'?)")
        return read_text_csv(path, classes=cfg.classes, test_fraction=cfg.test_fraction)
    root = Path(cfg.dataset.split(":", 1)[1]).expanduser() if ":" in cfg.dataset else FASHION_MNIST_DIR
    parts = []
    for split, stem in (("train", "train"), ("test", "t10k")):
        images = read_idx(_idx_file(root, f"{stem}-images-idx3-ubyte"))
        labels = read_idx(_idx_file(root, f"{stem}-labels-idx1-ubyte"))
        if images.ndim != 3 or labels.shape != images.shape[:1]:
            raise InvalidInputError(f"dataset={cfg.dataset!r}: {split} images {images.shape} and labels "
                                    f"{labels.shape} do not match")
        parts.append((split, images, labels.astype(np.int64)))
    ids, items, labels, is_test = [], [], [], []
    for split, images, y in parts:
        for i in range(len(images)):
            key = f"{split}/{i}"
            ids.append(key)
            items.append(ArrayImage(images, i, f"fashion-mnist/{key}"))
        labels.append(y)
        is_test.append(np.full(len(images), split == "test"))
    y = np.concatenate(labels)
    if y.min() < 0 or y.max() >= len(FASHION_MNIST_CLASSES):
        raise InvalidInputError(f"dataset={cfg.dataset!r}: labels outside 0..{len(FASHION_MNIST_CLASSES) - 1}")
    return Dataset(name="fashion-mnist", ids=ids, labels=y, is_test=np.concatenate(is_test),
                   class_names=list(FASHION_MNIST_CLASSES), items=items,
                   meta={"source": str(root), "templates": ["a photo of a {}.", "a photo of the {}.",
                                                            "a black and white photo of a {}."]})


def _scan_folder(root: Path) -> Tuple[List[str], List[Tuple[Path, str]]]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    samples = [(f, c) for c in classes for f in sorted((root / c).rglob("*"))
               if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS]
    return classes, samples


def load_image_folder(cfg: RunConfig) -> Dataset:
    """An ImageFolder directory (DIR/<class>/<image>); see the module docstring."""
    root = Path(cfg.dataset.split(":", 1)[1]).expanduser()
    if not root.is_dir():
        raise InvalidInputError(f"dataset={cfg.dataset!r}: {str(root)!r} is not a directory")
    test_dir = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
    if (root / "train").is_dir() and test_dir is not None:
        classes, train = _scan_folder(root / "train")
        test_classes, test = _scan_folder(test_dir)
        extra = sorted(set(test_classes) - set(classes))
        if extra:
            raise InvalidInputError(f"dataset={cfg.dataset!r}: {str(test_dir)!r} has classes {extra} that "
                                    f"{str(root / 'train')!r} lacks")
        samples = [(f, c, False) for f, c in train] + [(f, c, True) for f, c in test]
        is_test = np.array([t for _, _, t in samples], dtype=bool)
    else:
        classes, found = _scan_folder(root)
        samples = [(f, c, False) for f, c in found]
        rng = np.random.default_rng(0)
        is_test = np.zeros(len(samples), dtype=bool)
        is_test[rng.permutation(len(samples))[: int(round(cfg.test_fraction * len(samples)))]] = True
    if not samples:
        raise InvalidInputError(f"dataset={cfg.dataset!r}: no images ({', '.join(IMAGE_EXTENSIONS)}) in class "
                                f"folders under {str(root)!r}")
    names = list(classes)
    if cfg.classes:
        if len(cfg.classes) != len(classes):
            raise InvalidInputError(f"classes has {len(cfg.classes)} names but {str(root)!r} has {len(classes)} "
                                    f"class folders {classes}")
        names = [str(c) for c in cfg.classes]
    index = {c: k for k, c in enumerate(classes)}
    return Dataset(name=root.name, ids=[str(f.relative_to(root)) for f, _, _ in samples],
                   labels=np.array([index[c] for _, c, _ in samples], dtype=np.int64), is_test=is_test,
                   class_names=names, items=[str(f) for f, _, _ in samples], meta={"source": str(root)})


def _open_torchvision(cls, root: str, test: bool):
    attempts = [{"train": not test}, {"split": "test" if test else "train"}]
    if test:
        attempts.append({"split": "val"})
    errors = []
    for kw in attempts:
        try:
            return cls(root, download=False, **kw)
        except TypeError as exc:
            errors.append(f"{kw}: {exc}")
        except (RuntimeError, OSError, ValueError) as exc:  # not on disk, or no such split
            errors.append(f"{kw}: {exc}")
    raise InvalidInputError(f"torchvision.datasets.{cls.__name__} under {root!r} (download=False): "
                            + "; ".join(errors))


def _targets(tvds) -> np.ndarray:
    for attr in ("targets", "labels", "_labels"):
        t = getattr(tvds, attr, None)
        if t is not None and len(t) == len(tvds):
            return np.asarray(t, dtype=np.int64)
    return np.array([int(tvds[i][1]) for i in range(len(tvds))], dtype=np.int64)


def load_torchvision(cfg: RunConfig) -> Dataset:
    """``torchvision:NAME:ROOT``: a torchvision dataset class NAME already on disk."""
    tv = _require("torchvision", f"dataset={cfg.dataset!r}")
    parts = cfg.dataset.split(":", 2)
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise InvalidInputError(f"dataset={cfg.dataset!r}: expected torchvision:NAME:ROOT, e.g. "
                                "torchvision:CIFAR10:~/data")
    name, root = parts[1], str(Path(parts[2]).expanduser())
    cls = getattr(tv.datasets, name, None)
    if not isinstance(cls, type):
        raise InvalidInputError(f"dataset={cfg.dataset!r}: torchvision.datasets has no dataset {name!r}")
    ids, items, labels, is_test, classes = [], [], [], [], None
    for test in (False, True):
        tvds = _open_torchvision(cls, root, test)
        classes = classes or list(getattr(tvds, "classes", []) or [])
        y = _targets(tvds)
        split = "test" if test else "train"
        data = getattr(tvds, "data", None)
        if isinstance(data, torch.Tensor):
            data = data.numpy()
        in_memory = isinstance(data, np.ndarray) and data.dtype == np.uint8 and len(data) == len(tvds) \
            and (data.ndim == 3 or (data.ndim == 4 and data.shape[-1] == 3))
        for i in range(len(tvds)):
            key = f"{name}/{split}/{i}"
            ids.append(f"{split}/{i}")
            items.append(ArrayImage(data, i, key) if in_memory else DatasetImage(tvds, i, key))
        labels.append(y)
        is_test.append(np.full(len(tvds), test))
    y = np.concatenate(labels)
    if cfg.classes:
        classes = [str(c) for c in cfg.classes]
    if not classes or len(classes) <= int(y.max()):
        raise InvalidInputError(f"dataset={cfg.dataset!r}: the dataset has no class names for labels "
                                f"0..{int(y.max())}; pass them with classes=...")
    return Dataset(name=name.lower(), ids=ids, labels=y, is_test=np.concatenate(is_test), class_names=classes,
                   items=items, meta={"source": root})


# ----------------------------------------------------------------------------- teachers


def class_prompts(template: str, class_name: str) -> str:
    """`template` with ``{}`` or ``{class}`` replaced by the class name (underscores
    read as spaces)."""
    name = class_name.replace("_", " ")
    return template.replace("{class}", name).replace("{}", name)


def resolve_templates(cfg: RunConfig, ds: Optional[Dataset] = None) -> List[str]:
    """The prompt templates: the user's (``|``-separated), else the dataset's own,
    else ``[DEFAULT_TEMPLATE]``."""
    user = _user_setting(cfg, "prompt")
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

    @classmethod
    def from_config(cls, cfg: RunConfig, **kwargs):
        scale = _user_setting(cfg, "teacher_scale")
        return cls(model=cfg.teacher_model, templates=resolve_templates(cfg) if _user_setting(cfg, "prompt") else None,
                   scale=CLIP_LOGIT_SCALE if scale is None else scale, cache_dir=cfg.cache_dir or None, **kwargs)

    def _weights_identity(self):
        src = self.pretrained
        if src and Path(src).expanduser().is_file():
            st = Path(src).expanduser().stat()
            src = {"path": str(Path(src).expanduser().resolve()), "size": st.st_size, "mtime": st.st_mtime_ns}
        return {"arch": self.arch, "pretrained": src}

    def identity(self):
        return {"name": self.name, **self._weights_identity(), "templates": self.templates or "dataset-default",
                "scale": self.scale}

    def _load(self):
        if self._model is None:
            open_clip = _require("open_clip", f"teacher={self.name!r}")
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
        _need_images(ds, f"teacher={self.name!r}")
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


def fit_clap(feats: np.ndarray, labels: np.ndarray, zs_weights: np.ndarray, scale: float = CLIP_LOGIT_SCALE,
             *, penalty: float = 1.0, steps: int = 300, lr: float = 1e-3) -> np.ndarray:
    """CLAP-style class-adaptive linear probe (Silva-Rodriguez et al., CVPR 2024).

    feats: (L, D) unit image features of the labeled rows; labels: (L,) int class
    ids; zs_weights: (C, D) zero-shot class embeddings (the initialisation).
    Minimises mean CE(scale * feats @ W^T, labels) + penalty * sum_c lambda_c
    ||W_c - zs_c||^2, where lambda_c is the zero-shot model's mean probability of
    the true class on class c's labeled rows (classes the zero-shot model already
    gets right stay close to their text embedding) and 1 for classes with no
    labeled row. Full-batch Adam, deterministic. Returns W: (C, D) float32."""
    x = torch.as_tensor(np.asarray(feats, dtype=np.float32))
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    w0 = torch.as_tensor(np.asarray(zs_weights, dtype=np.float32))
    num_classes = w0.shape[0]
    if len(y) == 0:
        return w0.numpy().copy()
    with torch.no_grad():
        p_true = (scale * x @ w0.T).softmax(1).gather(1, y[:, None]).squeeze(1)
        counts = torch.bincount(y, minlength=num_classes).float()
        sums = torch.zeros(num_classes).index_add_(0, y, p_true)
        lam = torch.where(counts > 0, sums / counts.clamp(min=1), torch.ones(num_classes))
    w = w0.clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr)
    for _ in range(steps):
        loss = F.cross_entropy(scale * x @ w.T, y) + penalty * (lam[:, None] * (w - w0) ** 2).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return w.detach().numpy().astype(np.float32)


class FewShotCLIPTeacher(CLIPTeacher):
    """Few-shot CLIP: zero-shot logits before any label, then after each round's
    labels a CLAP probe (:func:`fit_clap`) on the cached image features."""

    name = "fewshot"
    adaptive = True

    def __init__(self, *args, penalty: float = 1.0, steps: int = 300, lr: float = 1e-3, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.penalty, self.steps, self.lr = float(penalty), int(steps), float(lr)

    def identity(self):
        return {**super().identity(), "probe": {"penalty": self.penalty, "steps": self.steps, "lr": self.lr}}

    def adapt(self, ds: Dataset, labeled_idx: np.ndarray, labels: np.ndarray,
              base_logits: np.ndarray) -> Optional[np.ndarray]:
        """(N, C) logits of the probe refit on rows `labeled_idx` with classes `labels`."""
        labeled_idx = np.asarray(labeled_idx, dtype=np.int64)
        labels = np.asarray(labels, dtype=np.int64)
        if labeled_idx.shape != labels.shape:
            raise InvalidInputError(f"labeled_idx has shape {labeled_idx.shape} but labels {labels.shape}")
        if len(labels) and (labels.min() < 0 or labels.max() >= ds.num_classes):
            raise InvalidInputError(f"labels must be in 0..{ds.num_classes - 1}; got {labels.min()}..{labels.max()}")
        feats = self.image_features(ds)
        w0 = self.text_weights(ds.class_names, resolve_templates_for(self, ds))
        w = fit_clap(feats[labeled_idx], labels, w0, self.scale, penalty=self.penalty, steps=self.steps, lr=self.lr)
        return (self.scale * feats @ w.T).astype(np.float32)


# ----------------------------------------------------------------------------- students


class SmallCNN(nn.Module):
    """Three stride-2 conv-BN-ReLU blocks (width, 2*width, 4*width channels) and
    global average pooling: a cheap student for quick CPU runs on small images."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        layers, c_in = [], 3
        for c_out in (width, 2 * width, 4 * width):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(inplace=True)]
            c_in = c_out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.net = nn.Sequential(*layers)
        self.out_dim = c_in

    def forward(self, x):
        return self.net(x)


def _torchvision_backbone(arch: str, pretrained: bool) -> Tuple[nn.Module, int]:
    tv = _require("torchvision", f"student={arch!r}")
    if arch == "resnet18":
        weights = tv.models.ResNet18_Weights.IMAGENET1K_V1 if pretrained else None
        net = tv.models.resnet18(weights=weights)
        dim = net.fc.in_features
        net.fc = nn.Identity()
    elif arch == "mobilenet_v2":
        weights = tv.models.MobileNet_V2_Weights.IMAGENET1K_V1 if pretrained else None
        net = tv.models.mobilenet_v2(weights=weights)
        dim = net.last_channel
        net.classifier = nn.Identity()
    else:
        raise InvalidInputError(f"student={arch!r} is not a known torchvision backbone")
    return net, dim


class ImageStudent(DualHeadStudent):
    """Dual-head student on images: ImageNet-normalised `image_size` px inputs, random
    crop (pad size/8, reflect) + horizontal flip when training.

    Images are decoded once (resize short side, centre crop) and kept as uint8 when
    they fit in `max_cache_bytes`; otherwise decoded per batch."""

    eval_batch_size = 256

    def __init__(self, cfg: RunConfig, ds: Dataset, arch: str, pretrained: bool = False,
                 image_size: Optional[int] = None, max_cache_bytes: int = 4 << 30) -> None:
        super().__init__(cfg, ds)
        _need_images(ds, f"student={cfg.student!r}")
        self.arch, self.pretrained = arch, bool(pretrained)
        self.image_size = int(image_size or getattr(cfg, "image_size", 0) or (32 if arch == "smallcnn" else 224))
        self._cache_all = len(ds) * 3 * self.image_size ** 2 <= max_cache_bytes
        self._pixels: Optional[torch.Tensor] = None
        self._init_state = None
        self._mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255
        self._std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255

    def make_backbone(self):
        if self.arch == "smallcnn":
            net = SmallCNN()
            return net, net.out_dim
        net, dim = _torchvision_backbone(self.arch, self.pretrained and self._init_state is None)
        if self.pretrained:  # load the downloaded weights once, reuse them every round
            if self._init_state is None:
                self._init_state = {k: v.clone() for k, v in net.state_dict().items()}
            else:
                net.load_state_dict(self._init_state)
        return net, dim

    def _decode(self, rows: np.ndarray) -> torch.Tensor:
        tv = _require("torchvision", f"student={self.cfg.student!r}")
        tf = tv.transforms
        prep = tf.Compose([tf.Resize(self.image_size), tf.CenterCrop(self.image_size), tf.PILToTensor()])
        if len(rows) == 0:
            return torch.zeros(0, 3, self.image_size, self.image_size, dtype=torch.uint8)
        return torch.stack([prep(load_image(self.ds.items[r])) for r in rows])

    def _uint8(self, rows: np.ndarray) -> torch.Tensor:
        if not self._cache_all:
            return self._decode(rows)
        if self._pixels is None:
            self._pixels = self._decode(np.arange(len(self.ds)))
        return self._pixels[torch.as_tensor(rows, dtype=torch.long)]

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        pad = max(1, self.image_size // 8)
        padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        dy = torch.randint(0, 2 * pad + 1, (n,)).tolist()
        dx = torch.randint(0, 2 * pad + 1, (n,)).tolist()
        flip = (torch.rand(n) < 0.5).tolist()
        out = torch.empty_like(x)
        for i in range(n):
            crop = padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
            out[i] = crop.flip(-1) if flip[i] else crop
        return out

    def inputs(self, rows, train):
        x = self._uint8(np.asarray(rows, dtype=np.int64)).float()
        if train and len(x):
            x = self._augment(x)
        return ((x - self._mean) / self._std,)

    def predict(self, rows, batch_size: int = 4096):
        return super().predict(rows, batch_size=min(batch_size, self.eval_batch_size))


def _student_factory(arch: str, pretrained: bool):
    def factory(cfg: RunConfig, ds: Dataset) -> ImageStudent:
        return ImageStudent(cfg, ds, arch, pretrained=pretrained or bool(getattr(cfg, "student_pretrained", False)))

    return factory


# ----------------------------------------------------------------------------- registration

register_dataset("fashion-mnist", load_fashion_mnist)
register_dataset("imagefolder:", load_image_folder)
register_dataset("torchvision:", load_torchvision)
register_teacher("clip", CLIPTeacher.from_config)
register_teacher("fewshot", FewShotCLIPTeacher.from_config)
register_student("smallcnn", _student_factory("smallcnn", False))
for _arch in ("resnet18", "mobilenet_v2"):
    register_student(_arch, _student_factory(_arch, False))
    register_student(f"{_arch}-imagenet", _student_factory(_arch, True))

"""``imagefolder:DIR``: torchvision's ImageFolder layout (DIR/<class>/<image>).
With DIR/train and DIR/test (or DIR/val) those are the splits; otherwise a seeded
``test_fraction`` split. ``classes`` renames the folders (sorted order) for the
prompts."""
from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import numpy as np

from ...errors import InvalidInputError
from ..config import RunConfig
from .base import Dataset
from .images import IMAGE_EXTENSIONS


def _scan_folder(root: Path) -> Tuple[List[str], List[Tuple[Path, str]]]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    samples = [(f, c) for c in classes for f in sorted((root / c).rglob("*"))
               if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS]
    return classes, samples


def load_image_folder(cfg: RunConfig) -> Dataset:
    """An ImageFolder directory (DIR/<class>/<image>); see the module docstring."""
    if ":" not in cfg.dataset or not cfg.dataset.split(":", 1)[1]:
        raise InvalidInputError(f"dataset={cfg.dataset!r}: expected imagefolder:DIR")
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

"""``torchvision:NAME:ROOT``: a torchvision built-in dataset already on disk under
ROOT (e.g. ``torchvision:CIFAR10:~/data``), opened with ``download=False``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ...errors import InvalidInputError
from .._deps import require
from ..config import RunConfig
from .base import Dataset
from .images import ArrayImage, DatasetImage


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
    tv = require("torchvision", f"dataset={cfg.dataset!r}")
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

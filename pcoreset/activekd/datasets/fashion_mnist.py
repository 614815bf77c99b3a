"""``fashion-mnist[:DIR]``: Fashion-MNIST from its IDX files (``*-idx?-ubyte[.gz]``)
in DIR, by default where Debian's ``dataset-fashion-mnist`` puts them
(/usr/share/datasets/fashion-mnist). Never downloads."""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from ...errors import InvalidInputError
from ..config import RunConfig
from .base import Dataset
from .images import ArrayImage

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ["T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
                         "bag", "ankle boot"]

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

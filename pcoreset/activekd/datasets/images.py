"""Image items shared by the image datasets, the CLIP teachers and the image
students: rows of an in-memory array, rows of a map-style dataset, or file paths."""
from __future__ import annotations

import numpy as np
import torch

from ...errors import InvalidInputError
from .._deps import require
from .base import Dataset

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class ArrayImage:
    """One image held in a shared (N, H, W) or (N, H, W, 3) uint8 array; ``str()`` is
    its stable id (what the teacher-cache fingerprint and export-picks see)."""

    __slots__ = ("array", "index", "key")

    def __init__(self, array: np.ndarray, index: int, key: str) -> None:
        self.array, self.index, self.key = array, int(index), key

    def load(self):
        Image = require("PIL.Image", "image datasets")
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
            tv = require("torchvision", "image datasets")
            img = tv.transforms.functional.to_pil_image(img)
        return img.convert("RGB")

    def __str__(self) -> str:
        return self.key

    __repr__ = __str__


def load_image(item):
    """An RGB PIL image from a dataset item (a file path, or an object with ``load()``)."""
    if hasattr(item, "load"):
        return item.load()
    Image = require("PIL.Image", "image datasets")
    try:
        with Image.open(item) as img:
            return img.convert("RGB")
    except OSError as exc:
        raise InvalidInputError(f"image {str(item)!r}: cannot read it ({exc})") from exc


def need_images(ds: Dataset, what: str) -> None:
    if ds.items is None:
        raise InvalidInputError(f"{what} needs an image dataset (fashion-mnist, imagefolder:DIR, "
                                f"torchvision:NAME:ROOT); {ds.name!r} has no images")

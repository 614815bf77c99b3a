"""Datasets for ActiveKD (``--dataset``): one module per source, listed in
:data:`DATASETS`. A dataset value is ``NAME`` or ``NAME:ARGUMENT``
(``imagefolder:/data/pets``); anything that matches no name is read as a text
CSV file.

=====================  ======================================================
``embedded:wordnet``   text: WordNet noun glosses, 6 supersenses (the demo)
``embedded:wordnet25`` text: WordNet noun glosses, all 25 noun supersenses
``FILE.csv[.gz]``      text: ``text[,id,label,split]`` columns
``fashion-mnist[:DIR]`` images: IDX files (Debian's dataset-fashion-mnist)
``imagefolder:DIR``    images: DIR/<class>/<image>, optional train/ and test/
``torchvision:NAME:ROOT`` images: a torchvision dataset already on disk
=====================  ======================================================

A new source: a module here with ``load_x(cfg) -> Dataset``, and one line in
:data:`DATASETS`."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, List

from ..config import RunConfig
from ..registry import Registry
from ...errors import InvalidInputError
from .base import Dataset, slice_dataset
from .text import load_csv

DATASETS = Registry("dataset", "dataset", {
    "embedded:wordnet": "pcoreset.activekd.datasets.text:load_wordnet",
    "embedded:wordnet25": "pcoreset.activekd.datasets.text:load_wordnet25",
    "fashion-mnist": "pcoreset.activekd.datasets.fashion_mnist:load_fashion_mnist",
    "imagefolder": "pcoreset.activekd.datasets.imagefolder:load_image_folder",
    "torchvision": "pcoreset.activekd.datasets.torchvision_disk:load_torchvision",
})

DatasetLoader = Callable[[RunConfig], Dataset]


def register_dataset(name: str, loader: DatasetLoader) -> None:
    """Make ``load_dataset`` hand ``cfg.dataset`` values ``name`` and ``name:ARG``
    to `loader(cfg) -> Dataset` (a trailing ``:`` in `name` is ignored)."""
    DATASETS.register(name.rstrip(":"), loader)


def dataset_names() -> List[str]:
    return DATASETS.names()


def find_loader(value: str) -> DatasetLoader:
    """The loader for a ``dataset`` value: the longest registered name equal to it
    or followed by ``:``; else the text-CSV reader."""
    matches = [n for n in DATASETS.names() if value == n or value.startswith(n + ":")]
    if matches:
        return DATASETS.get(max(matches, key=len))
    return load_csv


def load_dataset(cfg: RunConfig) -> Dataset:
    """The dataset named by ``cfg.dataset``, sliced by ``max_pool``/``max_test``."""
    loader = find_loader(cfg.dataset)
    if loader is load_csv and not Path(cfg.dataset).expanduser().is_file():
        raise InvalidInputError(f"dataset={cfg.dataset!r}: no such file (expected a .csv/.csv.gz file or one "
                                f"of {dataset_names()})")
    ds = loader(cfg)
    return slice_dataset(ds, cfg.max_pool, cfg.max_test)


__all__ = ["Dataset", "DATASETS", "register_dataset", "dataset_names", "find_loader", "load_dataset",
           "slice_dataset"]

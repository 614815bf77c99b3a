"""Datasets for ActiveKD: a pool (the ``train`` split) to select from and a test
split, with class names (teachers prompt with them) and labels (-1 = unknown,
to be asked from an oracle). Text CSVs and the embedded WordNet set are built in;
other modalities register a loader with :func:`register_dataset`."""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from ..errors import InvalidInputError
from .config import EMBEDDED_WORDNET, RunConfig

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
WORDNET_FILE = DATA_DIR / "wordnet_supersenses.csv.gz"


@dataclass
class Dataset:
    """Row i is sample i; picks and labeled sets are row indices ("dataset-absolute").

    ids:         (N,) sample ids shown to people (export-picks, oracle files).
    labels:      (N,) int64 class index, -1 where unknown.
    is_test:     (N,) bool, True for the test split.
    class_names: C names, in label order.
    texts:       (N,) strings for text students/teachers, or None.
    items:       modality-specific payload per row (image paths, ...), or None.
    meta:        free-form; ``meta["source_rows"]`` maps rows of a slice to rows of
                 the file (files aligned with the dataset, e.g. teacher logits, use it).
    """

    name: str
    ids: List[str]
    labels: np.ndarray
    is_test: np.ndarray
    class_names: List[str]
    texts: Optional[List[str]] = None
    items: Optional[list] = None
    meta: Dict[str, object] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def pool_idx(self) -> np.ndarray:
        return np.flatnonzero(~self.is_test).astype(np.int64)

    @property
    def test_idx(self) -> np.ndarray:
        return np.flatnonzero(self.is_test).astype(np.int64)

    def fingerprint(self) -> str:
        """Hash of what a frozen teacher sees (ids, contents, class names): the
        teacher-output cache key."""
        h = hashlib.sha256()
        h.update("\x1f".join(self.class_names).encode())
        for i, sid in enumerate(self.ids):
            h.update(sid.encode())
            h.update(b"\x1e")
            if self.texts is not None:
                h.update(self.texts[i].encode())
            elif self.items is not None:
                h.update(str(self.items[i]).encode())
            h.update(b"\x1d")
        return h.hexdigest()[:16]

    def subset(self, rows: np.ndarray, name: Optional[str] = None) -> "Dataset":
        rows = np.asarray(rows, dtype=np.int64)
        meta = dict(self.meta)
        meta["source_rows"] = np.asarray(self.meta.get("source_rows", np.arange(len(self))))[rows]
        return Dataset(
            name=name or self.name,
            ids=[self.ids[i] for i in rows],
            labels=self.labels[rows].copy(),
            is_test=self.is_test[rows].copy(),
            class_names=list(self.class_names),
            texts=None if self.texts is None else [self.texts[i] for i in rows],
            items=None if self.items is None else [self.items[i] for i in rows],
            meta=meta,
        )


DatasetLoader = Callable[[RunConfig], Dataset]
_LOADERS: Dict[str, DatasetLoader] = {}


def register_dataset(prefix: str, loader: DatasetLoader) -> None:
    """Make ``load_dataset`` hand ``cfg.dataset`` values starting with `prefix`
    (e.g. ``"imagefolder:"``) to `loader(cfg) -> Dataset`."""
    _LOADERS[prefix] = loader


def load_dataset(cfg: RunConfig) -> Dataset:
    """The dataset named by ``cfg.dataset``, sliced by ``max_pool``/``max_test``."""
    for prefix, loader in _LOADERS.items():
        if cfg.dataset.startswith(prefix):
            ds = loader(cfg)
            break
    else:
        path = Path(cfg.dataset)
        if not path.is_file():
            raise InvalidInputError(
                f"dataset={cfg.dataset!r}: no such file (expected a .csv/.csv.gz file or one of "
                f"{sorted(_LOADERS)})")
        ds = read_text_csv(path, classes=cfg.classes, test_fraction=cfg.test_fraction)
    return _slice(ds, cfg.max_pool, cfg.max_test)


def _slice(ds: Dataset, max_pool: int, max_test: int) -> Dataset:
    if not max_pool and not max_test:
        return ds
    rng = np.random.default_rng(12345)  # the slice is part of the dataset, not of the run seed
    keep = []
    for rows, cap in ((ds.pool_idx, max_pool), (ds.test_idx, max_test)):
        if cap and len(rows) > cap:
            rows = np.sort(rng.choice(rows, size=cap, replace=False))
        keep.append(rows)
    rows = np.sort(np.concatenate(keep))
    sliced = ds.subset(rows)
    sliced.meta["slice"] = {"max_pool": max_pool, "max_test": max_test}
    return sliced


def read_text_csv(path, *, classes=None, test_fraction: float = 0.2, name: Optional[str] = None) -> Dataset:
    """Read a text dataset CSV (optionally gzip-compressed).

    Columns: ``text`` (required), ``id`` (default: row number), ``label`` (class name,
    or class index when `classes` is given; blank = unknown), ``split`` (``train`` or
    ``test``; absent = a seeded random `test_fraction` split)."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    try:
        reader = csv.DictReader(io.StringIO(raw.decode("utf-8-sig")))
        rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInputError(f"dataset={str(path)!r}: not a UTF-8 CSV file ({exc})") from exc
    cols = reader.fieldnames or []
    if "text" not in cols:
        raise InvalidInputError(f"dataset={str(path)!r}: needs a 'text' column; found columns {cols}")
    if not rows:
        raise InvalidInputError(f"dataset={str(path)!r}: has no rows")
    ids = [r.get("id") or str(k) for k, r in enumerate(rows)]
    if len(set(ids)) != len(ids):
        raise InvalidInputError(f"dataset={str(path)!r}: the 'id' column has duplicates")
    raw_labels = [(r.get("label") or "").strip() for r in rows]
    if classes is None:
        classes = sorted({lab for lab in raw_labels if lab})
        if not classes:
            raise InvalidInputError(f"dataset={str(path)!r}: no labels found; pass the class names (classes=...)")
    labels = np.array([_label_index(lab, classes, f"dataset={str(path)!r} row {k}")
                       for k, lab in enumerate(raw_labels)], dtype=np.int64)
    if "split" in cols:
        splits = [(r.get("split") or "").strip().lower() for r in rows]
        bad = sorted(set(splits) - {"train", "test"})
        if bad:
            raise InvalidInputError(f"dataset={str(path)!r}: split values {bad}; expected 'train' or 'test'")
        is_test = np.array([s == "test" for s in splits])
    else:
        rng = np.random.default_rng(0)
        is_test = np.zeros(len(rows), dtype=bool)
        is_test[rng.permutation(len(rows))[: int(round(test_fraction * len(rows)))]] = True
    if labels[is_test].min(initial=0) < 0:
        raise InvalidInputError(f"dataset={str(path)!r}: test rows need labels (accuracy is measured on them)")
    return Dataset(name=name or path.name, ids=ids, labels=labels, is_test=is_test,
                   class_names=list(classes), texts=[r["text"] for r in rows])


def _label_index(value: str, classes, where: str) -> int:
    if value == "":
        return -1
    if value in classes:
        return classes.index(value)
    if value.lstrip("-").isdigit() and 0 <= int(value) < len(classes):
        return int(value)
    raise InvalidInputError(f"{where}: label {value!r} is not one of the classes {list(classes)}")


def _load_wordnet(cfg: RunConfig) -> Dataset:
    if not WORDNET_FILE.is_file():
        raise InvalidInputError(f"dataset={EMBEDDED_WORDNET!r}: the packaged file {str(WORDNET_FILE)!r} is missing; "
                                "rebuild it with scripts/build_wordnet_dataset.py")
    ds = read_text_csv(WORDNET_FILE, classes=cfg.classes or None, name="wordnet-supersenses")
    ds.meta["source"] = "WordNet 3.0 noun glosses (pcoreset/data/WORDNET_LICENSE)"
    return ds


register_dataset(EMBEDDED_WORDNET, _load_wordnet)

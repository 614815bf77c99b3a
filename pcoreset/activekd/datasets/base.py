"""The dataset every ActiveKD part works on: a pool (the ``train`` split) to
select from and a test split, with class names (teachers prompt with them) and
labels (-1 = unknown, to be asked from an oracle)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np


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
    def modality(self) -> str:
        """"text" (rows have texts), "image" (rows have items) or "other"."""
        if self.texts is not None:
            return "text"
        return "image" if self.items is not None else "other"

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


def slice_dataset(ds: Dataset, max_pool: int, max_test: int) -> Dataset:
    """At most `max_pool` pool rows and `max_test` test rows (0 = all), drawn with a
    fixed seed: the slice is part of the dataset, not of the run seed."""
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

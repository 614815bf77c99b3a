"""Text datasets: CSV files (``text[,id,label,split]``, optionally gzip-compressed)
and the WordNet noun glosses shipped in ``pcoreset/data`` (built offline from
Debian's wordnet-base by scripts/build_wordnet_dataset.py)."""
from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path
from typing import Optional

import numpy as np

from ...errors import InvalidInputError
from ..config import EMBEDDED_WORDNET, EMBEDDED_WORDNET25, RunConfig
from .base import Dataset

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
WORDNET_FILE = DATA_DIR / "wordnet_supersenses.csv.gz"
WORDNET25_FILE = DATA_DIR / "wordnet25_supersenses.csv.gz"


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


def _embedded(path: Path, setting: str, name: str, cfg: RunConfig) -> Dataset:
    if not path.is_file():
        raise InvalidInputError(f"dataset={setting!r}: the packaged file {str(path)!r} is missing; "
                                "rebuild it with scripts/build_wordnet_dataset.py")
    ds = read_text_csv(path, classes=cfg.classes or None, name=name)
    ds.meta["source"] = "WordNet 3.0 noun glosses (pcoreset/data/WORDNET_LICENSE)"
    return ds


def load_wordnet(cfg: RunConfig) -> Dataset:
    """``embedded:wordnet``: the demo's 6 supersenses, 450 pool + 150 test glosses each."""
    return _embedded(WORDNET_FILE, EMBEDDED_WORDNET, "wordnet-supersenses", cfg)


def load_wordnet25(cfg: RunConfig) -> Dataset:
    """``embedded:wordnet25``: all 25 noun supersenses (lexicographer files 04-28),
    120 pool + 40 test glosses each (noun.motive has 42 synsets: 32 + 10)."""
    return _embedded(WORDNET25_FILE, EMBEDDED_WORDNET25, "wordnet-25-supersenses", cfg)


def load_csv(cfg: RunConfig) -> Dataset:
    """A text CSV file named by ``cfg.dataset``."""
    path = Path(cfg.dataset).expanduser()
    if not path.is_file():
        raise InvalidInputError(f"dataset={cfg.dataset!r}: no such file (expected a .csv/.csv.gz file)")
    return read_text_csv(path, classes=cfg.classes, test_fraction=cfg.test_fraction)

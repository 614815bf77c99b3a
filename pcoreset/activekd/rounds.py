"""The state of a round whose labels are not all in, kept in one file.

A round changes several times before it is finished: its picks are made,
a person skips some and they are replaced, rows are labeled out of order.
Each change is written as one file, ``rounds/<k>/round.npz``, replaced
atomically, so a run killed at any moment resumes from the last change as a
whole: the picks, the skipped rows, the rows labeled out of order and the
continued selection's state never disagree. ``picks.npy`` and
``skipped.npy`` beside it are copies for readers (``export-picks``), written
after it and rewritten from it on resume."""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from ..errors import PcoresetError
from . import _io

ROUND_FILE = "round.npz"
_SELECTOR_PREFIX = "selector_"


def _rows(a) -> np.ndarray:
    return np.asarray(a, dtype=np.int64).reshape(-1)


@dataclass
class OpenRound:
    """Round `k` before its labels are written.

    picks:        the strategy's picks in pick order (kept picks, then the
                  replacements of skipped ones);
    skipped:      rows of this round a person could not label (sorted);
                  excluded from every later selection;
    given_rows:   rows labeled without being asked (out of order), with
    given_labels: their classes; they join the round's labeled rows;
    pool_rows:    for a continued selection: the dataset rows its positions
                  refer to, and
    selector:     its state_dict (the space it runs on is pool_probs.npy).
    """

    k: int
    picks: np.ndarray
    skipped: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    given_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    given_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    pool_rows: Optional[np.ndarray] = None
    selector: Optional[Dict[str, np.ndarray]] = None

    def __post_init__(self) -> None:
        self.picks, self.skipped = _rows(self.picks), np.unique(_rows(self.skipped))
        self.given_rows, self.given_labels = _rows(self.given_rows), _rows(self.given_labels)

    def save(self, rd: Path) -> None:
        """Write the whole state as one file, then the reader copies."""
        arrays = {"round": np.array(self.k, dtype=np.int64), "picks": self.picks, "skipped": self.skipped,
                  "given_rows": self.given_rows, "given_labels": self.given_labels}
        if self.selector is not None:
            arrays["pool_rows"] = _rows(self.pool_rows)
            arrays.update({_SELECTOR_PREFIX + key: np.asarray(v) for key, v in self.selector.items()})
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        _io.write_bytes(rd / ROUND_FILE, buf.getvalue())
        self.write_copies(rd)

    def write_copies(self, rd: Path) -> None:
        write_if_changed(rd / "picks.npy", self.picks)
        if self.skipped.size or (rd / "skipped.npy").exists():
            write_if_changed(rd / "skipped.npy", self.skipped)

    @classmethod
    def load(cls, rd: Path, k: int) -> Optional["OpenRound"]:
        """The saved state of round `k` (None when none is saved). Reads the
        layout of earlier versions too (picks.npy, skipped.npy, selector.npz)."""
        path = rd / ROUND_FILE
        if path.is_file():
            f = _io.load_arrays(path, f"rounds/{k}/{ROUND_FILE}")
            need = ("round", "picks", "skipped", "given_rows", "given_labels")
            bad = [key for key in need if key not in f or f[key].dtype.kind not in "iu"]
            if bad or int(f["round"]) != k or len(f["given_rows"]) != len(f["given_labels"]):
                raise PcoresetError(f"rounds/{k}/{ROUND_FILE}: {str(path)!r} is damaged or belongs to another "
                                    f"round (fields {bad or 'round, given_rows/given_labels'})")
            sel = {key[len(_SELECTOR_PREFIX):]: v for key, v in f.items() if key.startswith(_SELECTOR_PREFIX)}
            return cls(k, f["picks"], f["skipped"], f["given_rows"], f["given_labels"],
                       f.get("pool_rows") if sel else None, sel or None)
        if not (rd / "picks.npy").is_file():
            return None
        picks = _io.load_array(rd / "picks.npy", f"rounds/{k}/picks.npy")
        skipped = _io.load_array(rd / "skipped.npy", f"rounds/{k}/skipped.npy") if (rd / "skipped.npy").is_file() \
            else np.zeros(0, dtype=np.int64)
        pool_rows, sel = None, None
        if (rd / "selector.npz").is_file():
            sel = _io.load_arrays(rd / "selector.npz", f"rounds/{k}/selector.npz")
            pool_rows = sel.pop("pool_rows", None)
            if pool_rows is None:
                raise PcoresetError(f"rounds/{k}/selector.npz lacks its pool rows; the run directory is damaged")
        return cls(k, picks, skipped, pool_rows=pool_rows, selector=sel)

    def check(self, n_rows: int, is_test: np.ndarray) -> "OpenRound":
        """Every row is a pool row of the dataset, no row twice; else PcoresetError."""
        rows = np.concatenate([self.picks, self.given_rows])
        allr = np.concatenate([rows, self.skipped])
        if allr.size and (allr.min() < 0 or allr.max() >= n_rows or is_test[allr].any()):
            raise PcoresetError(f"rounds/{self.k}: rows outside the pool ({n_rows} rows); the run directory "
                                "is damaged or belongs to another dataset")
        if len(np.unique(rows)) != len(rows) or np.isin(self.picks, self.skipped).any():
            raise PcoresetError(f"rounds/{self.k}: a row is picked twice or both picked and skipped; the run "
                                "directory is damaged")
        return self


def write_if_changed(path: Path, arr: np.ndarray) -> None:
    """Write `arr` to `path` unless the file already holds exactly it (a resume
    rewrites nothing it does not change)."""
    if path.is_file():
        try:
            old = np.load(path, allow_pickle=False)
            if old.dtype == arr.dtype and np.array_equal(old, arr):
                return
        except (ValueError, OSError, EOFError):
            pass  # damaged: written again
    _io.write_npy(path, arr)

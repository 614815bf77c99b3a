"""Incremental selection: `Selector` keeps the k-center state between calls.

People label in batches. A `Selector` holds the running minimum (every row's
distance to its nearest center) of one pool, so asking for more picks, adding
rows that were labeled out of order, excluding rows that could not be
labeled, or stopping at a coverage radius never redoes the start (each row's
nearest initial center, the most expensive part at 1% labeled).

Every continuation equals one call on the same inputs:

    sel = Selector(probs, labeled)
    a = sel.next(100); b = sel.next(50)
    # concatenate(a, b) == select(probs, labeled, 150)

    sel.add_centers(rows)    # the remaining picks are those of a fresh
                             # select(probs, labeled + picks + rows, ...)
    sel.exclude(rows)        # never picked, not centers

The state is saved as arrays only (`state_dict`, then `np.savez`), checked
against the pool on load (shape, dtype and a checksum of its values).
"""
from __future__ import annotations

import hashlib
import math
import numbers
from typing import Any, Callable, Dict, Optional, Union

import numpy as np

from . import _memory, _start, backends
from ._problem import (DTYPE_CODE, Problem, _is_torch, check_count, check_labeled, chunk_rows, make_problem,
                       to_kind)
from .backends.base import progress_callback, run_state
from .errors import InvalidInputError, InvalidTypeError, PoolExhaustedError

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

STATE_FORMAT = 1  # bump when the layout of state_dict changes


def _check_radius(r: Any, name: str = "radius") -> float:
    if isinstance(r, bool) or not isinstance(r, numbers.Real):
        if _is_torch(r) and r.ndim == 0:
            r = float(r)
        else:
            raise InvalidTypeError(f"{name} must be a number, got {r!r} ({type(r).__name__})")
    r = float(r)
    if math.isnan(r) or r < 0:
        raise InvalidInputError(f"{name} must be a distance >= 0, got {r!r}")
    return r


def _dist2_at_most(r: float) -> float:
    """The largest float64 s with sqrt(s) <= r: a squared distance d2 is <= s
    exactly when the radius the caller sees, sqrt(d2), is <= r."""
    if not math.isfinite(r):
        return math.inf
    s = r * r
    while math.sqrt(s) > r:
        s = math.nextafter(s, 0.0)
    while math.sqrt(math.nextafter(s, math.inf)) <= r:
        s = math.nextafter(s, math.inf)
    return s


def pool_checksum(problem: Problem) -> int:
    """A 63-bit checksum of the pool's stored values (blake2b of its bytes,
    read in chunks; CUDA pools are hashed on the host chunk by chunk)."""
    h = hashlib.blake2b(digest_size=8)
    x = problem.x
    n, c = problem.n, problem.c
    step = chunk_rows(n, c)
    for s in range(0, n, step):
        e = min(n, s + step)
        if _is_torch(x):
            part = x[s:e]
            if part.dtype == torch.bfloat16:
                part = part.view(torch.int16)
            h.update(part.detach().cpu().contiguous().numpy().tobytes())
        else:
            h.update(np.ascontiguousarray(x[s:e]).tobytes())
            _memory.release_rows(x, s, e)
    return int(np.frombuffer(h.digest(), dtype="<i8")[0]) & ((1 << 63) - 1)


class Selector:
    """k-center greedy selection that continues across calls.

    Args:
        probs: (N, C) pool, as for `pcoreset.select` (probabilities, or
            logits with from_logits=True); NumPy, torch (CPU or CUDA) or a
            .npy path. Borrowed, not copied: keep it unchanged while the
            Selector lives.
        labeled_idx: rows already labeled (initial centers), or None.
        centers: (M, C) initial center vectors that are not pool rows.
        from_logits, temperature, backend, prune, num_threads, progress,
        simplex_atol: as for `pcoreset.select`.

    The read-only properties `picks`, `radii`, `radius`, `n_centers`,
    `n_available` and `excluded` describe the selection so far.

    Raises:
        InvalidInputError, InvalidTypeError: bad input, as for `pcoreset.select`.
        BackendUnavailableError: the chosen backend keeps no state for this input.
    """

    def __init__(self, probs, labeled_idx=None, *, centers=None, from_logits: bool = False,
                 temperature: float = 1.0, backend: str = "auto", prune: bool = True, num_threads: int = 0,
                 progress: Union[bool, Callable[[int], None], None] = None,
                 simplex_atol: Optional[float] = None, _state: Optional[Dict[str, np.ndarray]] = None):
        problem = make_problem(probs, labeled_idx, 0, simplex=True, from_logits=from_logits,
                               temperature=temperature, prune=prune, num_threads=num_threads,
                               progress=progress, simplex_atol=simplex_atol, centers=centers)
        self._setup(problem, backend, _state)

    def _setup(self, problem: Problem, backend: str, saved: Optional[Dict[str, np.ndarray]]) -> None:
        self._problem = problem
        self._backend = backends.choose_stateful(problem, backend)
        self._state = self._backend.make_state(problem)
        self._picks: list = []
        self._radii2: list = []
        self._added = np.zeros(0, dtype=np.int64)
        self._excluded = np.zeros(0, dtype=np.int64)
        self._pending: Optional[int] = None  # last pick, not yet a center in the kernel
        # rows that are centers or may never be picked
        self._taken = np.zeros(problem.n, dtype=bool)
        self._taken[problem.labeled] = True
        self._center_rows = np.zeros(problem.n, dtype=bool)
        self._center_rows[problem.labeled] = True
        if saved is None:
            _start.start_state(self._backend, self._state, problem)
        else:
            self._restore(saved)

    # ---- read-only views -------------------------------------------------------

    @property
    def backend(self) -> str:
        """The backend that holds the state ("cpu", "cuda", "faiss", "torch")."""
        return self._backend.name

    @property
    def picks(self):
        """Rows picked so far, in order (the kind of array the pool is)."""
        return self._out(np.asarray(self._picks, dtype=np.int64), np.int64)

    @property
    def radii(self):
        """Each pick's distance to its nearest center when it was picked."""
        return self._sqrt(self._out(np.asarray(self._radii2, dtype=np.float64), np.float64))

    @staticmethod
    def _sqrt(radii2):
        # as select() does it, so both give the same bits
        return radii2.sqrt() if _is_torch(radii2) else np.sqrt(radii2)

    @property
    def excluded(self) -> np.ndarray:
        """Rows excluded so far (NumPy int64)."""
        return self._excluded.copy()

    @property
    def n_centers(self) -> int:
        """Centers: labeled rows, center vectors, added rows and picks (not excluded ones)."""
        return int(self._state.num_centers) + (1 if self._pending is not None else 0)

    @property
    def n_available(self) -> int:
        """Rows that can still be picked."""
        return int(self._problem.n - np.count_nonzero(self._taken))

    @property
    def radius(self) -> float:
        """The current coverage radius: the largest distance of a row that can
        still be picked to its nearest center (+inf before any center, 0.0
        when no row is left)."""
        if self.n_centers == 0:
            return math.inf
        self._push_pending()
        row, d2 = self._state.current_best()
        return 0.0 if row < 0 else math.sqrt(max(float(d2), 0.0))

    def _out(self, values: np.ndarray, dtype):
        return to_kind(values, self._problem, dtype)

    # ---- picking ----------------------------------------------------------------

    def _push_pending(self) -> None:
        if self._pending is not None:
            p, self._pending = self._pending, None
            self._state.push_row(p)

    def _run(self, k: int, stop_dist2: float = -1.0):
        self._push_pending()
        callback, close = progress_callback(self._problem, k) if k else (None, lambda: None)
        try:
            picks, radii2 = run_state(self._state, k, callback, stop_dist2)
        finally:
            close()
        picks = np.asarray(picks, dtype=np.int64)
        radii2 = np.asarray(radii2, dtype=np.float64)
        if picks.size:
            self._taken[picks] = True
            self._center_rows[picks] = True
            self._picks.extend(picks.tolist())
            self._radii2.extend(radii2.tolist())
            # the kernels leave the last pick of a run that ended on its
            # budget pending; a run that stopped at the radius pushed it
            if picks.size == k:
                self._pending = int(picks[-1])
        return self._out(picks, np.int64), self._sqrt(self._out(radii2, np.float64))

    def next(self, k: int):
        """The next `k` picks (int64, in order), as the same kind of array as
        the pool: exactly what one `select` of the total budget would add.

        Raises InvalidInputError for a negative k, PoolExhaustedError when k
        exceeds the rows left."""
        k = check_count(k, "k")
        if k > self.n_available:
            raise PoolExhaustedError(self.n_available, k, what="k")
        return self._run(k)[0]

    def until(self, radius: float, max_picks: Optional[int] = None):
        """Pick while the coverage radius is above `radius`: stops before the
        first pick whose distance to its nearest center is <= radius (so
        afterwards `self.radius <= radius`), or after `max_picks` picks, or
        when no row is left. Returns (picks, radii) of this call."""
        r = _check_radius(radius)
        left = self.n_available
        m = left if max_picks is None else min(check_count(max_picks, "max_picks"), left)
        return self._run(m, _dist2_at_most(r))

    # ---- changing the centers ------------------------------------------------------

    def _rows(self, rows, name: str) -> np.ndarray:
        return check_labeled(rows, self._problem.n, self._problem.device, name=name)

    def add_centers(self, rows) -> None:
        """Pool rows become centers (e.g. rows labeled out of order). Rows that
        are centers already (labeled, added or picked) are accepted and
        ignored; an excluded row may become a center. The remaining picks are
        those of a fresh select with these rows labeled."""
        rows = self._rows(rows, "rows")
        rows = rows[~self._center_rows[rows]]
        if rows.size == 0:
            return
        self._push_pending()
        # Few rows: one fused step each. Many: the start's machinery (exact
        # pass, or certified candidates for large products) over the new ones.
        if rows.size <= 32:
            for r in rows.tolist():
                self._state.push_row(int(r))
        else:
            _start.add_rows(self._backend, self._state, self._problem, rows)
        self._added = np.concatenate([self._added, rows])
        self._taken[rows] = True
        self._center_rows[rows] = True
        self._excluded = self._excluded[~np.isin(self._excluded, rows)]

    def exclude(self, rows) -> None:
        """Rows that may never be picked and are not centers (a person could
        not label them). Picks among them stop being centers: the state is
        rebuilt as a fresh select with the other centers. Labeled rows cannot
        be excluded."""
        rows = self._rows(rows, "rows")
        labeled = rows[np.isin(rows, self._problem.labeled)]
        if labeled.size:
            raise InvalidInputError(f"rows has a labeled row: {int(labeled[0])} (labeled rows cannot be excluded)")
        rows = rows[~np.isin(rows, self._excluded)]
        if rows.size == 0:
            return
        self._excluded = np.concatenate([self._excluded, rows])
        centers = rows[self._center_rows[rows]]
        self._taken[rows] = True
        if centers.size == 0:
            self._state.exclude(rows)
            return
        # centers leave: rebuild the running minimum without them
        self._center_rows[centers] = False
        self._added = self._added[~np.isin(self._added, centers)]
        self._pending = None
        self._rebuild()

    def _rebuild(self) -> None:
        from dataclasses import replace

        keep = np.flatnonzero(self._center_rows)
        problem = replace(self._problem, labeled=keep)
        self._state = self._backend.make_state(problem)
        _start.start_state(self._backend, self._state, problem)
        if self._excluded.size:
            self._state.exclude(self._excluded)

    # ---- saving ------------------------------------------------------------------

    def state_dict(self) -> Dict[str, np.ndarray]:
        """The whole state as NumPy arrays (no pickling needed: save it with
        np.savez and load with allow_pickle=False). Restore it with
        `Selector.from_state_dict(probs, state)` on the same pool."""
        self._push_pending()
        mind, nearest, centers = self._state.export_state()
        p = self._problem
        return {
            "format": np.array(STATE_FORMAT, dtype=np.int64),
            "shape": np.array([p.n, p.c], dtype=np.int64),
            "dtype": np.array(DTYPE_CODE[p.dtype], dtype=np.int64),
            "checksum": np.array(pool_checksum(p), dtype=np.int64),
            "from_logits": np.array(p.from_logits),
            "temperature": np.array(p.temperature, dtype=np.float64),
            "labeled": p.labeled.copy(),
            "center_vectors": (p.centers if p.centers is not None else np.zeros((0, p.c))).astype(np.float64),
            "added": self._added.copy(),
            "excluded": self._excluded.copy(),
            "picks": np.asarray(self._picks, dtype=np.int64),
            "radii2": np.asarray(self._radii2, dtype=np.float64),
            "mind": np.asarray(mind, dtype=np.float64),
            "nearest": np.asarray(nearest, dtype=np.int64),
            "centers": np.asarray(centers, dtype=np.float64),
        }

    @classmethod
    def from_state_dict(cls, probs, state: Dict[str, Any], *, backend: str = "auto", prune: bool = True,
                        num_threads: int = 0, progress=None, simplex_atol: Optional[float] = None) -> "Selector":
        """A Selector that continues exactly where `state` (from state_dict)
        stopped, on the same pool. Raises InvalidInputError when the state is
        malformed or was saved for another pool (shape, dtype or checksum)."""
        sd = _check_state(state)
        codes = {v: k for k, v in DTYPE_CODE.items()}
        ctr = sd["center_vectors"]
        sel = cls.__new__(cls)
        # validate the pool against the state before anything expensive
        probe = make_problem(probs, None, 0, simplex=True, from_logits=bool(sd["from_logits"]),
                             temperature=float(sd["temperature"]), prune=prune, num_threads=num_threads,
                             progress=progress, simplex_atol=simplex_atol, check_finite=False)
        n, c = (int(v) for v in sd["shape"])
        if (probe.n, probe.c) != (n, c):
            raise InvalidInputError(f"state was saved for a pool of shape ({n}, {c}), but probs has shape "
                                    f"({probe.n}, {probe.c})")
        want_dtype = codes.get(int(sd["dtype"]), "?")
        if probe.dtype != want_dtype:
            raise InvalidInputError(f"state was saved for a {want_dtype} pool, but probs is {probe.dtype}")
        if pool_checksum(probe) != int(sd["checksum"]):
            raise InvalidInputError("state was saved for another pool: probs has the same shape and dtype "
                                    "but different values (checksum mismatch)")
        from dataclasses import replace

        labeled = check_labeled(sd["labeled"], n, probe.device, name="state['labeled']")
        if ctr.ndim != 2 or ctr.shape[1] != c or not np.all(np.isfinite(ctr)):
            raise InvalidInputError(f"state['center_vectors'] must be finite with shape (M, {c}), got {ctr.shape}")
        problem = replace(probe, labeled=labeled, centers=ctr if ctr.shape[0] else None)
        sel._setup(problem, backend, sd)
        return sel

    def _restore(self, sd: Dict[str, np.ndarray]) -> None:
        n = self._problem.n
        self._state.load_state(sd["mind"], sd["nearest"], sd["centers"])
        self._picks = sd["picks"].tolist()
        self._radii2 = sd["radii2"].tolist()
        self._added = sd["added"].copy()
        self._excluded = sd["excluded"].copy()
        for rows in (sd["picks"], self._added):
            self._taken[rows] = True
            self._center_rows[rows] = True
        self._taken[self._excluded] = True
        self._center_rows[self._excluded] = False
        if not (self._state.num_centers == self._problem.n_centers + self._added.size
                + int(np.count_nonzero(~np.isin(sd["picks"], self._excluded)))):
            raise InvalidInputError(f"state is inconsistent: {self._state.num_centers} centers in the running "
                                    f"minimum for {n} rows do not match its labeled, added and picked rows")


_STATE_KEYS = {
    "format": (np.integer, 0), "shape": (np.integer, 1), "dtype": (np.integer, 0), "checksum": (np.integer, 0),
    "from_logits": (np.bool_, 0), "temperature": (np.floating, 0), "labeled": (np.integer, 1),
    "center_vectors": (np.floating, 2), "added": (np.integer, 1), "excluded": (np.integer, 1),
    "picks": (np.integer, 1), "radii2": (np.floating, 1), "mind": (np.floating, 1), "nearest": (np.integer, 1),
    "centers": (np.floating, 2),
}


def _check_state(state: Any) -> Dict[str, np.ndarray]:
    if not hasattr(state, "keys"):
        raise InvalidTypeError(f"state must be a dict of arrays (from Selector.state_dict), got "
                               f"{type(state).__name__}")
    missing = [k for k in _STATE_KEYS if k not in state]
    if missing:
        raise InvalidInputError(f"state is missing {missing}; is it from Selector.state_dict?")
    out = {}
    for key, (kind, ndim) in _STATE_KEYS.items():
        a = np.asarray(state[key])
        if a.dtype == object or not np.issubdtype(a.dtype, kind) or a.ndim != ndim:
            raise InvalidInputError(f"state[{key!r}] has dtype {a.dtype} and shape {a.shape}; expected "
                                    f"{np.dtype(kind).name if kind is not np.integer else 'an integer'} "
                                    f"array of {ndim} dimension(s)")
        out[key] = a
    if int(out["format"]) != STATE_FORMAT:
        raise InvalidInputError(f"state has format {int(out['format'])}; this pcoreset reads format {STATE_FORMAT}")
    n = int(out["shape"][0])
    if out["mind"].shape != (n,) or out["nearest"].shape != (n,):
        raise InvalidInputError(f"state['mind'] and state['nearest'] must have {n} values (the pool's rows)")
    if out["picks"].shape != out["radii2"].shape:
        raise InvalidInputError("state['picks'] and state['radii2'] have different lengths")
    return out

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
                       radii_to_kind, to_kind)
from .backends.base import progress_callback, run_state
from .errors import InvalidInputError, InvalidTypeError, PoolExhaustedError

from ._problem import torch  # noqa: E402  (imported on first use: torch pools only)

STATE_FORMAT = 2  # bump when the layout of state_dict changes (2: a checksum of the state's arrays)


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


class UntilResult(tuple):
    """What `Selector.until` returns: the tuple (picks, radii) of the call,
    unpacked as before, with `reached`: True when the coverage radius asked
    for was reached (the Selector's radius is now <= it), False when
    `max_picks` ended the call first."""

    reached: bool

    def __new__(cls, picks, radii, reached: bool) -> "UntilResult":
        out = super().__new__(cls, (picks, radii))
        out.reached = bool(reached)
        return out

    @property
    def picks(self):
        return self[0]

    @property
    def radii(self):
        return self[1]

    def __repr__(self) -> str:
        return f"UntilResult(picks={self[0]!r}, radii={self[1]!r}, reached={self.reached})"


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

    Interruption keeps every finished step. When `next` or `until` is
    interrupted (Ctrl-C, or any exception, e.g. one raised by a `progress`
    callback or an out-of-memory error inside a step), the exception
    propagates and the Selector is exactly the one an uninterrupted call for
    the steps that finished would have left: the t picks this call made
    before the exception end `picks` (their radii end `radii`), they are
    centers, and a step that was under way is either complete or not done
    at all. So `state_dict()` saves it, and `next(k - t)` continues the same
    sequence as one uninterrupted `next(k)`. (Backends whose state cannot
    report the picks of an interrupted run roll the call back instead: no
    pick of it is kept, and the state is rebuilt from the centers before
    it.) `select` and `kcenter_greedy` keep no state: an interrupted call
    returns nothing and leaves its inputs unchanged.

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
        # (centers before, RunLog) of a run whose picks are not recorded yet
        self._inflight = None
        self._stale = False  # the kernel holds centers of a rolled-back run: rebuild
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
        return radii_to_kind(np.asarray(self._radii2, dtype=np.float64), self._problem)

    @property
    def excluded(self) -> np.ndarray:
        """Rows excluded so far (NumPy int64)."""
        return self._excluded.copy()

    @property
    def n_centers(self) -> int:
        """Centers: labeled rows, center vectors, added rows and picks (not excluded ones)."""
        self._sync()
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
        self._sync()
        self._push_pending()
        row, d2 = self._state.current_best()
        return 0.0 if row < 0 else math.sqrt(max(float(d2), 0.0))

    def _out(self, values: np.ndarray, dtype):
        return to_kind(values, self._problem, dtype)

    # ---- picking ----------------------------------------------------------------

    def _push_pending(self) -> None:
        if self._pending is None:
            return
        # pushed unless a push interrupted after the kernel took it already
        # did it: the kernel holds every center row but the pending one
        n_vectors = 0 if self._problem.centers is None else int(self._problem.centers.shape[0])
        if int(self._state.num_centers) < int(np.count_nonzero(self._center_rows)) + n_vectors:
            self._state.push_row(self._pending)
        self._pending = None

    # Interruption (see the class docstring): a run's picks are recorded by
    # _settle, from what the run returned or, when it raised, from what the
    # state says it picked (RunLog). Every pick but possibly the last is a
    # center in the kernel; the number of centers tells whether the last one
    # is (a run that stopped at the radius or was interrupted after its last
    # step) or is still pending (the budget ended the run). A state that
    # cannot say what it picked is rolled back: the Selector is rebuilt from
    # the centers it knows. _settle is idempotent and its bookkeeping is
    # committed by plain stores at its end, so a second Ctrl-C inside it
    # leaves the run to be settled at the next call.

    def _sync(self) -> None:
        """Record an interrupted run; rebuild a rolled-back state."""
        self._settle()
        if self._stale:
            self._rebuild()
            self._stale = False

    def _settle(self, done=None):
        """Record the picks of the run in flight (`done`: what it returned;
        None: it raised). Returns (picks, radii2) recorded, or None."""
        inflight = self._inflight
        if inflight is None:
            return None
        before, log = inflight
        got = done if done is not None else log.result()
        pending = None
        if got is not None:
            picks = np.asarray(got[0], dtype=np.int64)
            radii2 = np.asarray(got[1], dtype=np.float64)
            if done is None and picks.size and self._picks[-picks.size:] == picks.tolist():
                # interrupted before the state's run began: its log is still
                # the run before's (a new pick is never an earlier one)
                picks, radii2 = picks[:0], radii2[:0]
            grew = int(self._state.num_centers) - before
            if picks.size != radii2.size or grew not in (picks.size, picks.size - 1) or grew < 0:
                got = None  # the state and its log disagree: roll back
            elif grew == picks.size - 1:
                pending = int(picks[-1])
        if got is None:
            self._stale = True
            self._inflight = None
            return None
        self._taken[picks] = True  # idempotent
        self._center_rows[picks] = True
        all_picks = self._picks + picks.tolist()
        all_radii2 = self._radii2 + radii2.tolist()
        self._picks = all_picks
        self._radii2 = all_radii2
        self._pending = pending
        self._inflight = None
        return picks, radii2

    def _run(self, k: int, stop_dist2: float = -1.0):
        self._sync()
        self._push_pending()
        from .backends.base import RunLog

        callback, close = progress_callback(self._problem, k) if k else (None, lambda: None)
        self._inflight = (int(self._state.num_centers), RunLog())
        try:
            done = run_state(self._state, k, callback, stop_dist2, self._inflight[1])
            recorded = self._settle(done)
            if recorded is None:
                raise RuntimeError("pcoreset: the selection state does not match the picks its run returned; "
                                   "the call was rolled back")
            picks, radii2 = recorded
        except BaseException:
            self._settle()
            raise
        finally:
            close()
        return self._out(picks, np.int64), radii_to_kind(radii2, self._problem)

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
        when no row is left. Returns (picks, radii) of this call, a tuple
        whose `reached` attribute says whether the radius was reached
        (`self.radius <= radius` afterwards; False when `max_picks` ended
        the call first)."""
        r = _check_radius(radius)
        left = self.n_available
        m = left if max_picks is None else min(check_count(max_picks, "max_picks"), left)
        picks, radii = self._run(m, _dist2_at_most(r))
        return UntilResult(picks, radii, self.radius <= r)

    # ---- changing the centers ------------------------------------------------------

    def _rows(self, rows, name: str) -> np.ndarray:
        return check_labeled(rows, self._problem.n, self._problem.device, name=name)

    def add_centers(self, rows) -> None:
        """Pool rows become centers (e.g. rows labeled out of order). Rows that
        are centers already (labeled, added or picked) are accepted and
        ignored; an excluded row may become a center. The remaining picks are
        those of a fresh select with these rows labeled."""
        rows = self._rows(rows, "rows")
        self._sync()
        rows = rows[~self._center_rows[rows]]
        if rows.size == 0:
            return
        self._push_pending()
        self._stale = True  # until the rows are in: an interruption rebuilds without them
        # Few rows: one fused step each. Many: the start's machinery (exact
        # pass, or certified candidates for large products) over the new ones.
        if rows.size <= 32:
            for r in rows.tolist():
                self._state.push_row(int(r))
        else:
            _start.add_rows(self._backend, self._state, self._problem, rows)
        self._added = np.concatenate([self._added, rows])
        self._taken[rows] = True
        self._excluded = self._excluded[~np.isin(self._excluded, rows)]
        self._center_rows[rows] = True
        self._stale = False

    def exclude(self, rows) -> None:
        """Rows that may never be picked and are not centers (a person could
        not label them). Picks among them stop being centers: the state is
        rebuilt as a fresh select with the other centers. Labeled rows cannot
        be excluded."""
        rows = self._rows(rows, "rows")
        self._sync()
        labeled = rows[np.isin(rows, self._problem.labeled)]
        if labeled.size:
            raise InvalidInputError(f"rows has a labeled row: {int(labeled[0])} (labeled rows cannot be excluded)")
        rows = rows[~np.isin(rows, self._excluded)]
        if rows.size == 0:
            return
        self._stale = True  # until the state agrees: an interruption rebuilds it
        self._excluded = np.concatenate([self._excluded, rows])
        centers = rows[self._center_rows[rows]]
        self._taken[rows] = True
        if centers.size == 0:
            self._state.exclude(rows)
            self._stale = False
            return
        # centers leave: rebuild the running minimum without them
        self._center_rows[centers] = False
        self._added = self._added[~np.isin(self._added, centers)]
        self._pending = None
        self._rebuild()
        self._stale = False

    def _rebuild(self) -> None:
        from dataclasses import replace

        keep = np.flatnonzero(self._center_rows)
        problem = replace(self._problem, labeled=keep)
        state = self._backend.make_state(problem)
        _start.start_state(self._backend, state, problem)
        if self._excluded.size:
            state.exclude(self._excluded)
        self._state = state
        self._pending = None  # a center of the new state

    # ---- saving ------------------------------------------------------------------

    def state_dict(self) -> Dict[str, np.ndarray]:
        """The whole state as NumPy arrays (no pickling needed: save it with
        np.savez and load with allow_pickle=False). Restore it with
        `Selector.from_state_dict(probs, state)` on the same pool."""
        self._sync()
        self._push_pending()
        mind, nearest, centers = self._state.export_state()
        p = self._problem
        out = {
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
        out["state_checksum"] = np.array(state_checksum(out), dtype=np.int64)
        return out

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
        _check_zero_distances(probe, sd)
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
        n_vectors = 0 if self._problem.centers is None else int(self._problem.centers.shape[0])
        if self._state.num_centers != int(np.count_nonzero(self._center_rows)) + n_vectors:
            raise InvalidInputError(f"state is inconsistent: {self._state.num_centers} centers in the running "
                                    f"minimum for {n} rows do not match its labeled, added and picked rows")


_STATE_KEYS = {
    "format": (np.integer, 0), "shape": (np.integer, 1), "dtype": (np.integer, 0), "checksum": (np.integer, 0),
    "from_logits": (np.bool_, 0), "temperature": (np.floating, 0), "labeled": (np.integer, 1),
    "center_vectors": (np.floating, 2), "added": (np.integer, 1), "excluded": (np.integer, 1),
    "picks": (np.integer, 1), "radii2": (np.floating, 1), "mind": (np.floating, 1), "nearest": (np.integer, 1),
    "centers": (np.floating, 2), "state_checksum": (np.integer, 0),
}


def _check_zero_distances(problem: Problem, sd: Dict[str, np.ndarray]) -> None:
    """A row at distance 0 from its nearest center must be a copy of it (an
    exact duplicate of a center row): the pool's values say so."""
    from ._problem import default_values

    rows = np.flatnonzero(sd["mind"] == 0)
    if rows.size == 0:
        return
    vals = default_values(problem)(rows)
    if hasattr(vals, "detach"):
        vals = vals.detach().cpu().double().numpy()
    vals = np.asarray(vals, dtype=np.float64)
    d2 = ((vals - sd["centers"][sd["nearest"][rows]]) ** 2).sum(axis=1)
    # the kernel's rounding of the same rows (a softmax) differs by far less
    far = np.flatnonzero(d2 > 1e-6 * (1.0 + (vals ** 2).sum(axis=1)))
    if far.size:
        i = int(rows[far[0]])
        raise _bad("mind", f"is 0 at row {i}, which is at distance {float(np.sqrt(d2[far[0]])):.3g} from its "
                           f"nearest center")


def state_checksum(state: Dict[str, Any]) -> int:
    """A 63-bit checksum (blake2b) of a state's arrays: names, dtypes,
    shapes and values, in a fixed order. An edited field, or fields mixed
    from two saves, no longer match it."""
    h = hashlib.blake2b(digest_size=8)
    for key in sorted(_STATE_KEYS):
        if key == "state_checksum":
            continue
        a = np.ascontiguousarray(state[key])
        h.update(f"{key}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    return int(np.frombuffer(h.digest(), dtype="<i8")[0]) & ((1 << 63) - 1)


def _bad(key: str, why: str) -> InvalidInputError:
    return InvalidInputError(f"state[{key!r}] {why}; the state is damaged or was edited "
                             f"(save it again with Selector.state_dict)")


def _check_state(state: Any) -> Dict[str, np.ndarray]:
    """The state's arrays, each checked (dtype, shape, range, finiteness,
    consistency with the others, then the checksum over all of them): a
    damaged field is an InvalidInputError that names it."""
    if not hasattr(state, "keys"):
        raise InvalidTypeError(f"state must be a dict of arrays (from Selector.state_dict), got "
                               f"{type(state).__name__}")
    if "format" in state:
        fmt = np.asarray(state["format"])
        if fmt.ndim != 0 or fmt.dtype.kind not in "iu":
            raise _bad("format", f"must be an integer, got dtype {fmt.dtype} and shape {fmt.shape}")
        if int(fmt) != STATE_FORMAT:
            older = " (saved by an older pcoreset)" if int(fmt) < STATE_FORMAT else ""
            raise InvalidInputError(f"state has format {int(fmt)}{older}; this pcoreset reads format "
                                    f"{STATE_FORMAT} only: make a new Selector on the pool instead")
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
    if out["shape"].shape != (2,):
        raise _bad("shape", f"must hold two values (rows, columns), got {out['shape'].tolist()}")
    n, c = (int(v) for v in out["shape"])
    if n < 0 or c < 1:
        raise _bad("shape", f"must be (rows >= 0, columns >= 1), got ({n}, {c})")
    if int(out["dtype"]) not in DTYPE_CODE.values():
        raise _bad("dtype", f"is {int(out['dtype'])}, not one of the codes {sorted(DTYPE_CODE.values())}")
    t = float(out["temperature"])
    if not (math.isfinite(t) and t > 0):
        raise _bad("temperature", f"must be a finite number > 0, got {t!r}")
    rows = {}
    for key in ("labeled", "added", "excluded", "picks"):
        a = out[key].astype(np.int64)
        if a.size and (int(a.min()) < 0 or int(a.max()) >= n):
            bad = int(a.min()) if int(a.min()) < 0 else int(a.max())
            raise _bad(key, f"has a row out of range: {bad} (the pool has {n} rows)")
        if np.unique(a).size != a.size:
            raise _bad(key, "has a row twice")
        rows[key] = a
    for key in ("excluded", "added", "picks"):
        both = np.intersect1d(rows["labeled"], rows[key])
        if both.size:
            raise _bad(key, f"has a labeled row: {int(both[0])}")
    both = np.intersect1d(rows["added"], rows["excluded"])
    if both.size:
        raise _bad("excluded", f"has a row that is also an added center: {int(both[0])}")
    r2 = out["radii2"]
    if r2.shape != rows["picks"].shape:
        raise _bad("radii2", f"has {r2.size} values for {rows['picks'].size} picks")
    if np.isnan(r2).any() or (r2 < 0).any():
        raise _bad("radii2", "has a NaN or negative squared radius")
    for key in ("center_vectors", "centers"):
        a = out[key]
        if a.shape[1] != c:
            raise _bad(key, f"has shape {a.shape}; expected (M, {c})")
        if not np.isfinite(a).all():
            raise _bad(key, "has a NaN or inf value")
    center_rows = np.union1d(np.union1d(rows["labeled"], rows["added"]),
                             np.setdiff1d(rows["picks"], rows["excluded"]))
    k = center_rows.size + out["center_vectors"].shape[0]
    if out["centers"].shape[0] != k:
        raise _bad("centers", f"has {out['centers'].shape[0]} centers; its labeled, added and picked rows and "
                              f"center vectors make {k}")
    mind, nearest = out["mind"], out["nearest"]
    if mind.shape != (n,) or nearest.shape != (n,):
        raise _bad("mind" if mind.shape != (n,) else "nearest", f"must have {n} values (the pool's rows)")
    taken = np.zeros(n, dtype=bool)
    for key in ("labeled", "added", "excluded", "picks"):
        taken[rows[key]] = True
    if np.isnan(mind).any():
        raise _bad("mind", "has a NaN value")
    wrong = np.flatnonzero((mind < 0) != taken)
    if wrong.size:
        i = int(wrong[0])
        why = "is a center or excluded" if taken[i] else "is neither a center nor excluded"
        raise _bad("mind", f"has {float(mind[i])!r} at row {i}, which {why}")
    if k and not np.isfinite(mind[~taken]).all():
        raise _bad("mind", "has an infinite distance to the nearest center")
    if not k and (mind[~taken] != np.inf).any():
        raise _bad("mind", "has a finite distance to a nearest center, but the state has no center")
    if nearest.size and (int(nearest.min()) < -1 or int(nearest.max()) >= k):
        raise _bad("nearest", f"has a center index outside [-1, {k})")
    if k and (nearest[~taken] < 0).any():
        raise _bad("nearest", "has a row without a nearest center")
    if int(out["checksum"]) < 0:
        raise _bad("checksum", "is negative")
    if state_checksum(out) != int(out["state_checksum"]):
        raise InvalidInputError("state['state_checksum'] does not match the state's arrays: a field was "
                                "edited, or the fields come from different saves")
    return out

"""The state protocol every backend implements, the one step loop, and
progress reporting.

A backend is a `Backend` (how to make a state for a validated `Problem`, why
it cannot, what it allocates) and a `KCenterState` (the running minimum of
one pool: every row's squared distance to its nearest center). Everything
above this layer (the start, `select`, `Selector`, distributed selection)
talks to backends only through these two classes; nothing here imports a
layer above (see docs/guide/architecture.rst).
"""
from __future__ import annotations

import abc
from typing import Callable, Dict, Optional, Tuple

import numpy as np

from .._memory import MEAN_BLOCK_ROWS  # noqa: F401  (part of the kernels' contract)
from .._problem import Problem, Values, default_values

# Largest N * M * C (rows x initial centers x columns) whose start runs as the
# kernel's exact direct pass; larger starts take the certified candidates of
# pcoreset._start. A backend with a cheaper exact pass sets its own. A
# backend may also bound N * M (exact_max_pairs: a pass whose cost per pair
# of row and center hardly shrinks with C).
EXACT_MAX_WORK = 2e9
EXACT_MAX_PAIRS = float("inf")

Progress = Optional[Callable[[int], None]]
Picks = Tuple[np.ndarray, np.ndarray]

# What code outside the kernels must compute exactly as they do: distributed
# selection rebuilds their pool mean (blocks of MEAN_BLOCK_ROWS) and their
# argmax key across ranks; tests check both against the kernel.
#: a packed key holds global row indices below this
KEY_INDEX_LIMIT = 0xFFFFFFFF


def pack_key(dist2: float, row: int) -> int:
    """The kernels' argmax key: the float32 bits of dist2 (order-preserving
    for dist2 >= 0) above the inverted row index, so that the larger key is
    the larger distance and, on equal distances, the lower row."""
    bits = int(np.float32(dist2).view(np.uint32))
    return (bits << 32) | (KEY_INDEX_LIMIT - int(row))


def unpack_key(key: int) -> Tuple[int, float]:
    """(row, dist2) of a key made by pack_key."""
    key = int(key)
    return KEY_INDEX_LIMIT - (key & KEY_INDEX_LIMIT), float(np.uint32(key >> 32).view(np.float32))


class KCenterState(abc.ABC):
    """The running minimum of one pool, between calls.

    Rows are int64 indices; vectors are float64 (C,) or (M, C) arrays. A
    "taken" row (labeled, picked, excluded) is never picked again. The C++
    state (`pcoreset._C.KCenterState`) implements the same methods and is
    registered as a virtual subclass.

    Initial centers (the start):
      seed_rows(rows): pool rows become centers, each row's nearest one found
        by an exact pass; seed_rows_with_candidates(rows, cand): the same,
        searching only cand[i] ((N, k) indices into rows, -1 = none), the
        distances recomputed exactly; seed_vectors / seed_vectors_with_candidates:
        the same for center vectors that are not pool rows.
    Steps:
      push_row(row) / push_center(vector): one more center; returns
        current_best() after it. current_best(): (row, dist2) of the farthest
        eligible row, (-1, 0.0) when none is left. take(row), exclude(rows):
        rows become ineligible without becoming centers.
      run(budget, progress, stop_dist2): `budget` picks; the last one is left
        pending (not pushed) when the budget ends the run.
      last_run() -> (picks, radii2) of the latest run, also of one that raised
        (Ctrl-C, a progress callback): every pick but possibly the last is a
        center (num_centers tells), since a step is all-or-nothing. Without
        it, pcoreset.Selector rolls an interrupted run back.
    Arrays:
      export_state() -> (mind with -1 for taken rows, nearest, centers);
      load_state(mind, nearest, centers); min_dist2(); stats().
    """

    #: run() takes stop_dist2 itself (otherwise run_state steps one pick at a time)
    supports_stop = True

    @property
    @abc.abstractmethod
    def num_centers(self) -> int: ...

    @abc.abstractmethod
    def seed_rows(self, rows) -> None: ...

    @abc.abstractmethod
    def seed_rows_with_candidates(self, rows, cand) -> None: ...

    @abc.abstractmethod
    def seed_vectors(self, vectors) -> None: ...

    @abc.abstractmethod
    def seed_vectors_with_candidates(self, vectors, cand) -> None: ...

    @abc.abstractmethod
    def take(self, row: int) -> None: ...

    @abc.abstractmethod
    def exclude(self, rows) -> None: ...

    @abc.abstractmethod
    def push_row(self, row: int) -> Tuple[int, float]: ...

    @abc.abstractmethod
    def push_center(self, vector) -> Tuple[int, float]: ...

    @abc.abstractmethod
    def current_best(self) -> Tuple[int, float]: ...

    @abc.abstractmethod
    def export_state(self): ...

    @abc.abstractmethod
    def load_state(self, mind, nearest, centers) -> None: ...

    @abc.abstractmethod
    def min_dist2(self) -> np.ndarray: ...

    @abc.abstractmethod
    def stats(self) -> dict: ...

    def first_pick(self) -> Tuple[int, float]:
        """(row, +inf): the first pick when there is no center yet (the
        eligible row farthest from the pool mean). Needed by the default run."""
        raise NotImplementedError(f"{type(self).__name__} runs its own loop")

    def run(self, budget: int, progress: Progress = None, stop_dist2: float = -1.0) -> Picks:
        """The step loop: `budget` picks from the current state, the last one
        not pushed; stops before a pick whose squared radius is <= stop_dist2
        when that is >= 0. States written in Python use it as it is; the C++
        and CUDA states run the same loop in their kernels.

        The picks are logged on the state as they are made (last_run()), so
        those of a run that raised can be recovered; push_row must be
        all-or-nothing, so every logged pick but possibly the last is a center."""
        picks, radii2 = [], []
        self._run_log = (picks, radii2)
        best = self.first_pick() if self.num_centers == 0 else self.current_best()
        for t in range(int(budget)):
            p, r2 = best
            if p < 0:
                raise RuntimeError(f"pcoreset: pool exhausted inside the {type(self).__name__}")
            if stop_dist2 >= 0 and r2 <= stop_dist2:
                break
            radii2.append(r2)  # radius first: a pick is logged once both are
            picks.append(p)
            if t + 1 == budget:
                break
            best = self.push_row(p)
            if progress is not None:
                progress(t + 1)
        if progress is not None:
            progress(len(picks))
        return np.asarray(picks, dtype=np.int64), np.asarray(radii2, dtype=np.float64)

    def last_run(self) -> Picks:
        """(picks, radii2) that run() logged for the latest run, also for one
        that raised."""
        picks, radii2 = self.__dict__.get("_run_log", ([], []))
        m = len(picks)
        return np.asarray(picks, dtype=np.int64), np.asarray(radii2[:m], dtype=np.float64)


class RunLog:
    """What a run_state call picked, kept as it goes so that the caller can
    recover the picks of a run that raised (Ctrl-C, a progress callback):
    `result()` is (picks, radii2), or None when the state cannot tell (a
    state without last_run(); the caller then rolls the run back)."""

    def __init__(self) -> None:
        self.picks: list = []
        self.radii2: list = []
        self.state = None  # set when the state's own run() made the picks

    def result(self):
        if self.state is not None:
            last_run = getattr(self.state, "last_run", None)
            if last_run is None:
                return None
            picks, radii2 = last_run()
            return np.asarray(picks, dtype=np.int64), np.asarray(radii2, dtype=np.float64)
        m = len(self.picks)
        return np.asarray(self.picks, dtype=np.int64), np.asarray(self.radii2[:m], dtype=np.float64)


def run_state(state: KCenterState, budget: int, progress: Progress = None, stop_dist2: float = -1.0,
              log: Optional["RunLog"] = None) -> Picks:
    """state.run(budget) with an optional stop radius: stop before the first
    pick whose squared radius is <= stop_dist2 (when >= 0). States without a
    native stop (the CUDA state) run one step per call then. `log` (a RunLog)
    lets the caller recover the picks made before an exception.

    As the kernels do, the last pick is left pending (not yet a center) when
    the budget ends the run, and is already a center when the radius does."""
    native = stop_dist2 < 0 or getattr(state, "supports_stop", False)
    if native and log is not None:
        log.state = state
    if stop_dist2 < 0:
        return state.run(budget, progress)
    if native:
        return state.run(budget, progress, stop_dist2)
    if log is None:
        log = RunLog()
    picks, radii2 = log.picks, log.radii2
    pending = None
    if budget > 0 and state.num_centers == 0:  # the first pick from the pool mean (radius +inf)
        p, r2 = state.run(1)
        radii2.append(float(r2[0]))
        picks.append(int(p[0]))
        pending = picks[-1]
    while len(picks) < budget:
        row, r2 = state.push_row(pending) if pending is not None else state.current_best()
        pending = None
        if row < 0:
            raise RuntimeError("pcoreset: pool exhausted inside the state")
        if r2 <= stop_dist2:
            break
        radii2.append(float(r2))
        picks.append(int(row))
        pending = picks[-1]
        if progress is not None:
            progress(len(picks))
    return np.asarray(picks, dtype=np.int64), np.asarray(radii2, dtype=np.float64)


def progress_callback(problem: Problem, total: Optional[int] = None):
    """(callback, close) for a step loop: a tqdm bar when progress=True, the
    caller's function when one was given, else nothing."""
    prog = problem.progress
    if not prog:
        return None, lambda: None
    if callable(prog):
        return prog, lambda: None
    from tqdm.auto import tqdm

    bar = tqdm(total=problem.budget if total is None else total, desc="pcoreset select", unit="pick")

    def update(done: int) -> None:
        bar.update(done - bar.n)

    return update, bar.close


# The start: sets a state's initial centers (pcoreset._start.start_state,
# a layer above, passes itself to Backend.run).
Start = Callable[["Backend", KCenterState, Problem], None]


class Backend(abc.ABC):
    """One way to run k-center greedy on a validated `Problem`.

    A subclass sets `name` and implements `make_state` and `memory_parts`;
    it may override:
      - `unavailable()`: why it cannot run at all here (not built, library
        missing), or None;
      - `rejects(problem)`: why it cannot take this input (wrong device,
        unsupported dtype), or None;
      - `state_unsupported(problem)`: why it cannot keep a state for
        `pcoreset.Selector` on this input, or None;
      - `exact_max_work`, `exact_max_pairs`: the largest N * M * C and
        N * M whose start runs as the state's exact pass;
      - `start_values(state, problem)`: pool rows exactly as the state sees
        them, for the start's candidate search;
      - `build_info()`: what its compiled module was built with.

    Registering it is one line in pcoreset/backends/__init__.py (or a call
    to `pcoreset.backends.register` for a backend outside the package).
    """

    name = "?"
    exact_max_work = EXACT_MAX_WORK
    exact_max_pairs = EXACT_MAX_PAIRS

    def unavailable(self) -> Optional[str]:
        return None

    def rejects(self, problem: Problem) -> Optional[str]:
        return None

    def state_unsupported(self, problem: Problem) -> Optional[str]:
        return None

    @abc.abstractmethod
    def make_state(self, problem: Problem) -> KCenterState:
        """A state over the problem's pool (borrowed, not copied) without centers."""

    @abc.abstractmethod
    def memory_parts(self, n: int, c: int, dtype: str, centers: int, budget: int,
                     from_logits: bool) -> Dict[str, int]:
        """What this backend allocates for a selection of `budget` picks on an
        (n, c) pool of `dtype` with `centers` centers in all (initial ones and
        picks), by name, in bytes; the start and the pool's own tile are
        counted by pcoreset.backends.memory_parts."""

    def start_values(self, state: KCenterState, problem: Problem) -> Values:
        """values(rows) -> pool rows as `state` sees them, in the accumulation
        dtype (NumPy or torch), which the start's certified search compares;
        by default the torch backend's rounding (NumPy's without torch)."""
        return default_values(problem)

    def build_info(self) -> Optional[dict]:
        return None

    def run(self, problem: Problem, start: Start) -> Picks:
        """One selection: a state, its initial centers set by `start`, then
        `problem.budget` steps with progress reporting. The state's counters
        are kept in `last_stats`."""
        state = self.make_state(problem)
        start(self, state, problem)
        callback, close = progress_callback(problem)
        try:
            picks, radii2 = run_state(state, problem.budget, callback)
        finally:
            close()
        self.last_stats = state.stats()
        return picks, radii2

"""The interface every selection backend implements."""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from .._problem import Problem


class Backend:
    """One way to run k-center greedy on a validated `Problem`.

    Subclasses set `name` and implement:
      - `unavailable()`: why this backend cannot run at all here (not built,
        library missing), or None;
      - `rejects(problem)`: why it cannot take this particular input (wrong
        device, unsupported dtype), or None;
      - `run(problem)`: the picks (int64, greedy order) and the squared radii
        (float64, +inf for a first pick made from the pool mean), as NumPy
        arrays or torch tensors on the problem's device;
      - for `pcoreset.Selector` (incremental selection): `make_state(problem)`,
        a running-minimum state with the methods of the C++ state
        (seed_rows[_with_candidates], seed_vectors[_with_candidates], take,
        exclude, push_row, current_best, run(budget, progress[, stop_dist2]),
        export_state, load_state, min_dist2, num_centers, stats, and
        last_run(): the (picks, radii2) of the latest run, also of one that
        raised, every pick but possibly the last a center; a step is
        all-or-nothing), and
        `seed(state, problem)`, which sets every row's nearest initial center;
        `state_unsupported(problem)` says why a state cannot be made, or None.
    """

    name = "?"

    def unavailable(self) -> Optional[str]:
        return None

    def rejects(self, problem: Problem) -> Optional[str]:
        return None

    def run(self, problem: Problem) -> Tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def state_unsupported(self, problem: Problem) -> Optional[str]:
        if type(self).make_state is Backend.make_state:
            return f"the {self.name} backend keeps no state between calls"
        return None

    def make_state(self, problem: Problem):
        raise NotImplementedError(f"the {self.name} backend keeps no state between calls")

    def seed(self, state, problem: Problem) -> None:
        raise NotImplementedError(f"the {self.name} backend keeps no state between calls")


def seed_state(state, problem, exact: bool, values=None) -> None:
    """Set every row's nearest initial center on a state (labeled rows, then
    the `centers=` vectors): the state's own exact pass when `exact`, else the
    certified candidates of pcoreset._start (searched over `values(rows)`,
    the rows as this state sees them; default: the torch backend's values),
    whose distances the state recomputes exactly."""
    from .. import _start

    labeled = problem.labeled
    vecs = getattr(problem, "centers", None)
    if labeled.size + (0 if vecs is None else int(vecs.shape[0])) == 0:
        return
    if exact:
        if labeled.size:
            state.seed_rows(labeled)
        if vecs is not None:
            state.seed_vectors(vecs)
        return
    cand_rows, cand_vecs = _start.split_candidates(_start.nearest_candidates(problem, values=values), labeled.size)
    if labeled.size:
        state.seed_rows_with_candidates(labeled, cand_rows)
    if vecs is not None:
        state.seed_vectors_with_candidates(vecs, cand_vecs)


def step_loop(state, budget: int, progress, stop_dist2: float, first):
    """The run() of the Python states (torch, faiss): `budget` picks from the
    current state, the last one not pushed; `first()` gives the first pick
    when there is no center yet (the row farthest from the pool mean); stops
    before a pick whose squared radius is <= stop_dist2 when that is >= 0.

    The picks are kept on the state as they are made (`logged_run(state)`),
    so the picks of a run that raised can be recovered; the states' push_row
    is all-or-nothing, so every logged pick but possibly the last is a center.
    """
    picks, radii2 = [], []
    state._run_log = (picks, radii2)
    best = first() if state.num_centers == 0 else state.current_best()
    for t in range(int(budget)):
        p, r2 = best
        if p < 0:
            raise RuntimeError(f"pcoreset: pool exhausted inside the {type(state).__name__}")
        if stop_dist2 >= 0 and r2 <= stop_dist2:
            break
        radii2.append(r2)  # radius first: a pick is logged once both are
        picks.append(p)
        if t + 1 == budget:
            break
        best = state.push_row(p)
        if progress is not None:
            progress(t + 1)
    if progress is not None:
        progress(len(picks))
    return np.asarray(picks, dtype=np.int64), np.asarray(radii2, dtype=np.float64)


def logged_run(state):
    """(picks, radii2) that step_loop logged on a Python state for its
    latest run, also for one that raised (the states' last_run())."""
    picks, radii2 = getattr(state, "_run_log", ([], []))
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


def run_state(state, budget: int, progress=None, stop_dist2: float = -1.0, log: Optional[RunLog] = None):
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

"""`cpu`: the C++ kernel (OpenMP, SIMD, exact pruning)."""
from __future__ import annotations

from typing import Optional

from .. import _memory, _start
from .._problem import Problem
from . import register
from .base import Backend, seed_state

try:
    from .. import _C
    _IMPORT_ERROR = None
except ImportError as exc:  # the extension was not built
    _C = None
    _IMPORT_ERROR = str(exc)


def make_state(problem: Problem):
    """A C++ KCenterState over the problem's pool (borrowed, not copied)."""
    x = problem.numpy_view()
    return _C.KCenterState(x, problem.dtype, problem.from_logits, problem.temperature,
                           problem.prune, problem.num_threads,
                           release_pages=_memory.file_backed(x))


def seed(state, problem: Problem) -> None:
    """Set every row's nearest initial center (labeled rows, then center
    vectors): the kernel's exact direct pass for small products, otherwise
    certified candidates (pcoreset._start) whose distances the kernel
    recomputes exactly."""
    exact = _start.use_exact(problem.n, problem.n_centers, problem.c)
    seed_state(state, problem, exact, kernel_values(state))


def kernel_values(state):
    """values(rows) for the start's search: rows exactly as this kernel sees
    them (its own softmax for logits), as a NumPy array."""
    import numpy as np

    def values(rows):
        return state.rows_values(np.asarray(rows, dtype=np.int64))

    return values


class CpuBackend(Backend):
    name = "cpu"

    def unavailable(self) -> Optional[str]:
        if _C is None:
            return f"the C++ extension pcoreset._C is not built ({_IMPORT_ERROR})"
        return None

    def rejects(self, problem: Problem) -> Optional[str]:
        if problem.device != "cpu":
            return f"input is on {problem.device}, the cpu backend reads host memory"
        return None

    def make_state(self, problem: Problem):
        return make_state(problem)

    def seed(self, state, problem: Problem) -> None:
        seed(state, problem)

    def run(self, problem: Problem):
        state = make_state(problem)
        seed(state, problem)
        callback, close = _progress_callback(problem)
        try:
            picks, radii2 = state.run(problem.budget, callback)
        finally:
            close()
        self.last_stats = state.stats()
        return picks, radii2


def _progress_callback(problem: Problem, total: Optional[int] = None):
    """(callback, close) for the kernel loop: a tqdm bar when progress=True,
    the caller's function when one was given, else nothing."""
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


register(CpuBackend())


def build_info() -> dict:
    if _C is None:
        return {"built": False, "error": _IMPORT_ERROR}
    info = dict(_C.build_info())
    info["built"] = True
    return info

"""The start: the nearest initial center of every pool row.

The initial centers are the labeled rows and any center vectors given with
`centers=`. Finding each row's nearest one is an N x M nearest-neighbour
problem, solved without an N x M matrix in memory, in one of two ways
(`start_method`):

- "exact": the kernel's direct pass (differences, early exit at the best so
  far), for N * M * C <= the backend's exact_max_work and N * M <= its
  exact_max_pairs (the cpu backend: 3e6 pairs, where the two meet on 2 cores
  whatever C; see backends/cpu.py), the latter only where the search's
  per-row memory stays small (SEARCH_ROW_BYTES below);
- "certified": a pruned, shifted GEMM search that returns, for every row, a
  few candidate centers that provably contain its nearest one; the kernel
  then recomputes the distances to the candidates exactly.

The certified search, bottom up: `sizes` (the knobs that bound its memory),
`centers` (centers read on demand, duplicates merged, pivots), `bounds` (the
GEMM's error model and the candidate test), `search` (one pivot group's
tiled search; on long rows a projected lower bound replaces the GEMM of
tiles whose rows reach many centers, see bounds.Projection), `certified`
(the whole pool: pivot assignment, groups on worker threads, the candidates
handed to the kernel).
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator, Optional

import numpy as np

from .._problem import Problem, Values, chunk_rows, default_values, dtype_itemsize  # noqa: F401 (chunk_rows: callers' import)
from ..backends.base import EXACT_MAX_PAIRS, EXACT_MAX_WORK, Backend, KCenterState
from .centers import Centers
from .certified import candidates, kernel_candidates
from .sizes import K_OUT

_METHODS = ("exact", "certified")
_forced: Optional[str] = None


@contextlib.contextmanager
def force(method: Optional[str]) -> Iterator[None]:
    """Run the start with `method` ("exact" or "certified") whatever the
    sizes, within the block (tests force each path at small sizes). The
    environment variable PCORESET_START does the same for a whole process."""
    global _forced
    if method is not None and method not in _METHODS:
        raise ValueError(f"method={method!r}: choose one of {_METHODS}")
    saved, _forced = _forced, method
    try:
        yield
    finally:
        _forced = saved


def start_method(n: int, n_centers: int, c: int, max_work: float = EXACT_MAX_WORK,
                 max_pairs: float = EXACT_MAX_PAIRS) -> str:
    """How the start runs: "exact" (the state's direct pass, for N * M * C
    up to `max_work` and N * M up to `max_pairs`, the backend's
    `exact_max_work` and `exact_max_pairs`) or "certified"."""
    forced = _forced or os.environ.get("PCORESET_START") or None
    if forced is None:
        small = float(n) * n_centers * c <= max_work and float(n) * n_centers <= max_pairs
        return "exact" if small else "certified"
    if forced not in _METHODS:
        raise ValueError(f"PCORESET_START={forced!r}: choose one of {_METHODS}")
    return forced


# The certified search keeps about this many bytes a row (int32 pivot,
# order and candidates, a squared norm) besides its chunk temporaries; a
# backend's pair limit (exact_max_pairs) applies only where that stays
# below a quarter of the pool or SEARCH_FREE_BYTES, whichever is more (a
# narrow pool of many rows keeps the exact pass, which needs no per-row
# memory).
SEARCH_ROW_BYTES = 32
SEARCH_FREE_BYTES = 32 << 20


def use_exact(n: int, n_centers: int, c: int, backend: Optional[Backend] = None, itemsize: int = 4) -> bool:
    if backend is None:
        return start_method(n, n_centers, c) == "exact"
    pairs = backend.exact_max_pairs
    if float(SEARCH_ROW_BYTES) * n > max(float(n) * c * itemsize / 4, SEARCH_FREE_BYTES):
        pairs = float("inf")
    return start_method(n, n_centers, c, backend.exact_max_work, pairs) == "exact"


def start_state(backend: Backend, state: KCenterState, problem: Problem) -> None:
    """The start: set every row's nearest initial center on a fresh `state`
    of `backend` (labeled rows, then the `centers=` vectors): the state's own
    exact pass for small products, else the certified candidates, searched
    over the rows as this state sees them, whose distances the state
    recomputes exactly."""
    labeled = problem.labeled
    vecs = problem.centers
    if problem.n_centers == 0:
        return
    if use_exact(problem.n, problem.n_centers, problem.c, backend, dtype_itemsize(problem.dtype)):
        if labeled.size:
            state.seed_rows(labeled)
        if vecs is not None:
            state.seed_vectors(vecs)
        return
    cand = kernel_candidates(problem, None, backend.start_values(state, problem))
    # one array for both calls: every state skips candidates outside
    # [0, count), so the labeled rows' call ignores the vectors' indices and,
    # shifted down by L, the vectors' call ignores the rows'
    if labeled.size:
        state.seed_rows_with_candidates(labeled, cand)
    if vecs is not None:
        cand -= labeled.size
        state.seed_vectors_with_candidates(vecs, cand)


def add_rows(backend: Backend, state: KCenterState, problem: Problem, rows: np.ndarray) -> None:
    """Pool rows become centers of a running state (rows labeled out of
    order): the exact pass, or certified candidates for large products."""
    if use_exact(problem.n, rows.size, problem.c, backend, dtype_itemsize(problem.dtype)):
        state.seed_rows(rows)
        return
    values = backend.start_values(state, problem)
    state.seed_rows_with_candidates(rows, kernel_candidates(problem, Centers.rows(values, rows), values))


def add_vectors(backend: Backend, state: KCenterState, problem: Problem, vecs: np.ndarray) -> None:
    """Center vectors become centers of a running state: the exact pass, or
    certified candidates for large products."""
    if use_exact(problem.n, vecs.shape[0], problem.c, backend, dtype_itemsize(problem.dtype)):
        state.seed_vectors(vecs)
        return
    values = backend.start_values(state, problem)
    state.seed_vectors_with_candidates(vecs, kernel_candidates(problem, vecs, values))


def nearest_candidates(problem: Problem, k: int = K_OUT, centers=None,
                       values: Optional[Values] = None) -> np.ndarray:
    """(N, k) int64 indices into the centers: for every row, candidate
    centers that contain its nearest center (and every center within the
    kernel's rounding of it); rows with fewer than k repeat their first one.
    centers: an (M, C) array (NumPy or torch), or None for the problem's
    initial centers (labeled rows, then center vectors; indices then point
    into that concatenation). values(rows): pool rows as the kernel sees them
    (default: `default_values`). Taken (labeled) rows get candidates too;
    the kernels ignore them."""
    return candidates(problem, centers, values or default_values(problem), k).astype(np.int64)

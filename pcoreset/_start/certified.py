"""The certified search over the whole pool: centers merged, pivots chosen,
every row assigned to a pivot, the pivot groups searched on worker threads,
and the candidates handed to the kernel.

1. Duplicate centers are merged (the lowest index represents them).
2. P ~ 2 sqrt(M) pivots (at least 64, at most 1024: sizes.n_pivots) are
   chosen among the centers by farthest-first traversal (over a strided
   sample of them), and every row is assigned to a nearby pivot (an
   approximate GEMM argmin is enough), with an upper bound of its distance
   to it.
3. Lower bounds of the centers' distances to the pivots (float64 GEMMs, a
   block of pivots at a time) give each group its centers nearest first.
4. Each group is searched (search.py); a row's candidates are indices into
   the original centers.

Memory: the distinct centers are kept only when they are small beside the
pool (sizes.CENTER_CACHE), else read on demand, in chunks, as the kernel
sees them; per row the search keeps an int32 pivot order, the squared norm
of its shifted row and K_OUT int32 candidates.

Threads: the pivot groups (and the assignment's row chunks) run on worker
threads, one per core (see Workers); their GEMMs (one BLAS thread each), NumPy
passes and the C++ epilogue release the GIL."""
from __future__ import annotations

import contextvars
import mmap
from typing import Optional

import numpy as np

from .. import _memory, _threads
from .._problem import Problem, Values, acc_dtype, default_values, dtype_itemsize
from . import bounds, sizes
from .bounds import Bounds
from .centers import Centers, dedupe, host, host_values, pivots
from .search import group


class Workers:
    """fn(item) for every item, on worker threads kept for the whole search:
    items write disjoint rows of the output, so the result does not depend on
    the order. The same threads serve every pass, so each reuses the memory
    its allocator arena freed (fresh threads would each grow a new arena).

    requested > 0: that many threads; 0 (the default): one per core this
    process may use, whatever the load. Each item runs on one thread (its
    GEMMs on one BLAS thread, its C++ passes on one thread), so the workers
    never wait for each other at a barrier, and the rule that keeps the
    kernel's parallel regions off busy cores (`_threads.available`) is not
    needed here. Applying it was measured worse (2 cores, 1M x 100,
    L = 10k, medians side by side in one process, quiet / beside one busy
    process):
    - one worker per core: 3.4 s / 5.0 s;
    - the rule read again before each item is handed out: 4.0 s / 6.7 s;
    - the rule read once for the whole start: 2.6-3.1 s when it read 2, but
      it read 1 in 2 fresh processes out of 3 on a quiet machine, and those
      starts took 4.9-5.5 s. A reading is one moment's count of running
      tasks, and on Linux 6.x a thread that has just gone to sleep can still
      count as running.
    """

    def __init__(self, requested: int = 0) -> None:
        self.threads = max(1, int(requested)) if requested and requested > 0 else _threads.cores()
        self.pool = None
        if self.threads > 1:
            from concurrent.futures import ThreadPoolExecutor
            self.pool = ThreadPoolExecutor(max_workers=self.threads)

    def each(self, fn, items) -> None:
        items = list(items)
        if self.pool is None or len(items) <= 1:
            for it in items:
                fn(it)
            return
        # each item in a copy of the caller's context (NumPy's error state)
        futures = [self.pool.submit(contextvars.copy_context().run, fn, it) for it in items]
        try:
            for f in futures:
                f.result()
        except BaseException:
            # an error or Ctrl-C: the items not started never run, so the
            # caller unwinds after the running ones (bounded work), not the pass
            for f in futures:
                f.cancel()
            raise

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)


def as_centers(problem: Problem, centers, values: Values) -> Centers:
    """centers: None (the problem's initial centers), a Centers, or an (M, C)
    array of center vectors (NumPy or torch)."""
    if centers is None:
        return Centers.of_problem(problem, values)
    if isinstance(centers, Centers):
        return centers
    return Centers.array(host(centers, acc_dtype(problem)))


def kernel_candidates(problem: Problem, centers, values: Values, k: Optional[int] = None) -> np.ndarray:
    """The certified candidates as the kernels take them: (N, k') int64 with
    k' <= k the most candidates any row has. The search writes them as int32
    into an anonymous memory map with room for (N, k) int64, and they are
    widened in place: only the pages written count in the process's memory
    (16 bytes per row for k' <= 2, 8 k' beyond), never int32 and int64
    copies side by side."""
    k = sizes.K_OUT if k is None else k
    src = as_centers(problem, centers, values)
    n = problem.n
    if src.m >= 2**31:  # int64 indices throughout
        return candidates(problem, src, values, k).astype(np.int64)
    buf = np.frombuffer(mmap.mmap(-1, max(1, n * k * 8)), dtype=np.uint8)
    cand = candidates(problem, src, values, k, buf[:n * k * 4].view(np.int32).reshape(n, k))
    _memory.trim_heap()  # the search's freed temporaries, before the pages below are written
    width = 1
    for t in range(k - 1, 0, -1):
        if np.any(cand[:, t] != cand[:, 0]):
            width = t + 1
            break
    out = buf[:n * width * 8].view(np.int64).reshape(n, width)
    # row i moves from bytes [16 i, 16 i + 16) to [8 w i, 8 w (i + 1)): from
    # the last rows down for w >= 2 (the destination never reaches rows not
    # yet read, which lie below), from the first rows up for w = 1
    starts = range(0, n, sizes.WIDEN_ROWS)
    for s in (reversed(starts) if width >= 2 else starts):
        e = min(n, s + sizes.WIDEN_ROWS)
        out[s:e] = cand[s:e, :width].copy()
    return out


def candidates(problem: Problem, centers, values: Optional[Values], k: int,
               out: Optional[np.ndarray] = None) -> np.ndarray:
    """(N, k) candidates, int32 (int64 past 2^31 centers), written into
    `out` when given: indices into `centers` (see as_centers) that contain
    every row's nearest center (and every center within the kernel's
    rounding of it); rows with fewer than k repeat their first one."""
    acc = acc_dtype(problem)
    values = host_values(values or default_values(problem), acc)
    src = as_centers(problem, centers, values)
    n, c, m = problem.n, problem.c, src.m
    if m == 0:
        raise ValueError("the certified search needs at least one center")

    def get(ids):
        return host(src.get(np.asarray(ids, dtype=np.int64)), acc)

    if out is None:
        out = np.empty((n, k), dtype=np.int32 if m < 2**31 else np.int64)
    rep = dedupe(get, m, c, acc)
    if rep.size <= k:
        out[:] = np.concatenate([rep, np.repeat(rep[:1], k - rep.size)])[None, :]
        return out
    item = dtype_itemsize(problem.dtype)
    if rep.size * c * np.dtype(acc).itemsize <= sizes.CENTER_CACHE * n * c * item:
        kept = get(rep)  # each group reads its centers from here, not through the kernel's values
        yget = kept.__getitem__
    else:
        def yget(u):
            return get(rep[u])
    # The BLAS runs on one thread here: the start runs its own worker threads,
    # and OpenBLAS's threads spin-wait after each GEMM, so on a machine with
    # few cores a multi-threaded BLAS starves the package's OpenMP regions
    # (measured on 2 cores: the start at 200k x 100, L = 2k took 3.2-3.5 s
    # with two BLAS threads and 1.8-2.2 s with one).
    workers = Workers(problem.num_threads)
    try:
        # values near the float range overflow the GEMM identity's squares:
        # an inf (or NaN) distance or bound widens the search, never narrows it
        with _threads.blas_threads(1), np.errstate(over="ignore", invalid="ignore"):
            _search(problem, values, yget, rep, Bounds(acc, c, k), out, workers)
    finally:
        workers.close()
    return out


def _search(problem: Problem, values: Values, yget, rep: np.ndarray, b: Bounds,
            out: np.ndarray, workers: Workers) -> None:
    """yget(u): the distinct centers u (indices into rep) in the accumulation
    dtype; out (N, k) receives indices into the original centers."""
    m = int(rep.size)
    # 1-2. pivots: farthest-first over the distinct centers (a strided sample
    # of them when there are many: the pivots only need to cover the centers)
    sub = np.arange(0, m, max(1, -(-m // sizes.PIVOT_SAMPLE)))
    ys = yget(sub)
    r = np.ascontiguousarray(ys[pivots(ys, min(sizes.n_pivots(m), sub.size))])
    # the projected bound's directions, from the same sample (search.py)
    c = int(ys.shape[1])
    proj = None
    d = sizes.proj_dims(c)
    # its float64 projections of the centers stay below an eighth of the pool
    small = m * d * 8 <= problem.n * c * dtype_itemsize(problem.dtype) / 8
    if (c >= sizes.PROJ_MIN_C and sub.size >= 2 and d < c and small
            and bounds.Projection.row_eps(c, d, b.acc) <= bounds.Projection.MAX_EPS):
        proj = bounds.Projection(ys, d, b.acc, yget, m, sizes.ROW_CHUNK_BYTES)
    del ys
    p = r.shape[0]
    order, first, counts, s2 = _assign(problem, values, r, workers)

    # 3-4. pivot by pivot; center-to-pivot lower bounds for a block of pivots
    # at a time (float32 rounded down, the centers read in chunks)
    pblock = max(1, min(p, sizes.PAIR_BYTES // (4 * max(1, m))))
    for g0 in range(0, p, pblock):
        g1 = min(p, g0 + pblock)
        if sum(counts[g0:g1]) == 0:
            continue
        lb2 = None  # the previous block's bounds go before the next's come
        lb2 = bounds.center_pivot_lb2(yget, m, r[g0:g1], b, sizes.ROW_CHUNK_BYTES)

        def search(g: int) -> None:
            rows = order[first[g]:first[g] + counts[g]].astype(np.int64)
            s2r = s2[rows]
            ra = np.sqrt(s2r.astype(np.float64) * b.widen) + b.tiny
            lg = lb2[:, g - g0]
            near = np.flatnonzero(lg <= b.reach2(float(ra.max())))
            near = near[np.argsort(lg[near], kind="stable")]
            group(values, rows, ra, s2r, near, lg[near].astype(np.float64), yget, r[g], rep, b, out, proj)

        # the largest groups first, so that the workers finish together
        todo = [g for g in range(g0, g1) if counts[g]]
        todo.sort(key=lambda g: -counts[g])
        workers.each(search, todo)


def _assign(problem: Problem, values: Values, r: np.ndarray, workers: Workers):
    """Every row's pivot among r: (the rows grouped by pivot, each group's
    first position and size in that order, and an upper bound s2 of each
    row's squared shifted norm in the accumulation dtype). Kept compact:
    int32 pivots and order, no N-long temporaries."""
    n, c, p = problem.n, problem.c, r.shape[0]
    acc = r.dtype
    r_t = np.ascontiguousarray(r.T)
    r_norm2 = (r * r).sum(1)
    pivot_of = np.empty(n, dtype=np.int32)
    s2 = np.empty(n, dtype=acc)
    step = max(1, min(n, sizes.ROW_CHUNK_BYTES // (acc.itemsize * max(c, p))))

    def assign(s: int) -> None:
        e = min(n, s + step)
        pivot_of[s:e], s2[s:e] = bounds.assign_pivots(values(np.arange(s, e)), r, r_t, r_norm2)
        if isinstance(problem.x, np.ndarray):
            _memory.release_rows(problem.x, s, e)

    workers.each(assign, range(0, n, step))
    # rows grouped by pivot (a counting sort in chunks)
    counts = np.bincount(pivot_of, minlength=p)
    order = np.empty(n, dtype=np.int32 if n < 2**31 else np.int64)
    nxt = np.cumsum(counts) - counts
    for s in range(0, n, 1 << 16):
        pc = pivot_of[s:s + (1 << 16)]
        o = np.argsort(pc.astype(np.uint16) if p <= 1 << 16 else pc, kind="stable")  # a radix sort
        cnt = np.bincount(pc, minlength=p)
        ps = pc[o]
        order[nxt[ps] + (np.arange(o.size) - (np.cumsum(cnt) - cnt)[ps])] = s + o
        nxt += cnt
    pivot_of = None  # freed before the heap is trimmed
    _memory.trim_heap()
    return order, (np.cumsum(counts) - counts).tolist(), counts.tolist(), s2

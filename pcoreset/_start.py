"""The start: the nearest initial center of every pool row.

The initial centers are the labeled rows and any center vectors given with
`centers=`. Finding each row's nearest one is an N x M nearest-neighbour
problem, solved without an N x M matrix in memory, in one of two ways
(`start_method`):

- "exact": the kernel's direct pass (differences, early exit at the best so
  far), for N * M * C <= EXACT_MAX_WORK;
- "certified": a pruned, shifted GEMM search that returns, for every row, a
  few candidate centers that provably contain its nearest one; the kernel
  then recomputes the distances to the candidates exactly.

Why the GEMM needs care. ||x||^2 + ||y||^2 - 2 x.y in float32 has an error of
about C * 6e-8 * (||x|| + ||y||)^2. Probability rows have norms near 1, while
two confident rows of one class (softmax of a logit gap of 12-20) lie 1e-7
to 1e-5 apart: the plain GEMM cannot order their distances, and its top few
candidates miss the nearest center for most rows (on 30,000 such rows with
1,000 labeled, picks 74% short of the farthest row were measured). The
certified search avoids that:

1. Duplicate center vectors are merged (the lowest index represents them):
   rows are hashed, equal hashes compared bit for bit.
2. P ~ 4 sqrt(M) pivots (at most 1024) are chosen among the centers by
   farthest-first traversal (over a strided sample of at most 8192 centers),
   and every row is assigned to a nearby pivot r (an approximate GEMM argmin
   is enough); an upper bound of a = d(x, r) comes from the direct
   differences.
3. The pivot is itself a center, so the nearest center y* of x is at most a
   away, and d(y*, r) <= d(y*, x) + d(x, r) (triangle inequality). A first,
   small GEMM with the 32 centers nearest the pivot bounds each row's nearest
   distance D from above, so y* lies within a + D of the pivot (not only 2a):
   each row gets its own reach, the centers within it (float lower bounds of
   their distance to the pivot, with their rounding bound) are a prefix of
   the pivot's centers sorted by that distance, and the rows are sorted by
   how long their prefix is and searched in tiles of similar reach. On the
   clustered pool of the benchmarks (200k x 100, L = 2k) that computes about
   12% of the N x M pairs (the pivot GEMM adds 9%); a single reach per pivot
   (the largest row's) computed 57%.
4. Rows and centers are shifted by the pivot before the GEMM, so the GEMM's
   rounding scales with ||x - r|| + ||y - r|| (the cluster's size), not with
   the norms of the rows. For each pair a rigorous bound E on the GEMM's error
   is known (below); every center whose lower bound D - E does not exceed the
   best upper bound min(D + E) of its row is a candidate, so the nearest
   center (and every center the kernel's own rounding could prefer) is always
   among them. A row with more than K_OUT candidates gets them ranked by exact
   float64 distances first.

Memory. No copy of the centers is held: they are read on demand, in chunks,
as the kernel sees them; a group whose reach holds more centers than a worker
keeps (a few MiB) is searched block by block (one pass narrows the reach,
a second collects the candidates). Per row the search keeps an int32 pivot
order, the squared norm of the shifted row (in the accumulation dtype,
rounded up) and K_OUT int32 candidates; the kernel then gets them as int64,
only as many columns as some row needs. Measured at 1M x 100 float32 (a
381 MiB pool), clustered, `select(..., budget=1)`: the process's peak grew
by 60 MiB with L = 10k (0.16x the pool) and 88 MiB with L = 100k (0.23x;
the kernel's own centers, 46 MiB at L = 100k, included: its floor there is
the kernel's state plus the int64 candidates it is handed).

Threads: the pivot groups (and the pivot assignment's row chunks) run on
worker threads, one per available core; their GEMMs (one BLAS thread each),
NumPy passes and the fused epilogue release the GIL.

The error bound. With u the unit roundoff of the accumulation dtype, a' =
fl(x - r) and b' = fl(y - r) (componentwise relative error u), the shift moves
the distance by at most u (||a'|| + ||b'||); each length-C dot product, in any
summation order, errs by at most gamma_C ||a'|| ||b'|| (gamma_C = C u / (1 - C u));
the two additions of the GEMM identity and the rounded norms add 3u (||a'|| +
||b'||)^2. In total |D - d^2| <= (C + 10) u (||a'|| + ||b'||)^2; the code uses
twice that, plus an absolute term for gradual underflow. The GEMMs are NumPy's
(the BLAS it links: IEEE products and sums, fused or not, in any order), so the
start needs no torch; rows of a torch pool (a CUDA one included) are searched
on the host.

Cost, where the time goes (200k x 100 float32 clustered, L = 2k, one
thread, profiled on the shared 2-core Intel machine at load 1.9, so the
shares count, not the seconds): `select(..., budget=1)` 0.88 s, of which the
search 0.78 s: the pivot assignment 0.16 s (its N x P GEMM, P = 179, about
0.10 s), the pivot groups 0.57 s (tile GEMMs 0.16 s over 10% of the N x M
pairs, the fused epilogue 0.07 s, reading the centers 0.08 s, the probe GEMM,
shifting the rows, the per-row reach and the gathers 0.14 s, sorting and
row reads the rest), pivots, bounds and dedupe 0.04 s; outside the search
the pool check 0.03 s, the kernel's exact refinement of the candidates
0.02 s and its first step 0.03 s. Side by side with one float32 GEMM + row
minimum of the same size (NumPy's BLAS) the start costs 0.43x of it
(benchmarks/RESULTS.md, "Labeled start"). What is left is mostly GEMM work
that the bounds cannot skip (the pivot GEMM and the 7% of pairs inside the
rows' reach), and Python and NumPy overhead per tile.

Crossover of the two methods (2-core AMD EPYC, float32, clustered pools):
the exact pass wins below about 1e9 values of work and the certified search
above a few 1e9, so the switch stays at N * M * C = 2e9.
"""
from __future__ import annotations

import contextlib
import contextvars
import math
import mmap
import os
from typing import Iterator, Optional

import numpy as np

from . import _memory, _threads, backends
from ._problem import (Problem, Values, acc_dtype, chunk_rows, default_values, make_problem,  # noqa: F401
                       numpy_values, rows_as_values, torch_pool, torch_values)
from .backends.base import EXACT_MAX_WORK, Backend, KCenterState

try:  # the fused epilogue of the certified search (a NumPy fallback otherwise)
    from . import _C
except ImportError:
    _C = None

# Candidate centers per row handed to the kernel (rows with fewer repeat
# their first one; rows with more keep the K_OUT nearest in float64).
K_OUT = _memory.CANDIDATES
# Elements of one tile (rows x centers): 2 MiB of float32, read twice by the
# fused epilogue while it is still in cache; a worker thread holds a few
# such blocks (the start's memory stays small beside the pool's).
_TILE = 1 << 19
_METHODS = ("exact", "certified")
# Centers nearest the pivot in the certified search's first, bounding GEMM
# (on clustered pools 32 bound each row's nearest distance within a few per
# cent of the truth; more cost more than they save).
_PROBE = 32
# Row chunks of the start's passes over the pool and over the centers:
# bytes of one chunk's largest block (its values or its distances).
_ROW_CHUNK_BYTES = 1 << 20
# Bytes of one block of center-to-pivot lower bounds (float32).
_PAIR_BYTES = 4 << 20
# Pivots are chosen among at most this many centers (a strided sample).
_PIVOT_SAMPLE = 8192
# Rows per chunk when the candidates are widened to int64 in place.
_WIDEN_ROWS = 1 << 16
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


def forced_method() -> Optional[str]:
    """The method forced through `force` or PCORESET_START, or None."""
    forced = _forced or os.environ.get("PCORESET_START") or None
    if forced is not None and forced not in _METHODS:
        raise ValueError(f"PCORESET_START={forced!r}: choose one of {_METHODS}")
    return forced


def use_exact(n: int, n_centers: int, c: int, max_work: float = EXACT_MAX_WORK) -> bool:
    return start_method(n, n_centers, c, max_work) == "exact"


def start_method(n: int, n_centers: int, c: int, max_work: float = EXACT_MAX_WORK) -> str:
    """How the start runs: "exact" (the state's direct pass, for N * M * C
    up to `max_work`, the backend's `exact_max_work`) or "certified"
    (certified GEMM candidates, refined exactly). See the module docstring."""
    forced = forced_method()
    if forced is not None:
        return forced
    return "exact" if float(n) * n_centers * c <= max_work else "certified"


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
    if use_exact(problem.n, problem.n_centers, problem.c, backend.exact_max_work):
        if labeled.size:
            state.seed_rows(labeled)
        if vecs is not None:
            state.seed_vectors(vecs)
        return
    values = backend.start_values(state, problem)
    cand = _kernel_candidates(problem, None, values)
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
    if use_exact(problem.n, rows.size, problem.c, backend.exact_max_work):
        state.seed_rows(rows)
        return
    values = backend.start_values(state, problem)
    state.seed_rows_with_candidates(rows, _kernel_candidates(problem, _Centers.rows(values, rows), values))


def add_vectors(backend: Backend, state: KCenterState, problem: Problem, vecs: np.ndarray) -> None:
    """Center vectors become centers of a running state: the exact pass, or
    certified candidates for large products."""
    if use_exact(problem.n, vecs.shape[0], problem.c, backend.exact_max_work):
        state.seed_vectors(vecs)
        return
    values = backend.start_values(state, problem)
    state.seed_vectors_with_candidates(vecs, _kernel_candidates(problem, vecs, values))


def _host(a, dtype) -> np.ndarray:
    """A C-contiguous host array of `dtype` from a NumPy array or a torch
    tensor (copied to the host when it lives on a device)."""
    if not isinstance(a, np.ndarray) and hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.ascontiguousarray(a, dtype=dtype)


def _host_values(values: Values, dtype) -> Values:
    return lambda rows: _host(values(np.asarray(rows, dtype=np.int64)), dtype)


class _Centers:
    """The initial centers of a search, read on demand so that no copy of
    all of them is ever held: m rows, get(ids) gives rows ids (int64) as the
    kernel sees them (NumPy or torch, any float dtype)."""

    def __init__(self, m: int, get) -> None:
        self.m, self.get = int(m), get

    @staticmethod
    def of_problem(problem: Problem, values: Values) -> "_Centers":
        """The labeled rows (as `values` gives them), then the center vectors."""
        lab, vecs = problem.labeled, problem.centers
        n_lab = int(lab.size)
        n_vec = 0 if vecs is None else int(vecs.shape[0])
        acc = acc_dtype(problem)

        def get(ids):
            if n_vec == 0:
                return values(lab[ids])
            if n_lab == 0:
                return _host(vecs[ids], acc)
            out = np.empty((ids.size, problem.c), dtype=acc)
            low = ids < n_lab
            out[low] = _host(values(lab[ids[low]]), acc)
            out[~low] = _host(vecs[ids[~low] - n_lab], acc)
            return out

        return _Centers(n_lab + n_vec, get)

    @staticmethod
    def rows(values: Values, rows) -> "_Centers":
        """Pool rows `rows` as centers."""
        rows = np.asarray(rows, dtype=np.int64)
        return _Centers(rows.size, lambda ids: values(rows[ids]))

    @staticmethod
    def array(a) -> "_Centers":
        return _Centers(a.shape[0], lambda ids: a[ids])


def _unit_roundoff(dtype) -> float:
    return float(np.finfo(dtype).eps) / 2.0


def _dedupe(get, m: int, c: int, acc) -> np.ndarray:
    """Sorted indices of the distinct rows among the m centers, each the
    lowest index of its copies: rows are hashed (a 64-bit hash of their bits,
    in chunks), and rows with equal hashes are compared bit for bit (a rare
    collision keeps both rows, which costs time, never exactness)."""
    ints = np.uint32 if np.dtype(acc).itemsize == 4 else np.uint64
    mult = np.random.default_rng(0x5EED).integers(1, 2**63, size=c, dtype=np.uint64) | np.uint64(1)
    h = np.empty(m, dtype=np.uint64)
    step = max(1, _ROW_CHUNK_BYTES // (8 * max(1, c)))
    for s in range(0, m, step):
        e = min(m, s + step)
        h[s:e] = _row_hash(get(np.arange(s, e)).view(ints), mult)
    o = np.argsort(h, kind="stable")
    hs = h[o]
    del h
    start = np.ones(m, dtype=bool)
    start[1:] = hs[1:] != hs[:-1]
    del hs
    if start.all():
        return np.arange(m, dtype=np.int64)
    # each sorted position's run head (the run's lowest index: stable sort)
    head = o[np.maximum.accumulate(np.where(start, np.arange(m), 0))]
    dup = np.flatnonzero(~start)
    members, heads = o[dup], head[dup]
    del start
    keep = np.ones(m, dtype=bool)
    odd = []
    for s in range(0, int(members.size), step):
        mem, hd = members[s:s + step], heads[s:s + step]
        same = (get(mem).view(ints) == get(hd).view(ints)).all(1)
        keep[mem[same]] = False
        odd.append(hd[~same])
    # runs whose rows are not all one row (a hash collision): sorted out in
    # full, the lowest index of each distinct row kept
    for hd in np.unique(np.concatenate(odd)) if odd else ():
        ids = np.sort(o[head == hd])
        _, firsts = np.unique(get(ids).view(ints), axis=0, return_index=True)
        keep[ids] = False
        keep[ids[firsts]] = True
    return np.flatnonzero(keep)


def _row_hash(bits: np.ndarray, mult: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row of bits (unsigned integers): each value
    mixed, weighted by its column's odd multiplier, summed modulo 2^64."""
    z = bits.astype(np.uint64)
    z ^= z >> np.uint64(29)
    z *= mult
    return z.sum(1, dtype=np.uint64)


def _pivots(y: np.ndarray, p: int) -> np.ndarray:
    """p rows of y chosen by farthest-first traversal, as indices into y:
    k-center greedy from the pool mean, run on a kernel state over y.
    Any pivots keep the search exact (only how much it prunes depends on
    them), so values whose squared distances could overflow (the kernel
    needs finite distances; select and kcenter_greedy rescale such data
    before the start, other callers may not) are scaled into range first."""
    with np.errstate(over="ignore", invalid="ignore"):
        hi = float(np.abs(y).max()) if y.size else 0.0
        unsafe = hi > 0.0 and not (4.0 * y.shape[1] * hi * hi < float(np.finfo(y.dtype).max))
    if unsafe:
        y = np.ldexp(y.astype(np.float64), -int(np.ceil(np.log2(hi))))  # |values| <= 1
    small = y.shape[0] * y.shape[1] < (1 << 22)  # one thread: a parallel region costs more
    problem = make_problem(y, None, p, simplex=False, from_logits=False, temperature=1.0, prune=True,
                           num_threads=1 if small else 0, progress=None, name="centers")
    picks, _ = backends.choose(problem).make_state(problem).run(p)
    return np.asarray(picks, dtype=np.int64)


def certified_candidates(problem: Problem, centers, values: Optional[Values] = None,
                         k: int = K_OUT) -> np.ndarray:
    """(N, k) int64 indices into `centers` (an (M, C) array, or a _Centers):
    for every row, candidate centers that contain its nearest center (and
    every center within the kernel's rounding of it). Rows with fewer than k
    candidates repeat their first one. `values(rows)` gives pool rows as the
    kernel sees them (NumPy or torch; default: `default_values`). Taken
    (labeled) rows get candidates too; the kernels ignore them."""
    return _certified(problem, centers, values, k).astype(np.int64)


def _kernel_candidates(problem: Problem, centers, values: Values, k: int = K_OUT) -> np.ndarray:
    """The certified candidates as the kernels take them: (N, k') int64 with
    k' <= k the most candidates any row has. The search writes them as int32
    into an anonymous memory map with room for (N, k) int64, and they are
    widened in place: only the pages written count in the process's memory
    (16 bytes per row for k' <= 2, 8 k' beyond), never int32 and int64
    copies side by side."""
    if centers is None:
        src = _Centers.of_problem(problem, values)
    elif isinstance(centers, _Centers):
        src = centers
    else:
        src = _Centers.array(_host(centers, acc_dtype(problem)))
    n = problem.n
    if src.m >= 2**31:  # int64 indices throughout
        return _certified(problem, src, values, k).astype(np.int64)
    buf = np.frombuffer(mmap.mmap(-1, max(1, n * k * 8)), dtype=np.uint8)
    cand = _certified(problem, src, values, k, buf[:n * k * 4].view(np.int32).reshape(n, k))
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
    step = _WIDEN_ROWS
    starts = range(0, n, step)
    for s in (reversed(starts) if width >= 2 else starts):
        e = min(n, s + step)
        out[s:e] = cand[s:e, :width].copy()
    return out


def _certified(problem: Problem, centers, values: Optional[Values], k: int,
               out: Optional[np.ndarray] = None) -> np.ndarray:
    """certified_candidates as compact (N, k) int32 (int64 past 2^31
    centers), written into `out` when given."""
    acc = acc_dtype(problem)
    values = _host_values(values or default_values(problem), acc)
    src = centers if isinstance(centers, _Centers) else _Centers.array(_host(centers, acc))
    n, c, m = problem.n, problem.c, src.m
    if m == 0:
        raise ValueError("certified_candidates needs at least one center")

    def get(ids):
        return _host(src.get(np.asarray(ids, dtype=np.int64)), acc)

    if out is None:
        out = np.empty((n, k), dtype=np.int32 if m < 2**31 else np.int64)
    rep = _dedupe(get, m, c, acc)
    if rep.size <= k:
        out[:] = _pad(rep[None, :], k)
        return out
    # The BLAS runs on one thread here: the start runs its own worker threads
    # (below), and OpenBLAS's threads spin-wait after each GEMM, so on a
    # machine with few cores a multi-threaded BLAS starves the package's
    # OpenMP regions (measured on 2 cores: the start at 200k x 100, L = 2k
    # took 3.2-3.5 s with two BLAS threads and 1.8-2.2 s with one).
    threads = _threads.available(problem.num_threads)
    workers = _Workers(threads)
    try:
        # values near the float range overflow the GEMM identity's squares:
        # an inf (or NaN) distance or bound widens the search, never narrows it
        with _threads.blas_threads(1), np.errstate(over="ignore", invalid="ignore"):
            _search(problem, values, lambda u: get(rep[u]), rep, k, out, workers)
    finally:
        workers.close()
    return out


def _pad(ids: np.ndarray, k: int) -> np.ndarray:
    """(R, j) -> (R, k): cut to k columns or repeat the first column."""
    if ids.shape[1] >= k:
        return ids[:, :k]
    return np.concatenate([ids, np.repeat(ids[:, :1], k - ids.shape[1], axis=1)], axis=1)


def _search(problem: Problem, values: Values, yget, rep: np.ndarray, k: int,
            out: np.ndarray, workers: "_Workers") -> None:
    """yget(u): the distinct centers u (indices into rep) in the accumulation
    dtype; out (N, k) receives indices into the original centers."""
    n, c = problem.n, problem.c
    m = int(rep.size)
    acc = acc_dtype(problem)
    u = _unit_roundoff(acc)
    fi = np.finfo(acc)
    b = _Bounds(
        kappa=2.0 * (c + 10) * u,
        # gradual underflow: each of the O(C) operations errs by at most half
        # the smallest subnormal
        tiny=4.0 * (c + 10) * float(fi.smallest_normal) * float(fi.eps),
        # the kernel's own rounding (direct differences, lane sums) may prefer
        # a center up to this relative amount farther in exact arithmetic
        kernel_rel=4.0 * (c + 4) * u,
        k=k, threads=workers.threads)
    # 1. pivots: farthest-first over the distinct centers (a strided sample of
    # them when there are many: the pivots only need to cover the centers)
    sub = np.arange(0, m, max(1, -(-m // _PIVOT_SAMPLE)))
    ys = yget(sub)
    piv = _pivots(ys, min(n_pivots(m), sub.size))
    p = int(piv.size)
    r_acc = np.ascontiguousarray(ys[piv])
    piv_u = sub[piv]
    del ys
    r_norm2 = (r_acc * r_acc).sum(1)
    r_t = np.ascontiguousarray(r_acc.T)

    # 2. each row's pivot (approximate argmin) and an upper bound s2 of the
    # squared norm of the shifted row fl(x - r), kept compact (int32, the
    # accumulation dtype rounded up)
    pivot_of = np.empty(n, dtype=np.int32)
    s2 = np.empty(n, dtype=acc)
    step = max(1, min(n, _ROW_CHUNK_BYTES // (acc.itemsize * max(c, p))))

    def assign(s: int) -> None:
        e = min(n, s + step)
        v = values(np.arange(s, e))
        g = v @ r_t
        if _C is not None:
            pivot_of[s:e], s2[s:e] = _C.assign_pivots(v, g, r_acc, r_norm2)
        else:
            g *= -2.0  # exact
            g += r_norm2[None, :]
            j = np.argmin(g, axis=1)
            pivot_of[s:e] = j
            v -= r_acc[j]
            s2[s:e] = _round_up(np.einsum("ij,ij->i", v, v, dtype=np.float64), acc)
        del g
        _release(problem, s, e)

    workers.each(assign, range(0, n, step))

    # rows grouped by pivot (a counting sort in chunks: no N-long temporaries)
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
    pivot_of = None  # noqa: F841 (freed before the search)
    _memory.trim_heap()
    first = (np.cumsum(counts) - counts).tolist()
    counts = counts.tolist()

    # 3-4. pivot by pivot; center-to-pivot lower bounds for a block of pivots
    # at a time (float32 rounded down, the centers read in chunks)
    kappa64 = 2.0 * (c + 10) * _unit_roundoff(np.float64)
    widen = 1.0 + 2.0 * (c + 2) * u
    pblock = max(1, min(p, _PAIR_BYTES // (4 * max(1, m))))
    for g0 in range(0, p, pblock):
        g1 = min(p, g0 + pblock)
        if sum(counts[g0:g1]) == 0:
            continue
        lb2 = None  # the previous block's bounds go before the next's come
        lb2 = _center_pivot_lb2(yget, m, r_acc[g0:g1], kappa64)

        def search(g: int) -> None:
            rows = order[first[g]:first[g] + counts[g]].astype(np.int64)
            s2r = s2[rows]
            # d(x, r) <= ||fl(x - r)|| / (1 - u): s2 widened
            ra = np.sqrt(s2r.astype(np.float64) * widen) + b.tiny
            lg = lb2[:, g - g0]
            near = np.flatnonzero(lg <= b.reach2(float(ra.max())))
            near = near[np.argsort(lg[near], kind="stable")]
            _group(values, rows, ra, s2r, near, lg[near].astype(np.float64), yget, r_acc[g], rep, b, out)

        # the largest groups first, so that the workers finish together
        todo = [g for g in range(g0, g1) if counts[g]]
        todo.sort(key=lambda g: -counts[g])
        workers.each(search, todo)
    del piv_u


class _Workers:
    """fn(item) for every item, on `threads` Python threads kept for the whole
    search: the work of each item is GEMMs, NumPy passes and the fused
    epilogue, which release the GIL, on one BLAS thread each; items write
    disjoint rows of the output, so the result does not depend on the
    order. The same threads serve every pass, so each reuses the memory its
    allocator arena freed (fresh threads would each grow a new arena)."""

    def __init__(self, threads: int) -> None:
        self.threads = max(1, int(threads))
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


def _round_up(x64: np.ndarray, dtype) -> np.ndarray:
    """x64 (float64) in `dtype`, rounded up (an upper bound stays one)."""
    x = x64.astype(dtype)
    if x.dtype != np.float64:
        low = x.astype(np.float64) < x64
        x[low] = np.nextafter(x[low], np.asarray(np.inf, dtype=x.dtype))
    return x


def _round_down(x64: np.ndarray, dtype) -> np.ndarray:
    """x64 (float64, >= 0) in `dtype`, rounded down (a lower bound stays one)."""
    x = x64.astype(dtype)
    high = x.astype(np.float64) > x64
    x[high] = np.nextafter(x[high], np.asarray(0, dtype=x.dtype))
    return x


def _center_pivot_lb2(yget, m: int, r: np.ndarray, kappa64: float) -> np.ndarray:
    """(M, P) float32 lower bounds of the squared distances of the centers
    to the pivots r: float64 GEMMs over chunks of centers, less their
    rounding bound (the float64 values of the centers and pivots are exact),
    rounded down."""
    r64 = r.astype(np.float64)
    rn2 = (r64 * r64).sum(1)
    rn = np.sqrt(rn2)
    out = np.empty((m, r.shape[0]), dtype=np.float32)
    step = max(1, (_ROW_CHUNK_BYTES // 2) // (8 * max(r.shape[1], r.shape[0])))
    for s in range(0, m, step):
        e = min(m, s + step)
        y64 = yget(np.arange(s, e)).astype(np.float64)
        yn2 = np.einsum("ij,ij->i", y64, y64)
        o = y64 @ r64.T
        del y64
        o *= -2.0
        o += yn2[:, None]
        o += rn2[None, :]
        err = np.sqrt(yn2)[:, None] + rn[None, :]
        err *= err
        err *= kappa64
        o -= err
        del err
        np.maximum(o, 0.0, out=o)
        out[s:e] = _round_down(o, np.float32)
    return out


def n_pivots(m: int) -> int:
    """Pivots for m distinct centers: enough that every cluster of a clustered
    pool gets its own (farthest-first visits clusters first), few enough that
    the per-pivot work stays small."""
    return max(1, min(m, 1024, max(64, int(math.ceil(4.0 * math.sqrt(m))))))


class _Bounds:
    def __init__(self, kappa: float, tiny: float, kernel_rel: float, k: int, threads: int = 1) -> None:
        self.kappa, self.tiny, self.kernel_rel, self.k = kappa, tiny, kernel_rel, k
        self.threads = threads

    def reach2(self, a: float) -> float:
        """Squared distance from the pivot within which the nearest center of a
        row at distance a from it lies (and any center the kernel's rounding
        could prefer)."""
        return (2.0 * a) ** 2 * (1.0 + 2.0 * self.kernel_rel) + self.tiny


def _sq_norms(a: np.ndarray):
    """(float64 norms, squared norms in a's dtype) of the rows of a."""
    if _C is not None:
        return _C.row_norms(np.ascontiguousarray(a))
    return np.sqrt(np.einsum("ij,ij->i", a, a, dtype=np.float64)), np.einsum("ij,ij->i", a, a)


class _Near:
    """The centers of one pivot's group, nearest the pivot first, shifted by
    the pivot and fetched only as far as the group's rows reach (a group
    whose reach covers every center would otherwise hold a copy of them
    all on each worker)."""

    def __init__(self, yget, near: np.ndarray, pivot: np.ndarray, limit: int) -> None:
        self.yget, self.near, self.pivot, self.limit = yget, near, pivot, limit
        c = pivot.shape[0]
        self.have = 0
        self.sh = np.empty((0, c), dtype=pivot.dtype)
        self.ny = np.empty(0)
        self.ny2 = np.empty(0, dtype=pivot.dtype)

    def upto(self, m: int) -> None:
        """Fetch at least the first m centers (growing geometrically)."""
        if m <= self.have:
            return
        cap = min(int(self.near.size), max(m, min(2 * self.have, self.limit)))
        sh = np.empty((cap, self.pivot.shape[0]), dtype=self.pivot.dtype)
        sh[:self.have] = self.sh[:self.have]
        new = self.yget(self.near[self.have:cap])
        np.subtract(new, self.pivot, out=sh[self.have:cap])
        ny, ny2 = _sq_norms(sh[self.have:cap])
        self.sh = sh
        self.ny = np.concatenate([self.ny[:self.have], ny])
        self.ny2 = np.concatenate([self.ny2[:self.have], ny2])
        self.have = cap

    def block(self, c0: int, c1: int):
        """(shifted centers, float64 norms, squared norms in the accumulation
        dtype) of centers [c0, c1): from the cache, or read afresh (not kept)."""
        if c1 <= self.have:
            return self.sh[c0:c1], self.ny[c0:c1], self.ny2[c0:c1]
        sh = self.yget(self.near[c0:c1])
        sh -= self.pivot
        ny, ny2 = _sq_norms(sh)
        return sh, ny, ny2

    def __getitem__(self, ids) -> np.ndarray:
        """The unshifted centers ids (for the exact ranking of over-full rows)."""
        return self.yget(self.near[ids])


def _group(values, rows, ra, s2, near, near_lb2, yget, pivot, rep, b: _Bounds, out) -> None:
    """Candidates for the rows of one pivot: in chunks of rows, a first GEMM
    with the centers nearest the pivot bounds each row's nearest distance D
    from above, so its nearest center lies within a + D of the pivot; rows
    are then sorted by how many centers that reach holds and searched in
    tiles of about _TILE row x center pairs. s2: the squared norms of the
    shifted rows fl(x - pivot), rounded up into the accumulation dtype."""
    mn = int(near.size)
    c = int(pivot.shape[0])
    # the most centers one worker holds at once
    wide = max(2 * _PROBE, (2 * _ROW_CHUNK_BYTES) // (pivot.itemsize * max(1, c)))
    cs = _Near(yget, near, pivot, wide)
    chunk = max(1, _TILE // max(c, _PROBE))
    for s in range(0, int(rows.size), chunk):
        rows_c = rows[s:s + chunk]
        ra_c = ra[s:s + chunk]
        v = values(rows_c)
        xs = v - pivot
        nx2_acc = s2[s:s + chunk]
        nx = np.sqrt(nx2_acc.astype(np.float64))
        big = ~np.isfinite(nx)
        if big.any():  # the squared norm overflowed the accumulation dtype
            nx[big] = np.sqrt(np.einsum("ij,ij->i", xs[big], xs[big], dtype=np.float64))
        if mn > 2 * _PROBE:
            m0 = _PROBE
            cs.upto(m0)
            # centers x rows, so that the minimum runs down the columns
            g0 = cs.sh[:m0] @ xs.T
            g0 *= -2.0
            g0 += cs.ny2[:m0, None]
            # min_j fl(g_ij + nx2_i) = fl(min_j g_ij + nx2_i) (rounding is
            # monotone): the nearest probe center's GEMM distance, bounded with
            # the probe's largest norm (still an upper bound of D^2)
            d0 = g0.min(0)
            del g0
            d0 += nx2_acc
            ub = d0.astype(np.float64) + b.kappa * (nx + cs.ny[:m0].max()) ** 2 + b.tiny
            reach = (ra_c + np.sqrt(np.maximum(ub, 0.0))) ** 2 * (1.0 + 2.0 * b.kernel_rel) + b.tiny
            reach = np.minimum(reach, (2.0 * ra_c) ** 2 * (1.0 + 2.0 * b.kernel_rel) + b.tiny)
            need = np.maximum(np.searchsorted(near_lb2, reach, side="right"), 1)
            o = np.argsort(need.astype(np.uint16) if mn < 1 << 16 else need, kind="stable")
            need = need[o]
        else:
            o = None
            need = np.full(rows_c.size, mn, dtype=np.int64)
        cs.upto(min(int(need[-1]), wide))  # one read for the chunk's tiles
        cnt = int(rows_c.size)
        t = 0
        while t < cnt:
            # a tile: rows whose reach holds at most about 1.5x the centers
            # of its first row's (little GEMM wasted, few tiles)
            lim = int(need[t]) * 3 // 2 + 32
            e = int(np.searchsorted(need, lim, side="right"))
            e = max(t + 1, min(e, t + max(1, _TILE // int(need[max(t, e - 1)]))))
            m_here = int(need[e - 1])
            if m_here > wide:
                # the rest reach more centers than a worker keeps: searched
                # together, block of centers by block
                idx = slice(t, cnt) if o is None else o[t:]
                ids = _wide(xs[idx], nx2_acc[idx], nx[idx], ra_c[idx], v[idx], cs, near_lb2, need[t:], wide, b)
                out[rows_c[idx]] = rep[near[ids]]
                break
            idx = slice(t, e) if o is None else o[t:e]
            cs.upto(m_here)
            if _C is not None:
                g = xs[idx] @ cs.sh[:m_here].T
                ids = _certify_fused(g, nx2_acc[idx], cs.ny2[:m_here], nx[idx], cs.ny[:m_here], v, idx, cs, b)
            else:
                g = _gemm_part(xs[idx], cs.sh[:m_here], cs.ny2[:m_here])
                g += nx2_acc[idx][:, None]
                ids = _certify(g, nx[idx], cs.ny[:m_here], v[idx], cs, b)
            out[rows_c[idx]] = rep[near[ids]]
            t = e


def _wide(xs, nx2, nx, ra, v, cs: _Near, near_lb2, need, wide: int, b: _Bounds) -> np.ndarray:
    """_certify for rows (sorted by need, the centers their reach holds) that
    reach more centers than one block holds. A first pass over the blocks
    finds each row's smallest GEMM distance (and the bound ub of _certify
    from it), which also narrows each row's reach; a second pass collects the
    centers whose lower bound is within ub; rows with more than k are ranked
    by exact float64 distances. Each block is read once a pass, and each row
    meets only the blocks within its reach. The same candidates as one tile."""
    r = xs.shape[0]
    need = np.asarray(need, dtype=np.int64)
    dmin = np.full(r, np.inf, dtype=xs.dtype)
    ny_at = np.zeros(r)
    batch = max(1, _TILE // wide)

    def blocks(upto):
        """(c0, block, rows in reach of it) for the blocks within upto[-1]."""
        for c0 in range(0, int(upto.max()), wide):
            first = int(np.searchsorted(upto, c0, side="right"))  # rows reaching past c0
            yield c0, cs.block(c0, min(int(upto.max()), c0 + wide)), first

    for c0, (sh, ny, ny2), first in blocks(need):
        for s in range(first, r, batch):
            e = min(r, s + batch)
            g = _gemm_part(xs[s:e], sh, ny2)
            g += nx2[s:e, None]
            j = np.argmin(g, axis=1)
            d = g[np.arange(e - s), j]
            better = d < dmin[s:e]  # strict: the lowest column keeps ties
            dmin[s:e][better] = d[better]
            ny_at[s:e][better] = ny[j[better]]
    d0 = dmin.astype(np.float64) + b.kappa * (nx + ny_at) ** 2 + b.tiny
    ub = d0 * (1.0 + b.kernel_rel) + b.tiny
    reach = (ra + np.sqrt(np.maximum(d0, 0.0))) ** 2 * (1.0 + 2.0 * b.kernel_rel) + b.tiny
    need2 = np.minimum(need, np.maximum(np.searchsorted(near_lb2, reach, side="right"), 1))
    o = np.argsort(need2, kind="stable")
    need2 = need2[o]
    hr, hc, hk = [], [], []
    for c0, (sh, ny, ny2), first in blocks(need2):
        for s in range(first, r, batch):
            rows = o[s:s + batch]
            g = _gemm_part(xs[rows], sh, ny2)
            g += nx2[rows, None]
            thr = np.nextafter((ub[rows] + b.kappa * (nx[rows] + ny.max()) ** 2 + b.tiny).astype(g.dtype), np.inf)
            rr, cc = np.nonzero(g <= thr[:, None])
            key = g[rr, cc].astype(np.float64)
            rr = rows[rr]
            keep = key - b.kappa * (nx[rr] + ny[cc]) ** 2 - b.tiny <= ub[rr]
            hr.append(rr[keep])
            hc.append(cc[keep] + c0)
            hk.append(key[keep])
    hit_r, hit_c, key = np.concatenate(hr), np.concatenate(hc), np.concatenate(hk)
    # the same order as one tile's hits (by row, then column)
    srt = np.lexsort((hit_c, hit_r))
    hit_r, hit_c, key = hit_r[srt], hit_c[srt], key[srt]
    per_row = np.bincount(hit_r, minlength=r)
    few = per_row[hit_r] <= b.k
    ids = _rank_by(hit_r[few], hit_c[few], key[few], r, b.k)
    many = np.flatnonzero(per_row > b.k)
    if many.size:
        ids[many] = _rank_exact(hit_r[~few], hit_c[~few], v, cs, r, b.k)[many]
    return ids


def _gemm_part(xs: np.ndarray, ys: np.ndarray, ny2: np.ndarray) -> np.ndarray:
    """||y'||^2 - 2 x'.y' (rows x centers) in the accumulation dtype: one
    GEMM; the scaling by -2 is exact."""
    g = xs @ ys.T
    g *= -2.0
    g += ny2[None, :]
    return g


def _certify_fused(g, nx2, ny2, nx, ny, v, idx, y_near, b: _Bounds) -> np.ndarray:
    """_certify through the C++ epilogue (one pass over the tile in cache):
    g holds the GEMM's x'.y', the kernel forms ||y'||^2 - 2 x'.y' + ||x'||^2
    as _gemm_part and _certify do. v[idx]: the tile's rows, unshifted."""
    cand, counts, over_r, over_c = _C.certify_tile(g, nx2, ny2, nx, ny, b.kappa, b.tiny, b.kernel_rel, b.k,
                                                   num_threads=1)
    if over_r.size:
        over = np.unique(over_r)
        cand[over] = _rank_exact(np.asarray(over_r, dtype=np.int64), np.asarray(over_c, dtype=np.int64),
                                 v[idx], y_near, g.shape[0], b.k)[over]
    return cand


def _rank_exact(hit_r, hit_c, v, y_near, r: int, k: int) -> np.ndarray:
    """(r, k) columns: each listed row's k candidates nearest in exact float64
    (unshifted values), the first repeated to fill; rows without hits get -1."""
    key = np.empty(hit_r.size, dtype=np.float64)
    for s in range(0, int(hit_r.size), 1 << 15):
        diff = v[hit_r[s:s + (1 << 15)]].astype(np.float64) - y_near[hit_c[s:s + (1 << 15)]].astype(np.float64)
        key[s:s + (1 << 15)] = (diff * diff).sum(1)
    return _rank_by(hit_r, hit_c, key, r, k)


def _certify(d, nx, ny, v, y_near, b: _Bounds) -> np.ndarray:
    """From a tile's GEMM distances d (rows x centers, shifted data) and the
    norms of the shifted rows (nx) and centers (ny): (rows, k) columns of d
    holding each row's candidates (the first one repeated to fill)."""
    r, _ = d.shape
    k, kappa, tiny = b.k, b.kappa, b.tiny
    j0 = np.argmin(d, axis=1)
    ar = np.arange(r)
    # an upper bound of each row's nearest squared distance, widened by the
    # kernel's own rounding
    ub = (d[ar, j0].astype(np.float64) + kappa * (nx + ny[j0]) ** 2 + tiny) * (1.0 + b.kernel_rel) + tiny
    # prefilter with the largest center norm (the threshold rounded up into
    # d's dtype, so no pair that passes the bound is lost), then the per-pair
    # bound in float64
    thr = (ub + kappa * (nx + ny.max()) ** 2 + tiny).astype(d.dtype)
    thr = np.nextafter(thr, np.full_like(thr, np.inf))
    hit_r, hit_c = np.nonzero(d <= thr[:, None])
    key = d[hit_r, hit_c].astype(np.float64)
    keep = key - kappa * (nx[hit_r] + ny[hit_c]) ** 2 - tiny <= ub[hit_r]
    hit_r, hit_c, key = hit_r[keep], hit_c[keep], key[keep]
    # rank each row's candidates: by the GEMM distance when they all fit, by
    # exact float64 distances (unshifted values) when a row has more than k
    per_row = np.bincount(hit_r, minlength=r)
    few = per_row[hit_r] <= k
    ids = _rank_by(hit_r[few], hit_c[few], key[few], r, k)
    many = np.flatnonzero(per_row > k)
    if many.size:
        ids[many] = _rank_exact(hit_r[~few], hit_c[~few], v, y_near, r, k)[many]
    return ids


def _rank_by(hit_r, hit_c, key, r: int, k: int) -> np.ndarray:
    """(r, k): each listed row's hits ordered by key (ties by position), the
    first repeated to fill; rows without hits get -1."""
    o = np.lexsort((key, hit_r))
    hit_r, hit_c = hit_r[o], hit_c[o]
    per_row = np.bincount(hit_r, minlength=r)
    first = np.cumsum(per_row) - per_row
    rank = np.arange(hit_r.size) - first[hit_r]
    sel = rank < k
    ids = np.full((r, k), -1, dtype=np.int64)
    ids[hit_r[sel], rank[sel]] = hit_c[sel]
    return np.where(ids < 0, ids[:, :1], ids)


def _release(problem: Problem, start: int, stop: int) -> None:
    if isinstance(problem.x, np.ndarray):
        _memory.release_rows(problem.x, start, stop)


def nearest_candidates(problem: Problem, k: int = K_OUT, centers=None,
                       values: Optional[Values] = None) -> np.ndarray:
    """(N, k) int64 certified candidates (see `certified_candidates`).
    centers: an (M, C) array of center vectors (as the kernel sees rows;
    NumPy or torch), or None for the problem's initial centers (labeled rows,
    then center vectors; indices then point into that concatenation).
    values(rows): pool rows as the kernel sees them (NumPy or torch)."""
    values = values or default_values(problem)
    src = _Centers.of_problem(problem, values) if centers is None else centers
    return certified_candidates(problem, src, values, k)

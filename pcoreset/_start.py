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

1. Duplicate center vectors are merged (the lowest index represents them).
2. P ~ 2 sqrt(M) pivots are chosen among the centers by farthest-first
   traversal, and every row is assigned to a nearby pivot r (an approximate
   GEMM argmin is enough); a = d(x, r) is computed exactly (float64).
3. The pivot is itself a center, so the nearest center y* of x is at most a
   away, and d(y*, r) <= d(y*, x) + d(x, r) <= 2a (triangle inequality).
   Only centers within 2a of the pivot (a float64 lower bound of their
   distance, with its rounding bound) are searched for the rows of that pivot:
   on clustered pools that is the row's own cluster.
4. Rows and centers are shifted by the pivot before the GEMM, so the GEMM's
   rounding scales with ||x - r|| + ||y - r|| (the cluster's size), not with
   the norms of the rows. For each pair a rigorous bound E on the GEMM's error
   is known (below); every center whose lower bound D - E does not exceed the
   best upper bound min(D + E) of its row is a candidate, so the nearest
   center (and every center the kernel's own rounding could prefer) is always
   among them. A row with more than K_OUT candidates gets them ranked by exact
   float64 distances first.

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

Cost: the GEMM work is the sum over rows of the centers near their pivot,
about N * (M / clusters) * C on clustered pools instead of N * M * C; the
elementwise epilogue runs on cache-sized tiles. benchmarks/RESULTS.md
("Labeled start") has the measured figures.

Crossover of the two methods (2-core AMD EPYC, float32, clustered pools):
the exact pass wins below about 1e9 values of work and the certified search
above a few 1e9, so the switch stays at N * M * C = 2e9.
"""
from __future__ import annotations

import contextlib
import math
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
# Elements of one tile (rows x centers): 8 MiB of float32, read twice by the
# fused epilogue while it is still in the last-level cache; larger tiles
# amortise the per-tile work (gathers, norms, the bounding GEMM).
_TILE = 1 << 21
_METHODS = ("exact", "certified")
# Centers nearest the pivot in the certified search's first, bounding GEMM
# (on clustered pools 32 bound each row's nearest distance within a few per
# cent of the truth; more cost more than they save).
_PROBE = 32
# Row chunks of the start's passes over the pool and over the centers:
# bytes of one chunk's largest block (its values or its distances).
_ROW_CHUNK_BYTES = 8 << 20
# Bytes of one block of center-to-pivot lower bounds (float64).
_PAIR_BYTES = 16 << 20
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
    cand_rows, cand_vecs = split_candidates(nearest_candidates(problem, values=values), labeled.size)
    if labeled.size:
        state.seed_rows_with_candidates(labeled, cand_rows)
    if vecs is not None:
        state.seed_vectors_with_candidates(vecs, cand_vecs)


def add_rows(backend: Backend, state: KCenterState, problem: Problem, rows: np.ndarray) -> None:
    """Pool rows become centers of a running state (rows labeled out of
    order): the exact pass, or certified candidates for large products."""
    if use_exact(problem.n, rows.size, problem.c, backend.exact_max_work):
        state.seed_rows(rows)
        return
    values = backend.start_values(state, problem)
    cand = nearest_candidates(problem, centers=values(rows), values=values)
    state.seed_rows_with_candidates(rows, cand)


def add_vectors(backend: Backend, state: KCenterState, problem: Problem, vecs: np.ndarray) -> None:
    """Center vectors become centers of a running state: the exact pass, or
    certified candidates for large products."""
    if use_exact(problem.n, vecs.shape[0], problem.c, backend.exact_max_work):
        state.seed_vectors(vecs)
        return
    values = backend.start_values(state, problem)
    state.seed_vectors_with_candidates(vecs, nearest_candidates(problem, centers=vecs, values=values))


def _host(a, dtype) -> np.ndarray:
    """A C-contiguous host array of `dtype` from a NumPy array or a torch
    tensor (copied to the host when it lives on a device)."""
    if not isinstance(a, np.ndarray) and hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.ascontiguousarray(a, dtype=dtype)


def _host_values(values: Values, dtype) -> Values:
    return lambda rows: _host(values(np.asarray(rows, dtype=np.int64)), dtype)


def initial_centers(problem: Problem, values: Values) -> np.ndarray:
    """(L + M, C) in the accumulation dtype: the labeled rows (as `values`
    gives them) followed by the center vectors."""
    acc = acc_dtype(problem)
    parts = []
    if problem.labeled.size:
        parts.append(_host(values(problem.labeled), acc))
    if problem.centers is not None:
        parts.append(_host(problem.centers, acc))
    if not parts:
        return np.zeros((0, problem.c), dtype=acc)
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


def split_candidates(cand: np.ndarray, n_rows: int):
    """Certified candidates over [labeled rows; center vectors] as two arrays
    for the states' two calls of the start (seed_rows_with_candidates and
seed_vectors_with_candidates): indices into the labeled rows and into
    the vectors, -1 where a candidate belongs to the other set."""
    rows = np.where(cand < n_rows, cand, -1)
    vecs = np.where(cand >= n_rows, cand - n_rows, -1)
    return rows, vecs


# --------------------------------------------------------------------------- certified search


def _unit_roundoff(dtype) -> float:
    return float(np.finfo(dtype).eps) / 2.0


def _dedupe(y: np.ndarray):
    """(unique rows, representative) with representative[j] the lowest index
    of the j-th unique row in y, in the order of the representatives."""
    _, first = np.unique(y, axis=0, return_index=True)
    # keep the centers in their original order (deterministic pivots)
    rep = np.sort(first).astype(np.int64)
    return y[rep], rep


def _pivots(y: np.ndarray, p: int) -> np.ndarray:
    """p rows of y chosen by farthest-first traversal, as indices into y:
    k-center greedy from the pool mean, run on a kernel state over y."""
    small = y.shape[0] * y.shape[1] < (1 << 22)  # one thread: a parallel region costs more
    problem = make_problem(y, None, p, simplex=False, from_logits=False, temperature=1.0, prune=True,
                           num_threads=1 if small else 0, progress=None, name="centers")
    picks, _ = backends.choose(problem).make_state(problem).run(p)
    return np.asarray(picks, dtype=np.int64)


def certified_candidates(problem: Problem, centers, values: Optional[Values] = None,
                         k: int = K_OUT) -> np.ndarray:
    """(N, k) int64 indices into `centers` (M, C): for every row, candidate
    centers that contain its nearest center (and every center within the
    kernel's rounding of it). Rows with fewer than k candidates repeat their
    first one. `values(rows)` gives pool rows as the kernel sees them (NumPy
    or torch; default: `default_values`). Taken (labeled) rows get
    candidates too; the kernels ignore them."""
    acc = acc_dtype(problem)
    values = _host_values(values or default_values(problem), acc)
    centers = _host(centers, acc)
    n = problem.n
    m = int(centers.shape[0])
    if m == 0:
        raise ValueError("certified_candidates needs at least one center")
    out = np.empty((n, k), dtype=np.int64)
    y, rep = _dedupe(centers)
    if y.shape[0] <= k:
        out[:] = _pad(rep[None, :], k)
        return out
    # The BLAS runs on one thread here: its GEMMs alternate with the package's
    # own OpenMP regions (row values, the fused epilogue), and OpenBLAS's
    # threads spin-wait after each GEMM, so on a machine with few cores a
    # multi-threaded BLAS starves those regions (measured on 2 cores: the
    # start at 200k x 100, L = 2k took 3.2-3.5 s with two BLAS threads and
    # 1.8-2.2 s with one). The OpenMP regions keep the start's threads.
    threads = _threads.available(problem.num_threads)
    with _threads.blas_threads(1):
        _search(problem, values, y, rep, k, out, threads)
    return out


def _pad(ids: np.ndarray, k: int) -> np.ndarray:
    """(R, j) -> (R, k): cut to k columns or repeat the first column."""
    if ids.shape[1] >= k:
        return ids[:, :k]
    return np.concatenate([ids, np.repeat(ids[:, :1], k - ids.shape[1], axis=1)], axis=1)


def _search(problem: Problem, values: Values, y: np.ndarray, rep: np.ndarray, k: int,
            out: np.ndarray, threads: int) -> None:
    n, c = problem.n, problem.c
    acc = y.dtype
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
        k=k, threads=threads)
    m = int(y.shape[0])
    p = n_pivots(m)
    piv = _pivots(y, p)
    r_acc = y[piv]
    r_norm2 = (r_acc * r_acc).sum(1)

    # 2. each row's pivot (approximate argmin) and an upper bound of its
    # distance to it, kept compact (int32, the accumulation dtype rounded up)
    pivot_of = np.empty(n, dtype=np.int32)
    a = np.empty(n, dtype=acc)
    step = max(1, min(n, _ROW_CHUNK_BYTES // (acc.itemsize * max(c, p))))

    def assign(s: int) -> None:
        e = min(n, s + step)
        v = values(np.arange(s, e))
        d = v @ r_acc.T
        d *= -2.0
        d += r_norm2[None, :]
        j = np.argmin(d, axis=1)
        del d
        pivot_of[s:e] = j
        v -= r_acc[j]
        a2 = np.einsum("ij,ij->i", v, v, dtype=np.float64)
        # direct differences in the accumulation dtype err by at most
        # (C + 2) u relative (squared), widened twice
        a[s:e] = _round_up(np.sqrt(a2 * (1.0 + 2.0 * (c + 2) * u)) + b.tiny, acc)
        _release(problem, s, e)

    _each(assign, range(0, n, step), threads)

    # 3-4. pivot by pivot
    order = np.argsort(pivot_of, kind="stable").astype(np.int32 if n < 2**31 else np.int64)
    counts = np.bincount(pivot_of, minlength=p)
    del pivot_of
    first = np.concatenate([[0], np.cumsum(counts)]).tolist()
    counts = counts.tolist()
    # center-to-pivot distances: float64 GEMMs over blocks of centers and
    # pivots with their rounding bound, no float64 copy of all centers
    kappa64 = 2.0 * (c + 10) * _unit_roundoff(np.float64)
    pblock = max(1, min(p, _PAIR_BYTES // (8 * max(1, m))))
    for g0 in range(0, p, pblock):
        g1 = min(p, g0 + pblock)
        if sum(counts[g0:g1]) == 0:
            continue
        lb2 = _center_pivot_lb2(y, r_acc[g0:g1], kappa64)

        def search(g: int) -> None:
            rows = order[first[g]:first[g + 1]].astype(np.int64)
            ra = a[rows].astype(np.float64)
            lg = lb2[:, g - g0]
            near = np.flatnonzero(lg <= b.reach2(float(ra.max())))
            near = near[np.argsort(lg[near], kind="stable")]
            _group(values, rows, ra, near, lg[near], y[near], r_acc[g], rep, b, out)

        # the largest groups first, so that the workers finish together
        todo = [g for g in range(g0, g1) if counts[g]]
        todo.sort(key=lambda g: -counts[g])
        _each(search, todo, threads)


def _each(fn, items, threads: int) -> None:
    """fn(item) for every item, on `threads` Python threads: the work of
    each item is GEMMs, NumPy passes and the fused epilogue, which release
    the GIL, on one BLAS thread each (items write disjoint rows of the
    output, so the result does not depend on the order)."""
    items = list(items)
    if threads <= 1 or len(items) <= 1:
        for it in items:
            fn(it)
        return
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=min(threads, len(items))) as pool:
        for f in [pool.submit(fn, it) for it in items]:
            f.result()


def _round_up(x64: np.ndarray, dtype) -> np.ndarray:
    """x64 (float64) in `dtype`, rounded up (an upper bound stays one)."""
    x = x64.astype(dtype)
    if x.dtype != np.float64:
        low = x.astype(np.float64) < x64
        x[low] = np.nextafter(x[low], np.asarray(np.inf, dtype=x.dtype))
    return x


def _center_pivot_lb2(y: np.ndarray, r: np.ndarray, kappa64: float) -> np.ndarray:
    """(M, P) float64 lower bounds of the squared distances of the centers y
    to the pivots r: a float64 GEMM in chunks of centers, less its rounding
    bound (the float64 values of y and r are exact)."""
    r64 = r.astype(np.float64)
    rn2 = (r64 * r64).sum(1)
    rn = np.sqrt(rn2)
    out = np.empty((y.shape[0], r.shape[0]), dtype=np.float64)
    step = max(1, _ROW_CHUNK_BYTES // (8 * max(y.shape[1], r.shape[0])))
    for s in range(0, y.shape[0], step):
        y64 = y[s:s + step].astype(np.float64)
        yn2 = (y64 * y64).sum(1)
        o = out[s:s + step]
        np.matmul(y64, r64.T, out=o)
        o *= -2.0
        o += yn2[:, None]
        o += rn2[None, :]
        o -= kappa64 * (np.sqrt(yn2)[:, None] + rn[None, :]) ** 2
        np.maximum(o, 0.0, out=o)
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
    return np.sqrt(np.einsum("ij,ij->i", a, a, dtype=np.float64)), np.einsum("ij,ij->i", a, a)


def _group(values, rows, ra, near, near_lb2, y_near, pivot, rep, b: _Bounds, out) -> None:
    """Candidates for the rows of one pivot: in chunks of rows, a first GEMM
    with the centers nearest the pivot bounds each row's nearest distance D
    from above, so its nearest center lies within a + D of the pivot; rows
    are then sorted by how many centers that reach holds and searched in
    tiles of about _TILE row x center pairs."""
    shifted = y_near - pivot
    ny, ny2_acc = _sq_norms(shifted)
    mn = int(near.size)
    c = int(y_near.shape[1])
    chunk = max(1, _TILE // max(c, _PROBE))
    for s in range(0, int(rows.size), chunk):
        rows_c = rows[s:s + chunk]
        ra_c = ra[s:s + chunk]
        v = values(rows_c)
        xs = v - pivot
        nx, nx2_acc = _sq_norms(xs)
        if mn > 2 * _PROBE:
            m0 = _PROBE
            g0 = _gemm_part(xs, shifted[:m0], ny2_acc[:m0])
            g0 += nx2_acc[:, None]
            # the nearest probe center's bound, taken with the probe's
            # largest norm: still an upper bound of D^2
            ub = g0.min(1).astype(np.float64) + b.kappa * (nx + ny[:m0].max()) ** 2 + b.tiny
            del g0
            reach = (ra_c + np.sqrt(np.maximum(ub, 0.0))) ** 2 * (1.0 + 2.0 * b.kernel_rel) + b.tiny
            reach = np.minimum(reach, (2.0 * ra_c) ** 2 * (1.0 + 2.0 * b.kernel_rel) + b.tiny)
            need = np.maximum(np.searchsorted(near_lb2, reach, side="right"), 1)
            o = np.argsort(need, kind="stable")
            need = need[o]
        else:
            o = None
            need = np.full(rows_c.size, mn, dtype=np.int64)
        cnt = int(rows_c.size)
        t = 0
        while t < cnt:
            # a tile: rows whose reach holds at most about 1.5x the centers
            # of its first row's (little GEMM wasted, few tiles)
            lim = int(need[t]) * 3 // 2 + 32
            e = int(np.searchsorted(need, lim, side="right"))
            e = max(t + 1, min(e, t + max(1, _TILE // int(need[max(t, e - 1)]))))
            m_here = int(need[e - 1])
            idx = slice(t, e) if o is None else o[t:e]
            g = _gemm_part(xs[idx], shifted[:m_here], ny2_acc[:m_here])
            if _C is not None:
                ids = _certify_fused(g, nx2_acc[idx], nx[idx], ny[:m_here], v[idx], y_near[:m_here], b)
            else:
                g += nx2_acc[idx][:, None]
                ids = _certify(g, nx[idx], ny[:m_here], v[idx], y_near[:m_here], b)
            out[rows_c[idx]] = rep[near[ids]]
            t = e


def _gemm_part(xs: np.ndarray, ys: np.ndarray, ny2: np.ndarray) -> np.ndarray:
    """||y'||^2 - 2 x'.y' (rows x centers) in the accumulation dtype: one
    GEMM; the scaling by -2 is exact."""
    g = xs @ ys.T
    g *= -2.0
    g += ny2[None, :]
    return g


def _certify_fused(g, nx2, nx, ny, v, y_near, b: _Bounds) -> np.ndarray:
    """_certify through the C++ epilogue (one pass over the tile in cache):
    g holds ||y'||^2 - 2 x'.y', the kernel adds ||x'||^2 as _certify does."""
    cand, counts, over_r, over_c = _C.certify_tile(g, nx2, nx, ny, b.kappa, b.tiny, b.kernel_rel, b.k,
                                                   num_threads=1)
    if over_r.size:
        over = np.unique(over_r)
        cand[over] = _rank_exact(np.asarray(over_r, dtype=np.int64), np.asarray(over_c, dtype=np.int64),
                                 v, y_near, g.shape[0], b.k)[over]
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
    y = initial_centers(problem, values) if centers is None else centers
    return certified_candidates(problem, y, values, k)

"""The certified search's error model, and the tests that apply it.

Why the GEMM needs care. ||x||^2 + ||y||^2 - 2 x.y in float32 has an error of
about C * 6e-8 * (||x|| + ||y||)^2. Probability rows have norms near 1, while
two confident rows of one class (softmax of a logit gap of 12-20) lie 1e-7 to
1e-5 apart: the plain GEMM cannot order their distances (its top few
candidates miss the nearest center for most rows). So rows and centers are
shifted by a nearby pivot first, which makes the rounding scale with the
cluster's size, and every distance carries a rigorous bound E.

The bound. With u the unit roundoff of the accumulation dtype, a' = fl(x - r)
and b' = fl(y - r) (componentwise relative error u), the shift moves the
distance by at most u (||a'|| + ||b'||); each length-C dot product, in any
summation order, errs by at most gamma_C ||a'|| ||b'|| (gamma_C = C u / (1 - C
u)); the two additions of the GEMM identity and the rounded norms add 3u
(||a'|| + ||b'||)^2. In total |D - d^2| <= (C + 10) u (||a'|| + ||b'||)^2; the
code uses twice that (kappa), plus an absolute term for gradual underflow
(tiny). The GEMMs are NumPy's (the BLAS it links: IEEE products and sums,
fused or not, in any order), so the start needs no torch.

The candidates of a row: with j0 its smallest GEMM distance, ub = (D_j0 +
E_j0)(1 + rel) + tiny bounds its nearest squared distance from above, widened
by the kernel's own rounding (rel); every center with D_j - E_j <= ub is a
candidate, so the nearest center, and every center the kernel's rounding
could prefer, is among them. A row with more than k candidates gets them
ranked by exact float64 distances.

The per-element passes run in C++ (csrc/cpu/certify.cpp) when the extension
is built, in NumPy otherwise; both give the same candidate sets.
"""
from __future__ import annotations

import numpy as np

try:
    from .. import _C
except ImportError:
    _C = None


class Bounds:
    """kappa and tiny of the pair bound |D - d^2| <= kappa (nx + ny)^2 + tiny,
    the kernel's relative rounding kernel_rel, and k candidates per row."""

    def __init__(self, acc, c: int, k: int) -> None:
        u = unit_roundoff(acc)
        fi = np.finfo(acc)
        self.kappa = 2.0 * (c + 10) * u
        # gradual underflow: each of the O(C) operations errs by at most half
        # the smallest subnormal
        self.tiny = 4.0 * (c + 10) * float(fi.smallest_normal) * float(fi.eps)
        # the kernel's own rounding (direct differences, lane sums) may prefer
        # a center up to this relative amount farther in exact arithmetic
        self.kernel_rel = 4.0 * (c + 4) * u
        # d(x, r) <= ||fl(x - r)|| / (1 - u): a row's squared shifted norm widened
        self.widen = 1.0 + 2.0 * (c + 2) * u
        # the center-to-pivot bounds' float64 GEMMs
        self.kappa64 = 2.0 * (c + 10) * unit_roundoff(np.float64)
        self.k = k

    def reach2(self, a):
        """Squared distance from the pivot within which the nearest center of a
        row at distance a from it lies (and any center the kernel's rounding
        could prefer)."""
        return (2.0 * a) ** 2 * (1.0 + 2.0 * self.kernel_rel) + self.tiny

    def reach2_near(self, a, d2):
        """reach2, narrowed for a row whose nearest squared distance is at
        most d2 (the nearest center lies within a + d of the pivot)."""
        near = (a + np.sqrt(np.maximum(d2, 0.0))) ** 2 * (1.0 + 2.0 * self.kernel_rel) + self.tiny
        return np.minimum(near, self.reach2(a))


def unit_roundoff(dtype) -> float:
    return float(np.finfo(dtype).eps) / 2.0


def round_up(x64: np.ndarray, dtype) -> np.ndarray:
    """x64 (float64) in `dtype`, rounded up (an upper bound stays one)."""
    x = x64.astype(dtype)
    if x.dtype != np.float64:
        low = x.astype(np.float64) < x64
        x[low] = np.nextafter(x[low], np.asarray(np.inf, dtype=x.dtype))
    return x


def round_down(x64: np.ndarray, dtype) -> np.ndarray:
    """x64 (float64, >= 0) in `dtype`, rounded down (a lower bound stays one)."""
    x = x64.astype(dtype)
    high = x.astype(np.float64) > x64
    x[high] = np.nextafter(x[high], np.asarray(0, dtype=x.dtype))
    return x


def sq_norms(a: np.ndarray):
    """(float64 norms, squared norms in a's dtype) of the rows of a."""
    if _C is not None:
        return _C.row_norms(np.ascontiguousarray(a))
    return np.sqrt(np.einsum("ij,ij->i", a, a, dtype=np.float64)), np.einsum("ij,ij->i", a, a)


def assign_pivots(v: np.ndarray, r: np.ndarray, r_t: np.ndarray, r_norm2: np.ndarray):
    """(pivot, s2) of rows v: each row's nearest pivot by the GEMM identity
    (an approximation: any pivot keeps the search exact) and an upper bound
    s2 of the squared norm of fl(v - pivot), in v's dtype rounded up.
    r_t: the pivots r transposed; r_norm2: their squared norms."""
    g = v @ r_t
    if _C is not None:
        return _C.assign_pivots(v, g, r, r_norm2)
    g *= -2.0  # exact
    g += r_norm2[None, :]
    j = np.argmin(g, axis=1)
    del g
    v = v - r[j]
    return j, round_up(np.einsum("ij,ij->i", v, v, dtype=np.float64), v.dtype)


def center_pivot_lb2(yget, m: int, r: np.ndarray, b: Bounds, chunk_bytes: int) -> np.ndarray:
    """(M, P) float32 lower bounds of the squared distances of the centers
    to the pivots r: float64 GEMMs over chunks of centers, less their
    rounding bound (the float64 values of the centers and pivots are exact),
    rounded down."""
    r64 = r.astype(np.float64)
    rn2 = (r64 * r64).sum(1)
    rn = np.sqrt(rn2)
    out = np.empty((m, r.shape[0]), dtype=np.float32)
    step = max(1, (chunk_bytes // 2) // (8 * max(r.shape[1], r.shape[0])))
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
        err *= b.kappa64
        o -= err
        del err
        np.maximum(o, 0.0, out=o)
        out[s:e] = round_down(o, np.float32)
    return out


def tile_candidates(g, nx2, ny2, nx, ny, rows, y_near, b: Bounds) -> np.ndarray:
    """(tile rows, k) columns of a tile holding each row's candidates (the
    first repeated to fill). g: the GEMM's x'.y' (rows x centers, shifted
    by the pivot; overwritten); nx2, ny2: the squared norms of the shifted rows
    and centers in the accumulation dtype, nx, ny: their float64 norms;
    rows(): the tile's unshifted rows and y_near[ids] the unshifted centers
    (read only for rows with more than k candidates)."""
    if _C is not None:
        cand, _, over_r, over_c = _C.certify_tile(g, nx2, ny2, nx, ny, b.kappa, b.tiny, b.kernel_rel, b.k,
                                                  num_threads=1)
        if over_r.size:
            over = np.unique(over_r)
            cand[over] = rank_exact(np.asarray(over_r, dtype=np.int64), np.asarray(over_c, dtype=np.int64),
                                    rows(), y_near, g.shape[0], b.k)[over]
        return cand
    g *= -2.0  # exact
    g += ny2[None, :]
    g += nx2[:, None]
    return certify(g, nx, ny, rows, y_near, b)


def certify(d, nx, ny, rows, y_near, b: Bounds) -> np.ndarray:
    """tile_candidates in NumPy, from the GEMM distances d = ||y'||^2 - 2
    x'.y' + ||x'||^2 (also the blockwise search's last step)."""
    r, _ = d.shape
    k, kappa, tiny = b.k, b.kappa, b.tiny
    j0 = np.argmin(d, axis=1)
    ar = np.arange(r)
    ub = (d[ar, j0].astype(np.float64) + kappa * (nx + ny[j0]) ** 2 + tiny) * (1.0 + b.kernel_rel) + tiny
    # prefilter with the largest center norm (the threshold rounded up into
    # d's dtype, so no pair that passes the bound is lost), then the per-pair
    # bound in float64
    thr = (ub + kappa * (nx + ny.max()) ** 2 + tiny).astype(d.dtype)
    thr = np.nextafter(thr, np.full_like(thr, np.inf))
    hit_r, hit_c = np.nonzero(d <= thr[:, None])
    key = d[hit_r, hit_c].astype(np.float64)
    keep = key - kappa * (nx[hit_r] + ny[hit_c]) ** 2 - tiny <= ub[hit_r]
    return rank(hit_r[keep], hit_c[keep], key[keep], rows, y_near, r, k)


def rank(hit_r, hit_c, key, rows, y_near, r: int, k: int) -> np.ndarray:
    """(r, k) candidates from the hits (row, column, GEMM distance), ordered
    by row then column: by the GEMM distance where a row's hits all fit, by
    exact float64 distances (unshifted values) where it has more than k."""
    per_row = np.bincount(hit_r, minlength=r)
    few = per_row[hit_r] <= k
    ids = rank_by(hit_r[few], hit_c[few], key[few], r, k)
    many = np.flatnonzero(per_row > k)
    if many.size:
        ids[many] = rank_exact(hit_r[~few], hit_c[~few], rows(), y_near, r, k)[many]
    return ids


def rank_exact(hit_r, hit_c, v, y_near, r: int, k: int) -> np.ndarray:
    """(r, k) columns: each listed row's k candidates nearest in exact float64
    (unshifted values v of the rows), the first repeated to fill; rows
    without hits get -1."""
    key = np.empty(hit_r.size, dtype=np.float64)
    step = 1 << 15
    for s in range(0, int(hit_r.size), step):
        diff = v[hit_r[s:s + step]].astype(np.float64) - y_near[hit_c[s:s + step]].astype(np.float64)
        key[s:s + step] = (diff * diff).sum(1)
    return rank_by(hit_r, hit_c, key, r, k)


def rank_by(hit_r, hit_c, key, r: int, k: int) -> np.ndarray:
    """(r, k): each listed row's hits ordered by key (ties by position), the
    first repeated to fill; rows without hits get -1."""
    o = np.lexsort((key, hit_r))
    hit_r, hit_c = hit_r[o], hit_c[o]
    per_row = np.bincount(hit_r, minlength=r)
    first = np.cumsum(per_row) - per_row
    rank_ = np.arange(hit_r.size) - first[hit_r]
    sel = rank_ < k
    ids = np.full((r, k), -1, dtype=np.int64)
    ids[hit_r[sel], rank_[sel]] = hit_c[sel]
    return np.where(ids < 0, ids[:, :1], ids)

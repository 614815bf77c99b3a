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
        self.acc = np.dtype(acc)

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


class Projection:
    """A lower bound of a pair's squared distance from d orthonormal
    directions P (the top principal directions of a sample of the centers).
    With a = x - r and b = y - r (a row and a center shifted by the pivot r)
    and R = I - P^T P,

        ||a - b||^2 = ||P(a - b)||^2 + ||R(a - b)||^2
                   >= ||Pa - Pb||^2 + (||Ra|| - ||Rb||)^2,

    so a center whose bound exceeds an upper bound of the row's nearest
    squared distance cannot be its nearest (nor one the kernel's rounding
    could prefer). What is computed, and what its rounding costs:
    - Pa: a float32 GEMM of the shifted rows the search already holds
      (fl(x - r)) with P rounded to float32 (in float64 for float64 pools):
      within eps_r ||a|| of the exact Pa, eps_r = (sqrt(d) (C + 2) + 2) u;
    - Pb: every center projected once in float64, less P r: within eps_c of
      the exact Pb (an absolute term, a few 1e-13 of the centers' norms);
    - Pa . Pb: a float32 GEMM of Pa and Pb rounded to float32: relative error
      (d + 2) u32;
    - ||Ra|| = sqrt(||a||^2 - ||Pa||^2) cancels where a lies near the span of
      P: each residual norm is an interval [lo, hi] that holds the exact
      one, from intervals of ||a|| and ||Pa||;
    - P's rows are orthonormal only to rounding (delta, measured).
    In all the bound errs by at most (e t + ea) t + ea0 with t = ||a|| + ||b||,
    and the code uses twice that. At C = 1000, d = 64, e is about 1e-3: a
    pair within a thousandth of the cluster's squared scale of a row's bound
    is kept, so the bound stays rigorous and nearly as tight as the exact one.

    Each pair the bound keeps costs a direct dot product (C++); the GEMM of
    the projections costs about d / C of a tile's."""

    # beyond this the rounding terms would blunt the bound: not used
    MAX_EPS = 5e-3

    # rows of the sample the directions come from (at most)
    SAMPLE = 1024

    @staticmethod
    def row_eps(c: int, d: int, acc) -> float:
        """The rows' projection error bound, relative to their norm."""
        return ((float(np.sqrt(d)) * (c + 2) + 2) * unit_roundoff(acc) + unit_roundoff(np.float32)) * 1.01

    def __init__(self, ys: np.ndarray, d: int, acc, yget, m: int, chunk_bytes: int) -> None:
        ys = ys[::max(1, -(-ys.shape[0] // self.SAMPLE))]
        y = np.array(ys, dtype=np.float64)  # a copy: centered in place
        c = y.shape[1]
        y -= y.mean(axis=0)
        k = min(c, d + 8)
        # a few subspace iterations (seeded: the candidates do not change
        # from run to run), then the top d directions of that subspace
        q = np.linalg.qr(y.T @ (y @ np.random.default_rng(0).standard_normal((c, k))))[0]
        for _ in range(2):
            q = np.linalg.qr(y.T @ (y @ q))[0]
        vt = np.linalg.svd(y @ q, full_matrices=False)[2]
        p = np.linalg.qr(q @ vt[:d].T)[0].T
        self.p = np.ascontiguousarray(p)
        self.p_acc = np.ascontiguousarray(self.p.astype(acc))
        self.d = d = int(p.shape[0])
        self.c = c
        u64 = unit_roundoff(np.float64)
        u32 = unit_roundoff(np.float32)
        self.u = u = unit_roundoff(acc)
        self.u64 = u64
        # ||P P^T - I||_2 <= its Frobenius norm <= d times its largest entry
        self.delta = float(np.abs(self.p @ self.p.T - np.eye(d)).max()) * d + u64
        sd = float(np.sqrt(d))
        self.eps_r = self.row_eps(c, d, acc)
        self.eps_g = (d + 2) * u32 * 1.01
        # subnormal float32 values: absolute errors of the projections
        self.sub = 4.0 * sd * (c + 2) * 2.0 ** -149
        # every distinct center projected once, in float64
        self.py = np.empty((m, d))
        ymax = 0.0
        step = max(1, chunk_bytes // (8 * max(c, 1)))
        for s0 in range(0, m, step):
            yy = yget(np.arange(s0, min(m, s0 + step))).astype(np.float64)
            self.py[s0:s0 + yy.shape[0]] = yy @ self.p.T
            if yy.size:
                nrm = float(np.sqrt(np.einsum("ij,ij->i", yy, yy).max()))
                ymax = nrm if nrm > ymax else ymax
        self.ymax = ymax

    def group(self, pivot: np.ndarray) -> "GroupProjection":
        return GroupProjection(self, pivot)


class GroupProjection:
    """The projected bound's terms in one pivot's group (see Projection)."""

    def __init__(self, pr: Projection, pivot: np.ndarray) -> None:
        self.pr = pr
        r64 = pivot.astype(np.float64)
        self.p_r = pr.p @ r64
        d, c, u64 = pr.d, pr.c, pr.u64
        sd = float(np.sqrt(d))
        # Pb = fl(P y) - fl(P r): both float64 GEMMs and the subtraction
        self.eps_c = (sd * (c + 2) + 2) * u64 * (pr.ymax + float(np.sqrt(r64 @ r64))) * 1.01
        ec, er, eg, dl = self.eps_c + pr.sub, pr.eps_r, pr.eps_g, pr.delta
        # the pair bound's terms, t = ||a|| + ||b|| (upper bounds): the
        # projections' identity q against ||Pa - Pb||^2 (eps_g; its float64
        # sums and the residual term's rounding, (2 d + 24) u64),
        # ||P(a - b)|| >= sqrt(q) - eps_r ||a|| - eps_c, delta; twice that
        self.e = 2.0 * (1.4 * eg + 2.2 * er + 3.3 * dl + (2 * d + 24) * u64)
        self.ea = 2.0 * (2.8 * eg * ec + 2.2 * ec + 2.2 * er * ec)
        self.ea0 = 2.0 * (1.4 * eg * ec * ec + 2.2 * ec * ec) + (d + 1) * 2.0 ** -140

    def _residual(self, n, pn, err_p):
        """[lo, hi] of ||R v|| from the f64 norm n of the stored vector fl(v)
        (within u of v) and the norm pn of its projection (within err_p of
        ||P v||)."""
        pr = self.pr
        rel = 1.01 * pr.u + (pr.c + 2) * pr.u64
        n_hi = n * (1.0 + rel)
        n_lo = n * (1.0 - rel)
        p_hi = pn + err_p
        p_lo = np.maximum(pn - err_p, 0.0)
        slack = 1.01 * pr.delta * n_hi * n_hi
        with np.errstate(invalid="ignore"):
            lo = np.sqrt(np.maximum(n_lo * n_lo - p_hi * p_hi - slack, 0.0)) * (1.0 - 4.0 * pr.u64)
            hi = np.sqrt(np.maximum(n_hi * n_hi - p_lo * p_lo + slack, 0.0)) * (1.0 + 4.0 * pr.u64)
        return lo, hi, n_hi

    def rows(self, xs: np.ndarray, nx: np.ndarray):
        """(Pa in float32 (n x d), [||Pa||^2, lo, hi, ||a|| bound] as 4 rows)
        of the shifted rows xs (fl(x - r), float64 norms nx). A row that is
        not finite gets ||Pa||^2 = NaN: its bounds never drop a pair."""
        pr = self.pr
        pa = (xs @ pr.p_acc.T).astype(np.float32)
        pn2 = np.einsum("ij,ij->i", pa, pa, dtype=np.float64)
        lo, hi, n_hi = self._residual(nx, np.sqrt(pn2), pr.eps_r * nx * (1.0 + 2.0 * pr.u) + pr.sub)
        return pa, _guard(np.stack([pn2, lo, hi, n_hi]))

    def cols(self, ids: np.ndarray, ny: np.ndarray):
        """(Pb in float32, [||Pb||^2, lo, hi, ||b|| bound] as 4 rows) of the
        centers ids (indices of the distinct centers), whose shifted values
        fl(y - r) have float64 norms ny."""
        pb = self.pr.py[ids] - self.p_r
        pn2 = np.einsum("ij,ij->i", pb, pb)
        lo, hi, n_hi = self._residual(ny, np.sqrt(pn2), self.eps_c)
        return pb.astype(np.float32), _guard(np.stack([pn2, lo, hi, n_hi]))


def _guard(t: np.ndarray) -> np.ndarray:
    """Vectors with a non-finite term get ||P v||^2 = NaN (their pairs are
    never dropped), lo = 0, hi = inf."""
    bad = ~np.isfinite(t).all(axis=0) | ~(t[3] < 1e18)
    if bad.any():
        t[0, bad] = np.nan
        t[1, bad] = 0.0
        t[2, bad] = np.inf
        t[3, bad] = 0.0
    return t

"""`badge`: k-means++ seeding on gradient embeddings (Ash et al., 2020).

A sample's gradient embedding is the last-layer gradient of the loss at its
predicted label, g = a (x) h with a = onehot(argmax p) - p (C) and h its
feature vector (D): a C*D vector, 51,200 floats at C = 100, D = 512, so the
N x (C*D) matrix is never formed. Both quantities k-means++ needs come from
the factors:

    ||a (x) h||^2        = ||a||^2 ||h||^2
    <a (x) h, b (x) g>   = <a, b> <h, g>

so the squared distance of every row to a new center costs one GEMV over
the (N, C) factor and one over the (N, D) factor: N*(C+D) values read per
step instead of N*C*D, which is less for every C, D >= 2 (this is also why
the embeddings are not handed to the C*D-wide k-center kernel).

D^2 sampling keeps a running minimum of each row's squared distance to the
centers picked so far and updates it with the new center only, never
recomputing over all centers. Three exact lower bounds skip work (each
with a 1e-6 relative slack against rounding, so no row that could move is
skipped):

- triangle inequality: d(c_nearest, c_new) >= 2 d(row, c_nearest) means the
  row cannot get closer (the per-row prune of the k-center kernel);
- norms: d(row, c_new) >= | ||g_row|| - ||g_new|| |;
- Cauchy-Schwarz on the wide factor: after the (N, C) GEMV,
  d^2 >= ||g||^2 + ||g_new||^2 - 2 |<a, a_new>| ||h|| ||h_new||, so only the
  rows this bound leaves (about 1% on clustered pools) read their D values.
"""
from __future__ import annotations

import numpy as np

from ._common import as_generator, check_matrix, check_pool, pool_probs, require
from .base import PoolState, RngLike, Strategy

# Below this fraction of rows left to update, gather them; above it a dense
# pass over all rows is cheaper than the gather.
_GATHER_FRACTION = 0.3
# Relative slack on every pruning test, so that rounding never skips a row
# that the new center could still move.
_SLACK = 1e-6


def _matvec(m: np.ndarray, v: np.ndarray) -> np.ndarray:
    """m @ v through the BLAS. Its kernels for short rows may read past the
    operands into memory that holds NaN bit patterns and raise a spurious
    'invalid value' flag (seen on AVX-512 CPUs, with correct products), so
    that flag is ignored here; a NaN in the result (a real one: inf * 0) is
    computed again without the BLAS, where NumPy's error state applies."""
    with np.errstate(invalid="ignore"):
        r = m @ v
    if np.isnan(r).any():
        r = (m * v).sum(axis=1)
    return r


def _subset(need: np.ndarray, n: int):
    """The rows to read (None: all of them, a dense pass is cheaper)."""
    count = int(np.count_nonzero(need))
    return None if count > _GATHER_FRACTION * n else np.flatnonzero(need)


def gradient_factors(probs: np.ndarray, features: np.ndarray):
    """The factors of the gradient embeddings: a = onehot(argmax p) - p
    (N, C) and h = features (N, D), both float32 (float64 for float64 input),
    and the squared norms ||a||^2 ||h||^2 (N,) float64."""
    dtype = np.float64 if np.float64 in (probs.dtype, features.dtype) else np.float32
    a = np.negative(probs, dtype=dtype)
    a[np.arange(a.shape[0]), probs.argmax(axis=1)] += 1.0
    h = np.ascontiguousarray(features, dtype=dtype)
    sq = np.einsum("ij,ij->i", a, a).astype(np.float64) * np.einsum("ij,ij->i", h, h)
    return a, h, sq


def kmeanspp_factored(a: np.ndarray, h: np.ndarray, sq: np.ndarray, budget: int,
                      gen: np.random.Generator) -> np.ndarray:
    """k-means++ seeding on the rows a_i (x) h_i: the first center is the row
    with the largest norm (lowest row on ties), each next one is drawn with
    probability proportional to its squared distance to the nearest center.
    When every remaining row is at distance 0 (duplicates), the rest are drawn
    uniformly. Returns (budget,) int64 rows in the order picked."""
    n = a.shape[0]
    picks = np.empty(budget, dtype=np.int64)
    if budget == 0:
        return picks
    min_d2 = np.full(n, np.inf)
    nearest = np.zeros(n, dtype=np.int64)  # which center (position in picks)
    # zeros, not empty: only rows [:k] are ever used, but an OpenBLAS gemv
    # kernel (seen on an AVX-512 CPU) can read past them, and NaN bit patterns
    # left in uninitialised memory then raise a spurious "invalid value" flag
    center_a = np.zeros((budget, a.shape[1]), dtype=a.dtype)
    center_h = np.zeros((budget, h.shape[1]), dtype=h.dtype)
    taken = np.zeros(n, dtype=bool)
    norm = np.sqrt(sq)
    h_norm = np.sqrt(np.einsum("ij,ij->i", h, h).astype(np.float64))
    new = int(np.argmax(sq))
    for k in range(budget):
        picks[k] = new
        taken[new] = True
        center_a[k], center_h[k] = a[new], h[new]
        if k == budget - 1:
            break
        if k == 0:
            need = np.ones(n, dtype=bool)
        else:
            # Squared distances from the earlier centers to the new one.
            cc2 = sq[picks[:k]] + sq[new] - 2.0 * _matvec(center_a[:k], a[new]).astype(np.float64) \
                * _matvec(center_h[:k], h[new]).astype(np.float64)
            # d(c, new) >= 2 d(row, c) <=> cc2 >= 4 min_d2: the row cannot move.
            # The slack keeps rounding from pruning a row that could move.
            need = cc2[nearest] * (1.0 - _SLACK) < 4.0 * min_d2
            # d(row, new) >= | ||row|| - ||new|| |: the norms alone can rule a row out.
            need &= (norm - norm[new]) ** 2 * (1.0 - _SLACK) < min_d2
        # The (N, C) factor first (C < D): with |<h, h_new>| <= ||h|| ||h_new||
        # (Cauchy-Schwarz) it bounds the distance from below, and rows the
        # bound rules out skip the wider (N, D) factor.
        rows = _subset(need, n)
        dot_a = _matvec(a if rows is None else a[rows], a[new]).astype(np.float64)
        sq_r = sq if rows is None else sq[rows]
        hn_r = h_norm if rows is None else h_norm[rows]
        lower = sq_r + sq[new] - 2.0 * np.abs(dot_a) * hn_r * h_norm[new]
        current = min_d2 if rows is None else min_d2[rows]
        keep = lower * (1.0 - _SLACK) < current
        rows = np.flatnonzero(keep) if rows is None else rows[keep]
        dot_a, sq_r, current = dot_a[keep], sq_r[keep], current[keep]
        if rows.size:
            dense = rows.size > _GATHER_FRACTION * n
            dot_h = _matvec(h, h[new])[rows] if dense else _matvec(h[rows], h[new])
            d2 = np.maximum(sq_r + sq[new] - 2.0 * dot_a * dot_h, 0.0)
            closer = d2 < current
            min_d2[rows[closer]] = d2[closer]
            nearest[rows[closer]] = k
        min_d2[new] = 0.0
        nearest[new] = k
        weights = np.where(taken, 0.0, min_d2)
        cum = np.cumsum(weights)
        total = cum[-1]
        if total > 0:
            new = min(int(np.searchsorted(cum, gen.random() * total, side="right")), n - 1)
            while weights[new] == 0.0:  # gen.random() * total rounded up to total
                new -= 1
        else:
            rest = np.flatnonzero(~taken)
            picks[k + 1:] = gen.choice(rest, size=budget - k - 1, replace=False, shuffle=True)
            return picks
    return picks


class BadgeStrategy(Strategy):
    """BADGE: k-means++ seeding on the gradient embeddings of the unlabeled
    samples (labeled samples play no part, as in Ash et al.).

    Prediction p: pool.probs, or the mixed 0.5 * softmax(ce) + 0.5 * softmax(kd)
    (the paper's default "badge"). Needs pool.features (N, D). Seeded by `rng`
    (the first pick, the largest gradient norm, is deterministic).
    """

    name = "badge"

    def select(self, pool: PoolState, budget: int, *, rng: RngLike = None) -> np.ndarray:
        checked = check_pool(pool, budget, self.name)
        gen = as_generator(rng)
        feats = require(pool, "features", self.name, "(N, D) student features")
        feats = check_matrix(feats, "pool.features", checked.n)
        rows = checked.unlabeled_rows
        probs = pool_probs(pool, self.name, checked.n, rows)
        if checked.budget == 0:
            return np.zeros(0, dtype=np.int64)
        a, h, sq = gradient_factors(probs, feats[rows])
        picks = kmeanspp_factored(a, h, sq, checked.budget, gen)
        return checked.ids(rows[picks])

"""`coreset`: k-center greedy on L2-normalised student features (Sener &
Savarese), the labeled samples as the initial centers."""
from __future__ import annotations

import numpy as np

from ..select import kcenter_greedy
from ._common import check_matrix, check_pool, require
from .base import PoolState, RngLike, Strategy


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows divided by max(||row||, eps) (zero rows stay zero), in x's dtype."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    return (x / np.maximum(norms, eps).astype(x.dtype)[:, None]).astype(x.dtype, copy=False)


class CoresetStrategy(Strategy):
    """Farthest-first traversal in feature space.

    On unit vectors ||u - v||^2 = 2 - 2 cos(u, v), so Euclidean k-center
    greedy on the normalised features picks exactly what cosine-distance
    k-center picks (the paper's coreset baseline), through the fast kernel.
    Needs pool.features (N, D); pool.center_features (M, D), labeled samples
    outside the pool, are extra initial centers. Deterministic; `rng` is unused.

    Args:
        backend: the `kcenter_greedy` backend ("auto", "cpu", "torch", ...).
        num_threads: CPU threads for the kernel (0 = all).
    """

    name = "coreset"

    def __init__(self, backend: str = "auto", num_threads: int = 0) -> None:
        self.backend = backend
        self.num_threads = num_threads

    def select(self, pool: PoolState, budget: int, *, rng: RngLike = None) -> np.ndarray:
        checked = check_pool(pool, budget, self.name)
        feats = require(pool, "features", self.name, "(N, D) student features")
        feats = check_matrix(feats, "pool.features", checked.n)
        if checked.budget == 0:
            return np.zeros(0, dtype=np.int64)
        unit = l2_normalise(feats)
        centers = None
        if pool.center_features is not None:
            centers = l2_normalise(check_matrix(pool.center_features, "pool.center_features", None))
        rows = kcenter_greedy(unit, checked.labeled_rows, checked.budget, centers=centers,
                              backend=self.backend, num_threads=self.num_threads)
        return checked.ids(rows)

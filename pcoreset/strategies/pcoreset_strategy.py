"""`pcoreset`: k-center greedy in the student's probability space (the
paper's method), the labeled samples as the initial centers."""
from __future__ import annotations

import numpy as np

from ..select import select
from ..selector import Selector
from ._common import check_matrix, check_pool, pool_probs
from .base import PoolState, RngLike, Strategy


class PCoreSetStrategy(Strategy):
    """Farthest-first traversal on the mixed prediction
    0.5 * softmax(ce) + 0.5 * softmax(kd) (or pool.probs), Euclidean
    distance, through `pcoreset.select`, with the labeled rows and
    pool.center_probs (labeled samples outside the pool) as the initial
    centers. Deterministic; `rng` is unused.

    Args:
        backend: the `select` backend ("auto", "cpu", "torch", ...).
        num_threads: CPU threads for the kernel (0 = all).
    """

    name = "pcoreset"
    can_continue = True

    def __init__(self, backend: str = "auto", num_threads: int = 0) -> None:
        self.backend = backend
        self.num_threads = num_threads

    def select(self, pool: PoolState, budget: int, *, rng: RngLike = None) -> np.ndarray:
        checked = check_pool(pool, budget, self.name)
        probs = pool_probs(pool, self.name, checked.n)
        if checked.budget == 0:
            return np.zeros(0, dtype=np.int64)
        centers = None
        if pool.center_probs is not None:
            centers = check_matrix(pool.center_probs, "pool.center_probs", None)
        rows = select(probs, checked.labeled_rows, checked.budget, centers=centers, backend=self.backend,
                      num_threads=self.num_threads)
        return checked.ids(rows)

    def selector(self, pool: PoolState):
        checked = check_pool(pool, 0, self.name)
        probs = np.ascontiguousarray(pool_probs(pool, self.name, checked.n))
        centers = None
        if pool.center_probs is not None:
            centers = check_matrix(pool.center_probs, "pool.center_probs", None)
        return probs, Selector(probs, checked.labeled_rows, centers=centers, backend=self.backend,
                               num_threads=self.num_threads)

    def restore_selector(self, space: np.ndarray, state: dict):
        return Selector.from_state_dict(space, state, backend=self.backend, num_threads=self.num_threads)

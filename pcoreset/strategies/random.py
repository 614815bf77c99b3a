"""`random`: uniform sampling of the unlabeled pool, seeded."""
from __future__ import annotations

import numpy as np

from ._common import as_generator, check_pool
from .base import PoolState, RngLike, Strategy


class RandomStrategy(Strategy):
    """Picks `budget` unlabeled samples uniformly without replacement.

    The same `rng` seed (or a Generator in the same state) gives the same picks.
    Needs only pool.indices and pool.labeled_mask.
    """

    name = "random"

    def select(self, pool: PoolState, budget: int, *, rng: RngLike = None) -> np.ndarray:
        checked = check_pool(pool, budget, self.name)
        gen = as_generator(rng)
        if checked.budget == 0:
            return np.zeros(0, dtype=np.int64)
        rows = gen.choice(checked.unlabeled_rows, size=checked.budget, replace=False, shuffle=True)
        return checked.ids(rows)

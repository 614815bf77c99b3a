"""`entropy`: uncertainty sampling on the student's mixed prediction."""
from __future__ import annotations

import numpy as np

from ._common import check_pool, pool_probs, row_entropy
from .base import PoolState, RngLike, Strategy


class EntropyStrategy(Strategy):
    """Picks the unlabeled samples whose prediction has the largest Shannon
    entropy, most uncertain first (exact ties: lowest pool row first).

    The prediction is pool.probs, or 0.5 * softmax(ce) + 0.5 * softmax(kd)
    from the two heads' logits (as in the paper's "uncertainty" baseline).
    Deterministic; `rng` is accepted for the common interface and unused.
    """

    name = "entropy"

    def select(self, pool: PoolState, budget: int, *, rng: RngLike = None) -> np.ndarray:
        checked = check_pool(pool, budget, self.name)
        rows = checked.unlabeled_rows
        probs = pool_probs(pool, self.name, checked.n, rows)
        if checked.budget == 0:
            return np.zeros(0, dtype=np.int64)
        ent = row_entropy(probs)
        order = np.argsort(-ent, kind="stable")[: checked.budget]
        return checked.ids(rows[order])

"""`class_balanced`: spread the budget over predicted classes, favouring the
classes that are rare in the labeled set."""
from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError, InvalidTypeError
from ._common import as_generator, as_numpy, check_pool, pool_probs
from .base import PoolState, RngLike, Strategy


def class_weights(labeled_counts: np.ndarray) -> np.ndarray:
    """Inverse labeled frequency, add-one smoothed: 1 / (count + 1) per class
    (all ones when nothing is labeled)."""
    return 1.0 / (labeled_counts.astype(np.float64) + 1.0)


def allocate(budget: int, labeled_counts: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Queries per class (C,) for the classes in `present` (bool, C).

    Each present class gets weight 1 / (labeled count + 1) (uniform when
    nothing is labeled), normalised; class k gets floor(budget * w_k), and
    the queries left by rounding go one each to the highest weights (rarest
    classes; ties to the lower class id).
    """
    c = labeled_counts.shape[0]
    alloc = np.zeros(c, dtype=np.int64)
    classes = np.flatnonzero(present)
    if budget == 0 or classes.size == 0:
        return alloc
    w = class_weights(labeled_counts)[classes]
    w = w / w.sum()
    alloc[classes] = np.floor(budget * w).astype(np.int64)
    left = budget - int(alloc.sum())
    by_weight = classes[np.argsort(-w, kind="stable")]
    alloc[by_weight[:left]] += 1
    return alloc


class ClassBalancedStrategy(Strategy):
    """Class-balanced random selection (the paper's "classbalanced" baseline).

    Unlabeled samples are grouped by predicted class (argmax of pool.probs or
    of the mixed prediction). The budget is allocated by `allocate`: inverse
    frequency of each class among the labeled samples' labels (add-one
    smoothed, so a class with no labeled sample weighs most). Each class
    gives a random subset of its allocation (all of it when it has fewer
    samples); what that leaves unfilled is drawn at random from the rest of
    the pool. Order: classes from the rarest, then the fill. Seeded by `rng`.

    Needs pool.labels where labeled_mask is True (not when nothing is labeled).
    """

    name = "class_balanced"

    def select(self, pool: PoolState, budget: int, *, rng: RngLike = None) -> np.ndarray:
        checked = check_pool(pool, budget, self.name)
        gen = as_generator(rng)
        rows = checked.unlabeled_rows
        probs = pool_probs(pool, self.name, checked.n, rows)
        c = probs.shape[1]
        counts = self._labeled_counts(pool, checked.labeled_rows, c, checked.n)
        if checked.budget == 0:
            return np.zeros(0, dtype=np.int64)
        predicted = probs.argmax(axis=1)
        per_class = np.bincount(predicted, minlength=c)
        alloc = allocate(checked.budget, counts, per_class > 0)

        # Rows grouped by predicted class, then a random subset of each group.
        by_class = np.argsort(predicted, kind="stable")
        starts = np.concatenate(([0], np.cumsum(per_class)))
        class_order = np.lexsort((np.arange(c), -class_weights(counts)))  # rarest first, lower id on ties
        picked = []
        for k in class_order:
            take = min(int(alloc[k]), int(per_class[k]))
            if take:
                group = by_class[starts[k]:starts[k + 1]]
                picked.append(gen.choice(group, size=take, replace=False, shuffle=True))
        chosen = np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
        left = checked.budget - chosen.size
        if left:
            rest_mask = np.ones(rows.size, dtype=bool)
            rest_mask[chosen] = False
            fill = gen.choice(np.flatnonzero(rest_mask), size=left, replace=False, shuffle=True)
            chosen = np.concatenate((chosen, fill))
        return checked.ids(rows[chosen])

    def _labeled_counts(self, pool: PoolState, labeled_rows: np.ndarray, c: int, n: int) -> np.ndarray:
        if labeled_rows.size == 0:
            return np.zeros(c, dtype=np.int64)
        if pool.labels is None:
            raise InvalidInputError(
                f"{self.name} needs pool.labels for the {labeled_rows.size} labeled samples; it is None")
        labels = as_numpy(pool.labels, "pool.labels")
        if labels.shape != (n,):
            raise InvalidInputError(f"pool.labels has shape {labels.shape}; expected ({n},)")
        if labels.dtype.kind not in "iu":
            raise InvalidTypeError(f"pool.labels must hold integers, got dtype {labels.dtype}")
        known = labels[labeled_rows].astype(np.int64)
        bad = (known < 0) | (known >= c)
        if bad.any():
            row = int(labeled_rows[np.flatnonzero(bad)[0]])
            raise InvalidInputError(
                f"pool.labels[{row}]={int(labels[row])} is not a class id in [0, {c}) "
                f"(the prediction has {c} classes)")
        return np.bincount(known, minlength=c)

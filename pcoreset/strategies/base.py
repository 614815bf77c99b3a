"""The interface every selection strategy implements."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import numpy as np


@dataclass
class PoolState:
    """What a strategy may look at. Row k describes dataset sample indices[k].

    indices:      (N,) int64, dataset-absolute ids of the rows (what strategies return).
    labeled_mask: (N,) bool, True where the sample is already labeled.
    ce_logits:    (N, C) logits of the student's CE head, or None.
    kd_logits:    (N, C) logits of the student's KD head, or None.
    probs:        (N, C) prediction to use; when None it is the mixed prediction
                  0.5 * softmax(ce) + 0.5 * softmax(kd) (or one head's softmax
                  when only one is given).
    features:     (N, D) penultimate-layer student features, or None.
    labels:       (N,) int64 labels, meaningful where labeled_mask is True, or None.
    num_classes:  C, when it cannot be read from the logits.
    center_probs: (M, C) probabilities of labeled samples that are not rows of
                  this pool (e.g. from another loader): extra initial centers
                  for `pcoreset`, or None.
    center_features: (M, D) features of those samples: extra initial centers
                  for `coreset`, or None.
    """

    indices: np.ndarray
    labeled_mask: np.ndarray
    ce_logits: Optional[np.ndarray] = None
    kd_logits: Optional[np.ndarray] = None
    probs: Optional[np.ndarray] = None
    features: Optional[np.ndarray] = None
    labels: Optional[np.ndarray] = None
    num_classes: Optional[int] = None
    center_probs: Optional[np.ndarray] = None
    center_features: Optional[np.ndarray] = None


RngLike = Union[np.random.Generator, int, None]


class Strategy:
    """select(pool, budget, rng=...) -> (budget,) int64 dataset-absolute ids of
    unlabeled samples, unique, in the strategy's order of preference. Raises
    PoolExhaustedError when budget exceeds the unlabeled count.

    A strategy that can *continue* a selection (``can_continue = True``) also
    offers it as an incremental :class:`pcoreset.Selector`: a driver asks
    :meth:`selector` for the selection, takes its first picks, and when a
    person cannot label some of them it excludes those rows and takes the
    next picks of the same selection. Other strategies select again."""

    name = "?"
    #: Whether :meth:`selector` and :meth:`restore_selector` are available.
    can_continue = False

    def select(self, pool: PoolState, budget: int, *, rng: RngLike = None) -> np.ndarray:
        raise NotImplementedError

    def selector(self, pool: PoolState):
        """``(space, selector)`` for a strategy that can continue: `space` is the
        (N, C) array the selection runs on (row k = ``pool.indices[k]``; save it
        to restore the selector later) and `selector` a pcoreset.Selector
        over it with the labeled rows as centers, whose ``next(budget)``
        returns the row positions of ``select(pool, budget)``."""
        raise NotImplementedError(f"strategy {self.name!r} cannot continue a selection")

    def restore_selector(self, space: np.ndarray, state: dict):
        """The selector that `state` (its ``state_dict()``) describes, over `space`."""
        raise NotImplementedError(f"strategy {self.name!r} cannot continue a selection")

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
    PoolExhaustedError when budget exceeds the unlabeled count."""

    name = "?"

    def select(self, pool: PoolState, budget: int, *, rng: RngLike = None) -> np.ndarray:
        raise NotImplementedError

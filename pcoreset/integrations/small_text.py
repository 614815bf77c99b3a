"""PCoreSet as a small-text query strategy (small-text 1.4).

.. code-block:: python

    from small_text import PoolBasedActiveLearner
    from pcoreset.integrations.small_text import PCoreSet

    learner = PoolBasedActiveLearner(clf_factory, PCoreSet(), train)
    learner.initialize_data(indices_initial, y_initial)
    indices_queried = learner.query(num_samples=20)   # indices into `train`

The strategy scores the whole dataset with the classifier
(``clf.predict_proba(dataset)``) and runs k-center greedy in that
probability space with the labeled rows as the initial centers: the result
equals ``pcoreset.select(clf.predict_proba(dataset), indices_labeled, n)``.
Rows that are neither labeled nor in the unlabeled pool (small-text's
ignored samples) take no part: they are not centers and are never picked.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..errors import InvalidInputError
from ._common import ScoresFn, check_options, classifier_scores, require, select_among

_st = require("small_text", "small-text", "1.4.x")
_qs = require("small_text.query_strategies", "small-text", "1.4.x")
_sparse = require("scipy.sparse", "scipy", ">=1.7")

__all__ = ["PCoreSet"]


class PCoreSet(_qs.QueryStrategy):
    """PCoreSet: k-center greedy in the classifier's probability space.

    Args:
        backend: the `pcoreset.select` backend ("auto", "cpu", "cuda",
            "faiss", "torch").
        from_logits: select on logits instead of probabilities: the rows
            are ``softmax(logits / temperature)``. The logits come from
            `scores_fn` or, without it, from ``clf.decision_function(dataset)``
            (small-text's own classifiers have none, so pass `scores_fn`,
            e.g. ``lambda clf, ds: clf.model.decision_function(ds.x)`` for a
            scikit-learn model wrapped by ``SklearnClassifier``).
        temperature: softmax temperature (> 0), used with `from_logits`.
        scores_fn: optional ``scores_fn(clf, dataset) -> (len(dataset), C)``
            array (probabilities, or logits with `from_logits`), for a
            classifier whose scores are not reached through `predict_proba`.

    A query for more samples than the unlabeled pool holds raises
    small-text's own ``PoolExhaustedException`` (and an empty pool its
    ``EmptyPoolException``), as small-text's strategies do. A classifier
    without `predict_proba` raises `pcoreset.InvalidTypeError` (a
    `TypeError`) naming it. Multi-label data (``y`` as a sparse matrix) is
    refused: its probability rows do not sum to one.

    Attributes:
        radii_: after a query, each pick's distance to its nearest center
            when it was picked (float64, non-increasing; +inf for a first
            pick made with no labeled rows).
    """

    def __init__(self, *, backend: str = "auto", from_logits: bool = False, temperature: float = 1.0,
                 scores_fn: Optional[ScoresFn] = None) -> None:
        check_options(backend, from_logits, temperature, scores_fn)
        self.backend = backend
        self.from_logits = bool(from_logits)
        self.temperature = float(temperature)
        self.scores_fn = scores_fn
        self.radii_: Optional[np.ndarray] = None

    def query(self, clf: Any, dataset: Any, indices_unlabeled: Any, indices_labeled: Any, y: Any,
              n: int = 10) -> np.ndarray:
        """Pick `n` samples of the unlabeled pool.

        Args:
            clf: a trained small-text classifier.
            dataset: the whole dataset (labeled, unlabeled and ignored rows).
            indices_unlabeled: dataset indices of the unlabeled pool.
            indices_labeled: dataset indices of the labeled samples (the
                initial centers).
            y: labels of the labeled samples (single-label only).
            n: how many samples to pick.

        Returns:
            (n,) int64 dataset indices, in the order picked.
        """
        self._validate_query_input(indices_unlabeled, n)
        if _sparse.issparse(y):
            raise InvalidInputError("y is a sparse label matrix (multi-label data); PCoreSet needs single-label "
                                    "probabilities, whose rows sum to one")
        indices_unlabeled = np.asarray(indices_unlabeled, dtype=np.int64).reshape(-1)
        indices_labeled = np.asarray(indices_labeled, dtype=np.int64).reshape(-1)
        n_rows = len(dataset)
        scores = classifier_scores(clf, dataset, n_rows, from_logits=self.from_logits,
                                   scores_fn=self.scores_fn)
        picks, radii = select_among(scores, indices_labeled, indices_unlabeled, int(n),
                                    from_logits=self.from_logits, temperature=self.temperature,
                                    backend=self.backend)
        self.radii_ = radii
        return picks

    def __str__(self) -> str:
        return (f"PCoreSet(backend={self.backend!r}, from_logits={self.from_logits}, "
                f"temperature={self.temperature})")

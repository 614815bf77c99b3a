"""PCoreSet as a modAL query strategy (modAL 0.4, PyPI ``modAL-python``).

.. code-block:: python

    from functools import partial
    from modAL.models import ActiveLearner
    from pcoreset.integrations.modal import pcoreset_sampling

    learner = ActiveLearner(estimator=LogisticRegression(), query_strategy=pcoreset_sampling,
                            X_training=X_initial, y_training=y_initial)
    query_idx, query_inst = learner.query(X_pool, n_instances=10)   # positions in X_pool
    learner.teach(X_pool[query_idx], y_pool[query_idx])
    # options: ActiveLearner(..., query_strategy=partial(pcoreset_sampling, backend="cpu"))

modAL's learner does not know which pool rows are labeled: it keeps its
training data (``learner.X_training``) instead. So the initial centers are
the estimator's probabilities on the training data, as vectors, and the
picks are positions in ``X_pool``. Remove the taught rows from the pool as
modAL's examples do; a training row left in the pool is at distance 0 from
its own center, so it is picked only once every other row is covered.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from ..errors import InvalidInputError, InvalidTypeError, PoolExhaustedError
from ._common import ScoresFn, check_options, classifier_scores, require, select_with_center_vectors

require("modAL", "modAL (PyPI modAL-python)", "0.4.x")

__all__ = ["pcoreset_sampling"]


def _num_rows(X: Any) -> int:
    shape = getattr(X, "shape", None)
    return int(shape[0]) if shape is not None else len(X)


def pcoreset_sampling(classifier: Any, X_pool: Any, n_instances: int = 1, *, backend: str = "auto",
                      from_logits: bool = False, temperature: float = 1.0,
                      scores_fn: Optional[ScoresFn] = None) -> Tuple[np.ndarray, np.ndarray]:
    """PCoreSet query strategy for ``modAL.models.ActiveLearner``.

    Args:
        classifier: the modAL learner (``ActiveLearner``), as modAL passes
            it; a plain fitted scikit-learn classifier works too (then there
            is no training data, and the first pick is the pool row farthest
            from the pool's mean).
        X_pool: (n_pool, ...) the samples to pick from.
        n_instances: how many to pick.
        backend: the `pcoreset.select` backend ("auto", "cpu", "cuda",
            "faiss", "torch").
        from_logits: select on ``softmax(decision_function(X) / temperature)``
            (or on `scores_fn`'s logits) instead of ``predict_proba``. A
            binary classifier's 1-D decision values d are taken as the
            logits [0, d].
        temperature: softmax temperature (> 0), used with `from_logits`.
        scores_fn: optional ``scores_fn(classifier, X) -> (len(X), C)``
            array (probabilities, or logits with `from_logits`).

    Returns:
        (query_idx, radii), the pair modAL 0.4's own strategies return
        (indices, utility of each): ``query_idx`` are int64 positions in
        `X_pool` in the order picked, ``radii`` each pick's distance to its
        nearest center when it was picked (non-increasing). The learner's
        ``query`` turns it into ``(query_idx, X_pool[query_idx])``, and
        ``query(..., return_metrics=True)`` also gives the radii.

    Raises:
        pcoreset.PoolExhaustedError: `n_instances` > the pool's size (modAL's
            own strategies stop on an ``assert`` there).
        pcoreset.InvalidTypeError: the estimator has no ``predict_proba``
            (or no ``decision_function`` with `from_logits`); the message
            names it.
    """
    check_options(backend, from_logits, temperature, scores_fn)
    if isinstance(n_instances, (bool, np.bool_)) or not isinstance(n_instances, (int, np.integer)):
        raise InvalidTypeError(f"n_instances={n_instances!r} must be an integer")
    if n_instances < 1:
        raise InvalidInputError(f"n_instances={n_instances} must be at least 1")
    n_pool = _num_rows(X_pool)
    if n_instances > n_pool:
        raise PoolExhaustedError(n_pool, n_instances, what="n_instances")

    estimator = getattr(classifier, "estimator", classifier)
    pool_scores = classifier_scores(classifier, X_pool, n_pool, from_logits=from_logits, scores_fn=scores_fn,
                                    method_owner=estimator)
    X_training = getattr(classifier, "X_training", None)
    center_scores = None
    if X_training is not None and _num_rows(X_training) > 0:
        center_scores = classifier_scores(classifier, X_training, _num_rows(X_training), from_logits=from_logits,
                                          scores_fn=scores_fn, method_owner=estimator)
    return select_with_center_vectors(pool_scores, center_scores, int(n_instances), from_logits=from_logits,
                                      temperature=temperature, backend=backend)

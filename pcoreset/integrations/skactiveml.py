"""PCoreSet as a scikit-activeml pool query strategy (scikit-activeml 1.0).

.. code-block:: python

    from skactiveml.classifier import SklearnClassifier
    from skactiveml.utils import MISSING_LABEL
    from pcoreset.integrations.skactiveml import PCoreSet

    clf = SklearnClassifier(LogisticRegression(), classes=np.arange(10))
    qs = PCoreSet()
    query_idx = qs.query(X, y, clf, batch_size=10)   # indices into X; y is MISSING_LABEL where unlabeled
    y[query_idx] = oracle(query_idx)

The classifier is fitted on ``(X, y)`` (``fit_clf=True``, as scikit-activeml's
strategies do), its ``predict_proba`` scores the labeled rows and the
candidates, and k-center greedy runs in that probability space with the
labeled rows as the initial centers.
"""
from __future__ import annotations

import warnings
from typing import Any, Optional

import numpy as np

from ._common import (ScoresFn, as_probability_rows, check_options, classifier_scores, distances_before_picks,
                      require, select_with_center_vectors)

_base = require("skactiveml.base", "scikit-activeml", "1.0.x")
_utils = require("skactiveml.utils", "scikit-activeml", "1.0.x")
_sk_base = require("sklearn.base", "scikit-learn", ">=1.6")

__all__ = ["PCoreSet"]


class PCoreSet(_base.SingleAnnotatorPoolQueryStrategy):
    """PCoreSet: k-center greedy in the classifier's probability space.

    Args:
        backend: the `pcoreset.select` backend ("auto", "cpu", "cuda",
            "faiss", "torch").
        from_logits: select on ``softmax(clf.decision_function(X) / temperature)``
            (or on `scores_fn`'s logits) instead of ``predict_proba``: for
            classifiers without probabilities, such as a linear SVM. A
            binary classifier's 1-D decision values d are taken as the
            logits [0, d].
        temperature: softmax temperature (> 0), used with `from_logits`.
        scores_fn: optional ``scores_fn(clf, X) -> (len(X), C)`` array
            (probabilities, or logits with `from_logits`), called on the
            fitted classifier.
        missing_label: the value that marks an unlabeled sample in ``y``.
        random_state: taken, and validated, as by every scikit-activeml
            strategy; PCoreSet is deterministic (ties go to the lowest
            index), so it does not change the picks.

    A batch larger than the candidates follows scikit-activeml's rule: a
    ``UserWarning``, and the batch shrinks to the number of candidates.
    A classifier without `predict_proba` raises `pcoreset.InvalidTypeError`
    (a `TypeError`) naming it.
    """

    def __init__(self, *, backend: str = "auto", from_logits: bool = False, temperature: float = 1.0,
                 scores_fn: Optional[ScoresFn] = None, missing_label: Any = _utils.MISSING_LABEL,
                 random_state: Any = None) -> None:
        check_options(backend, from_logits, temperature, scores_fn)
        super().__init__(missing_label=missing_label, random_state=random_state)
        self.backend = backend
        self.from_logits = from_logits
        self.temperature = temperature
        self.scores_fn = scores_fn

    def query(self, X: Any, y: Any, clf: Any, fit_clf: bool = True, sample_weight: Any = None,
              candidates: Any = None, batch_size: int = 1, return_utilities: bool = False):
        """Pick `batch_size` samples to label.

        Args:
            X: (n_samples, n_features) all samples, labeled and unlabeled.
            y: (n_samples,) labels, `missing_label` where unlabeled.
            clf: a scikit-activeml classifier (e.g. ``SklearnClassifier``).
            fit_clf: fit a clone of `clf` on ``(X, y, sample_weight)`` first.
            sample_weight: (n_samples,) weights for that fit, or None.
            candidates: None (every unlabeled sample), (n_candidates,)
                indices into `X` (labeled ones among them are centers, not
                candidates), or (n_candidates, n_features) samples not in `X`.
            batch_size: how many samples to pick.
            return_utilities: also return the utilities.

        Returns:
            query_indices: (batch_size,) int indices in the order picked:
                into `X`, or into `candidates` when it holds samples.
            utilities (with `return_utilities`): (batch_size, n_samples), or
                (batch_size, n_candidates) when `candidates` holds samples.
                ``utilities[i, j]`` is candidate j's distance to its nearest
                center (the labeled samples and picks 0..i-1) before pick i:
                the coverage radius that pick i maximises. NaN for labeled
                samples, earlier picks and samples that are not candidates.
                With no labeled sample, row 0 holds each candidate's distance
                to the candidates' mean (pcoreset's rule for a first pick).
                Computed in float64 on request only (it costs batch_size
                passes over the candidates).
        """
        X, y, candidates, batch_size, return_utilities = self._validate_data(
            X, y, candidates, batch_size, return_utilities, reset=True)
        _utils.check_type(clf, "clf", _base.SkactivemlClassifier)
        _utils.check_equal_missing_label(clf.missing_label, self.missing_label_)
        _utils.check_scalar(fit_clf, "fit_clf", bool)
        if fit_clf:
            clf = _sk_base.clone(clf)
            clf = clf.fit(X, y) if sample_weight is None else clf.fit(X, y, sample_weight)

        labeled = np.asarray(_utils.labeled_indices(y, missing_label=self.missing_label_), dtype=np.int64)
        with_samples = candidates is not None and candidates.ndim > 1
        if with_samples:
            pool_x, n_columns, columns = candidates, len(candidates), np.arange(len(candidates))
        else:
            if candidates is None:
                columns = np.asarray(_utils.unlabeled_indices(y, missing_label=self.missing_label_), dtype=np.int64)
            else:
                columns = np.setdiff1d(candidates.astype(np.int64), labeled)  # sorted, unique, unlabeled
            pool_x, n_columns = X[columns], len(X)
        if batch_size > len(columns):
            warnings.warn(f"'batch_size={batch_size}' is larger than the number of unlabeled candidates. "
                          f"Instead, 'batch_size={len(columns)}' was set.")
            batch_size = len(columns)

        pool_scores = classifier_scores(clf, pool_x, len(columns), from_logits=self.from_logits,
                                        scores_fn=self.scores_fn)
        center_scores = None
        if labeled.size:
            center_scores = classifier_scores(clf, X[labeled], labeled.size, from_logits=self.from_logits,
                                              scores_fn=self.scores_fn)
        # candidates in increasing index order and the labeled rows as center
        # vectors: the lowest-index tie rule holds in X's numbering
        picks_local, _ = select_with_center_vectors(pool_scores, center_scores, batch_size,
                                                    from_logits=self.from_logits, temperature=self.temperature,
                                                    backend=self.backend)
        query_indices = columns[picks_local]
        if not return_utilities:
            return query_indices
        utilities = np.full((batch_size, n_columns), np.nan)
        self._fill_utilities(utilities, pool_scores, center_scores, columns, picks_local)
        return query_indices, utilities

    def _fill_utilities(self, utilities: np.ndarray, pool_scores, center_scores, columns: np.ndarray,
                        picks_local: np.ndarray) -> None:
        pool = as_probability_rows(pool_scores, from_logits=self.from_logits, temperature=self.temperature)
        centers = None
        if center_scores is not None:
            centers = as_probability_rows(center_scores, from_logits=self.from_logits, temperature=self.temperature)
        shown = distances_before_picks(pool, centers, picks_local, backend=self.backend)
        if centers is None:
            # no center yet: the first pick is the candidate farthest from the mean
            shown[0] = np.sqrt(((pool - pool.mean(axis=0)) ** 2).sum(axis=1))
        taken = np.zeros(len(columns), dtype=bool)
        for i, p in enumerate(picks_local):
            row = shown[i]
            row[taken] = np.nan
            utilities[i, columns] = row
            taken[p] = True

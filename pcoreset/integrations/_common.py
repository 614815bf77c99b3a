"""What the framework adapters share: reading a classifier's scores, and
selecting with labeled rows or with labeled vectors as the initial centers."""
from __future__ import annotations

import importlib
from typing import Any, Callable, Optional, Tuple

import numpy as np

from .. import _start, backends
from .._problem import make_problem, softmax
from ..errors import InvalidInputError, InvalidTypeError
from ..select import select

ScoresFn = Callable[[Any, Any], Any]

# The extra that installs every framework at a version the tests ran with.
INSTALL_HINT = "pip install 'pcoreset[integrations]'"


def require(module: str, framework: str, versions: str):
    """Import a framework or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"this adapter needs {framework} {versions} (import {module!r} failed: {exc}); "
                          f"install it with {INSTALL_HINT}") from exc


def describe(clf: Any) -> str:
    """The classifier's class, and the model it wraps when it is a wrapper
    (small-text's `model`, scikit-activeml's `estimator`, modAL's `estimator`)."""
    text = type(clf).__name__
    for attr in ("model", "estimator", "base_estimator"):
        inner = getattr(clf, attr, None)
        if inner is not None and not isinstance(inner, (str, int, float, bool)):
            return f"{text} wrapping {type(inner).__name__}"
    return text


def check_options(backend: Any, from_logits: Any, temperature: Any, scores_fn: Any) -> None:
    """Constructor-time checks, so that a bad option fails before the first
    query rather than after a model was trained."""
    if not isinstance(backend, str):
        raise InvalidTypeError(f"backend={backend!r} must be a string such as 'auto', 'cpu' or 'torch'")
    if not isinstance(from_logits, (bool, np.bool_)):
        raise InvalidTypeError(f"from_logits={from_logits!r} must be True or False")
    if isinstance(temperature, (bool, np.bool_)) or not isinstance(temperature, (int, float, np.floating, np.integer)):
        raise InvalidTypeError(f"temperature={temperature!r} must be a positive number")
    if not np.isfinite(temperature) or temperature <= 0:
        raise InvalidInputError(f"temperature={temperature!r} must be a positive finite number")
    if scores_fn is not None and not callable(scores_fn):
        raise InvalidTypeError(f"scores_fn={scores_fn!r} must be a function (clf, X) -> (n, C) scores, or None")


def classifier_scores(clf: Any, X: Any, n_rows: int, *, from_logits: bool,
                      scores_fn: Optional[ScoresFn], method_owner: Any = None) -> np.ndarray:
    """The (n_rows, C) rows PCoreSet selects on.

    `scores_fn(clf, X)` when given; otherwise `predict_proba(X)`, or
    `decision_function(X)` with `from_logits=True` (a binary classifier's
    1-D decision values d become the logits [0, d], whose softmax is the
    logistic model's [1 - sigmoid(d), sigmoid(d)]). `method_owner` is the
    object whose method is called when it is not `clf` itself (modAL calls
    strategies with the learner, whose `predict_proba` always exists and
    forwards to its estimator).
    """
    if scores_fn is not None:
        source = "scores_fn"
        scores = scores_fn(clf, X)
    else:
        owner = clf if method_owner is None else method_owner
        method = "decision_function" if from_logits else "predict_proba"
        source = f"{describe(clf)}.{method}"
        fn = getattr(owner, method, None)
        if fn is None:
            raise _no_method_error(clf, method)
        try:
            scores = fn(X)
        except AttributeError as exc:
            # wrappers that always define the method and forward it to a model without it
            if method not in str(exc):
                raise
            raise _no_method_error(clf, method) from exc
    if hasattr(scores, "toarray"):  # scipy sparse
        scores = scores.toarray()
    if not hasattr(scores, "shape") or not hasattr(scores, "dtype"):
        scores = np.asarray(scores)
    if len(scores.shape) == 1 and from_logits:
        scores = np.stack([np.zeros_like(scores), scores], axis=1)
    if len(scores.shape) != 2 or scores.shape[0] != n_rows:
        raise InvalidInputError(f"{source} returned shape {tuple(scores.shape)}; expected ({n_rows}, n_classes): "
                                "one row of class scores per sample")
    return scores


def _no_method_error(clf: Any, method: str) -> InvalidTypeError:
    if method == "predict_proba":
        advice = ("PCoreSet selects on class probabilities: use a classifier with predict_proba "
                  "(e.g. LogisticRegression, or SVC(probability=True)), pass from_logits=True to select "
                  "on softmax(decision_function / temperature), or pass scores_fn=(clf, X) -> scores")
    else:
        advice = ("from_logits=True selects on softmax(decision_function / temperature): use a classifier "
                  "with decision_function, or pass scores_fn=(clf, X) -> logits")
    return InvalidTypeError(f"clf={describe(clf)} has no {method}; {advice}")


def select_among(scores, center_rows: np.ndarray, pool_rows: np.ndarray, budget: int,
                 **select_kwargs) -> Tuple[np.ndarray, np.ndarray]:
    """Select `budget` of `pool_rows` with `center_rows` as the initial
    centers, both row indices into `scores`; other rows take no part.

    Returns (picks, radii): picks are row indices into `scores`. When the
    two sets cover every row, `scores` goes to `pcoreset.select` as it is
    (no copy); otherwise the rows taking part are taken in increasing row
    order, so that ties still go to the lowest row index.
    """
    n = scores.shape[0]
    center_rows = np.asarray(center_rows, dtype=np.int64).reshape(-1)
    pool_rows = np.asarray(pool_rows, dtype=np.int64).reshape(-1)
    if center_rows.size + pool_rows.size == n:
        picks, radii = select(scores, center_rows, budget, return_radii=True, **select_kwargs)
        return np.asarray(picks, dtype=np.int64), np.asarray(radii, dtype=np.float64)
    rows = np.union1d(center_rows, pool_rows)
    local_centers = np.searchsorted(rows, center_rows)
    picks, radii = select(scores[rows], local_centers, budget, return_radii=True, **select_kwargs)
    return rows[np.asarray(picks, dtype=np.int64)], np.asarray(radii, dtype=np.float64)


def select_with_center_vectors(pool_scores, center_scores, budget: int,
                               **select_kwargs) -> Tuple[np.ndarray, np.ndarray]:
    """Select `budget` rows of `pool_scores` with the rows of `center_scores`
    (vectors that are not in the pool, e.g. a learner's training data; None
    or empty for none) as the initial centers, through `pcoreset.select`'s
    ``centers=``. Returns (picks into pool_scores, radii)."""
    if center_scores is not None and center_scores.shape[0] == 0:
        center_scores = None
    picks, radii = select(pool_scores, None, budget, centers=center_scores, return_radii=True, **select_kwargs)
    return np.asarray(picks, dtype=np.int64), np.asarray(radii, dtype=np.float64)


def as_probability_rows(scores, *, from_logits: bool, temperature: float) -> np.ndarray:
    """The rows as the selection sees them, in float64 (softmax of the
    logits divided by the temperature with `from_logits`)."""
    try:
        import torch
        if isinstance(scores, torch.Tensor):
            scores = scores.detach().cpu().double().numpy()
    except ImportError:  # pragma: no cover
        pass
    if from_logits:
        return softmax(scores, float(temperature), dtype=np.float64)
    return np.asarray(scores, dtype=np.float64)


def distances_before_picks(pool: np.ndarray, centers: Optional[np.ndarray], picks: np.ndarray,
                           backend: str = "auto") -> np.ndarray:
    """(len(picks), N) float64: before each pick, every pool row's distance
    to its nearest center (the `centers` vectors, none for None, and the
    earlier picks), read from a kernel state that replays the picks: the
    same arithmetic as the selection itself. Before any center the row is
    +inf; picked rows read 0."""
    problem = make_problem(pool, None, 0, simplex=False, from_logits=False, temperature=1.0, prune=True,
                           num_threads=0, progress=None, centers=centers)
    chosen = backends.choose_stateful(problem, backend)
    state = chosen.make_state(problem)
    _start.start_state(chosen, state, problem)
    out = np.empty((len(picks), problem.n), dtype=np.float64)
    for i, p in enumerate(np.asarray(picks, dtype=np.int64).tolist()):
        out[i] = np.sqrt(np.maximum(np.asarray(state.min_dist2(), dtype=np.float64), 0.0)) \
            if state.num_centers else np.inf
        state.push_row(p)
    return out

"""The framework adapters, each inside its framework's own loop: small-text's
PoolBasedActiveLearner, a scikit-activeml query/label loop next to its own
CoreSet, and modAL's ActiveLearner. Every pick is checked against
`pcoreset.select` (or a float64 farthest-first oracle with center vectors)
on the same scores."""
from __future__ import annotations

import csv
import functools
import gzip
from pathlib import Path

import numpy as np
import pytest

import modAL.models as modal_models
import small_text
from sklearn import datasets as sklearn_datasets
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC
from skactiveml.classifier import SklearnClassifier
from skactiveml.pool import CoreSet
from skactiveml.utils import MISSING_LABEL

import pcoreset
from pcoreset.errors import InvalidTypeError, PoolExhaustedError
from pcoreset.integrations import _common
from pcoreset.integrations.modal import pcoreset_sampling
from pcoreset.integrations.skactiveml import PCoreSet as SkalPCoreSet
from pcoreset.integrations.small_text import PCoreSet as SmallTextPCoreSet

# The frameworks are imported, not skipped when missing: .ci/run installs them
# (pip install '.[integrations]').


# --- shared helpers --------------------------------------------------------

def softmax64(z, temperature=1.0):
    z = np.asarray(z, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def farthest_first(pool, centers, budget):
    """Float64 oracle: k-center greedy over the rows of `pool`, the rows of
    `centers` (vectors, maybe none) as initial centers; lowest index on ties;
    with no center the first pick is the row farthest from the pool mean."""
    pool = np.asarray(pool, dtype=np.float64)
    taken = np.zeros(len(pool), dtype=bool)
    picks, radii = [], []
    if centers is None or len(centers) == 0:
        first = int(np.argmax(np.linalg.norm(pool - pool.mean(axis=0), axis=1)))
        picks.append(first)
        radii.append(np.inf)
        taken[first] = True
        dist = np.linalg.norm(pool - pool[first], axis=1)
    else:
        centers = np.asarray(centers, dtype=np.float64)
        dist = np.array([np.linalg.norm(centers - row, axis=1).min() for row in pool])
    while len(picks) < budget:
        masked = np.where(taken, -1.0, dist)
        j = int(np.argmax(masked))
        picks.append(j)
        radii.append(masked[j])
        taken[j] = True
        dist = np.minimum(dist, np.linalg.norm(pool - pool[j], axis=1))
    return np.array(picks, dtype=np.int64), np.array(radii)


@pytest.fixture(scope="module")
def digits():
    X, y = sklearn_datasets.load_digits(return_X_y=True)
    return X / 16.0, y


def two_per_class(y, classes):
    return np.concatenate([np.flatnonzero(y == c)[:2] for c in classes]).astype(np.int64)


@pytest.fixture
def select_spy(monkeypatch):
    """Records the keyword arguments every adapter passes to pcoreset.select."""
    calls = []
    real = _common.select

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(_common, "select", spy)
    return calls


# --- small-text ------------------------------------------------------------



@pytest.fixture(scope="module")
def wordnet_glosses():
    """1200 training glosses of the embedded WordNet set as a small-text
    SklearnDataset (TF-IDF), with their labels."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    path = Path(pcoreset.__file__).parent / "data" / "wordnet_supersenses.csv.gz"
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "train"][:1200]
    names = sorted({r["label"] for r in rows})
    labels = np.array([names.index(r["label"]) for r in rows], dtype=np.int64)
    x = TfidfVectorizer(min_df=2).fit_transform([r["text"] for r in rows])
    classes = np.arange(len(names))
    return small_text.SklearnDataset(x, labels, target_labels=classes), labels, classes


def small_text_learner(wordnet_glosses, strategy, model=None, ignored=None):
    train, labels, classes = wordnet_glosses
    model = model if model is not None else LogisticRegression(max_iter=1000)
    factory = small_text.SklearnClassifierFactory(model, len(classes))
    learner = small_text.PoolBasedActiveLearner(factory, strategy, train)
    initial = two_per_class(labels, classes)
    learner.initialize_data(initial, labels[initial], indices_ignored=ignored)
    return learner


def test_small_text_three_queries_equal_select(wordnet_glosses, select_spy):
    train, labels, _ = wordnet_glosses
    strategy = SmallTextPCoreSet()
    learner = small_text_learner(wordnet_glosses, strategy)
    for _ in range(3):
        labeled_before = learner.indices_labeled.copy()
        queried = learner.query(num_samples=20)
        probs = learner.classifier.predict_proba(train)   # the classifier the query used
        want, want_radii = pcoreset.select(probs, labeled_before, 20, return_radii=True)
        np.testing.assert_array_equal(queried, want)
        np.testing.assert_allclose(strategy.radii_, want_radii)
        assert not np.isin(queried, labeled_before).any()
        assert np.all(np.diff(strategy.radii_) <= 0)
        learner.update(labels[queried])
        assert learner.indices_labeled.size == labeled_before.size + 20
    assert learner.indices_labeled.size == 12 + 60
    # the whole dataset went to select with the labeled rows as centers
    assert [c["backend"] for c in select_spy] == ["auto"] * 3


def test_small_text_ignored_rows_are_neither_centers_nor_picked(wordnet_glosses):
    train, labels, classes = wordnet_glosses
    ignored = np.arange(100, 400, dtype=np.int64)
    learner = small_text_learner(wordnet_glosses, SmallTextPCoreSet(), ignored=ignored)
    labeled = learner.indices_labeled.copy()
    queried = learner.query(num_samples=15)
    assert not np.isin(queried, ignored).any()
    probs = learner.classifier.predict_proba(train)
    rows = np.setdiff1d(np.arange(len(labels)), ignored)
    local = pcoreset.select(probs[rows], np.searchsorted(rows, labeled), 15)
    np.testing.assert_array_equal(queried, rows[local])


def test_small_text_forwards_logits_temperature_backend(wordnet_glosses, select_spy):
    train, _, _ = wordnet_glosses
    strategy = SmallTextPCoreSet(backend="torch", from_logits=True, temperature=2.0,
                                 scores_fn=lambda clf, ds: clf.model.decision_function(ds.x))
    learner = small_text_learner(wordnet_glosses, strategy)
    labeled = learner.indices_labeled.copy()
    queried = learner.query(num_samples=10)
    logits = learner.classifier.model.decision_function(train.x)
    want = pcoreset.select(logits, labeled, 10, from_logits=True, temperature=2.0, backend="torch")
    np.testing.assert_array_equal(queried, want)
    assert select_spy[-1]["backend"] == "torch"
    assert select_spy[-1]["from_logits"] is True and select_spy[-1]["temperature"] == 2.0


def test_small_text_classifier_without_predict_proba(wordnet_glosses):
    learner = small_text_learner(wordnet_glosses, SmallTextPCoreSet(), model=LinearSVC())
    with pytest.raises(InvalidTypeError, match=r"LinearSVC has no predict_proba.*from_logits=True"):
        learner.query(num_samples=5)
    # from_logits without a scores_fn: small-text's classifiers have no decision_function
    learner = small_text_learner(wordnet_glosses, SmallTextPCoreSet(from_logits=True), model=LinearSVC())
    with pytest.raises(InvalidTypeError, match=r"SklearnClassifier wrapping LinearSVC has no decision_function"):
        learner.query(num_samples=5)


def test_small_text_batch_larger_than_pool(wordnet_glosses):
    train, labels, _ = wordnet_glosses
    learner = small_text_learner(wordnet_glosses, SmallTextPCoreSet())
    n_unlabeled = len(labels) - learner.indices_labeled.size
    with pytest.raises(small_text.PoolExhaustedException, match=f"{n_unlabeled} available / {n_unlabeled + 1}"):
        learner.query(num_samples=n_unlabeled + 1)
    queried = learner.query(num_samples=n_unlabeled)   # the whole pool is fine
    assert np.array_equal(np.sort(queried), np.setdiff1d(np.arange(len(labels)), learner.indices_labeled))


# --- scikit-activeml --------------------------------------------------------



def skal_classifier(model=None):
    model = model if model is not None else LogisticRegression(max_iter=2000)
    return SklearnClassifier(model, classes=np.arange(10), random_state=0)


def test_skactiveml_loop_next_to_coreset(digits, select_spy):
    X, y_true = digits
    clf = skal_classifier()
    strategies = {"pcoreset": SkalPCoreSet(random_state=0), "coreset": CoreSet(random_state=0)}
    y = {name: np.full(len(X), MISSING_LABEL) for name in strategies}
    initial = two_per_class(y_true, range(10))
    for name in strategies:
        y[name][initial] = y_true[initial]
    for _ in range(3):
        for name, qs in strategies.items():
            labeled = np.flatnonzero(~np.isnan(y[name]))
            if name == "pcoreset":
                idx, util = qs.query(X, y[name], clf, batch_size=10, return_utilities=True)
                probs = clone(clf).fit(X, y[name]).predict_proba(X)
                want, want_radii = pcoreset.select(probs, labeled, 10, return_radii=True)
                np.testing.assert_array_equal(idx, want)
                # utilities: the coverage radius of every candidate before each pick
                for i in range(10):
                    assert np.nanargmax(util[i]) == idx[i]
                    np.testing.assert_allclose(util[i, idx[i]], want_radii[i], rtol=1e-9)
                    np.testing.assert_array_equal(np.isnan(util[i]),
                                                  np.isin(np.arange(len(X)), np.r_[labeled, idx[:i]]))
            else:
                idx, util = qs.query(X, y[name], batch_size=10, return_utilities=True)
            # the same conventions as the library's own k-center strategy
            assert idx.shape == (10,) and util.shape == (10, len(X))
            assert np.isnan(util[0, labeled]).all() and not np.isnan(np.delete(util[0], labeled)).any()
            assert not np.isin(idx, labeled).any() and np.unique(idx).size == 10
            y[name][idx] = y_true[idx]
    assert [c["backend"] for c in select_spy] == ["auto"] * 3


def test_skactiveml_index_candidates(digits):
    X, y_true = digits
    y = np.full(len(X), MISSING_LABEL)
    labeled = two_per_class(y_true, range(10))
    y[labeled] = y_true[labeled]
    rng = np.random.default_rng(0)
    unlabeled_cands = np.sort(rng.choice(np.setdiff1d(np.arange(len(X)), labeled), 300, replace=False))
    candidates = np.r_[labeled[:3], unlabeled_cands[::-1]]   # labeled ones among them stay centers
    clf = skal_classifier()
    idx, util = SkalPCoreSet().query(X, y, clf, candidates=candidates, batch_size=8, return_utilities=True)
    assert np.isin(idx, unlabeled_cands).all()
    probs = clone(clf).fit(X, y).predict_proba(X)
    want, _ = farthest_first(probs[unlabeled_cands], probs[labeled], 8)
    np.testing.assert_array_equal(idx, unlabeled_cands[want])
    outside = np.setdiff1d(np.arange(len(X)), unlabeled_cands)
    assert np.isnan(util[:, outside]).all()


def test_skactiveml_sample_candidates_and_logits(digits, select_spy):
    X, y_true = digits
    y = np.full(1000, MISSING_LABEL)
    labeled = two_per_class(y_true[:1000], range(10))
    y[labeled] = y_true[labeled]
    new_samples = X[1000:1400]                                # not in X[:1000]
    clf = skal_classifier(LinearSVC(random_state=0))
    qs = SkalPCoreSet(from_logits=True, temperature=0.5, backend="torch")
    idx, util = qs.query(X[:1000], y, clf, candidates=new_samples, batch_size=6, return_utilities=True)
    fitted = clone(clf).fit(X[:1000], y)
    want, want_radii = farthest_first(softmax64(fitted.decision_function(new_samples), 0.5),
                                      softmax64(fitted.decision_function(X[labeled]), 0.5), 6)
    np.testing.assert_array_equal(idx, want)                 # positions in `candidates`
    assert util.shape == (6, 400)
    np.testing.assert_allclose(util[np.arange(6), idx], want_radii, rtol=1e-9)
    assert select_spy[-1]["backend"] == "torch" and select_spy[-1]["temperature"] == 0.5


def test_skactiveml_classifier_without_predict_proba(digits):
    X, y_true = digits
    y = np.full(len(X), MISSING_LABEL)
    y[:20] = y_true[:20]
    with pytest.raises(InvalidTypeError, match=r"clf=SklearnClassifier wrapping LinearSVC has no predict_proba"):
        SkalPCoreSet().query(X, y, skal_classifier(LinearSVC(random_state=0)), batch_size=3)


def test_skactiveml_batch_larger_than_candidates_and_no_labels(digits):
    X, _ = digits
    y = np.full(60, MISSING_LABEL)
    y[:50] = np.arange(50) % 10
    with pytest.warns(UserWarning, match="batch_size=10' was set"):
        idx = SkalPCoreSet().query(X[:60], y, skal_classifier(), batch_size=25)
    np.testing.assert_array_equal(np.sort(idx), np.arange(50, 60))
    # no labeled sample: utilities row 0 is the distance to the candidates' mean
    y_none = np.full(60, MISSING_LABEL)
    clf = SklearnClassifier(LogisticRegression(), classes=np.arange(10), random_state=0)
    with pytest.warns(UserWarning):   # scikit-activeml's own note: no label to fit on
        idx, util = SkalPCoreSet().query(X[:60], y_none, clf, batch_size=4, return_utilities=True)
    uniform = np.full((60, 10), 0.1)
    np.testing.assert_array_equal(idx, farthest_first(uniform, None, 4)[0])
    np.testing.assert_allclose(util[0], 0.0, atol=1e-12)


def test_skactiveml_binary_decision_function_is_logits_zero_d(digits):
    """A binary classifier's 1-D decision values d are the logits [0, d]:
    for logistic regression their softmax is predict_proba itself."""
    X, y_true = digits
    keep = np.flatnonzero(y_true < 2)[:300]
    X2, y2_true = X[keep], y_true[keep]
    y = np.full(len(X2), MISSING_LABEL)
    y[:10] = y2_true[:10]
    clf = SklearnClassifier(LogisticRegression(max_iter=2000), classes=[0, 1], random_state=0)
    by_logits, util = SkalPCoreSet(from_logits=True).query(X2, y, clf, batch_size=8, return_utilities=True)
    by_probs = SkalPCoreSet().query(X2, y, clf, batch_size=8)
    np.testing.assert_array_equal(by_logits, by_probs)
    probs = clone(clf).fit(X2, y).predict_proba(X2)
    np.testing.assert_array_equal(by_probs, pcoreset.select(probs, np.arange(10), 8))
    assert np.nanargmax(util[0]) == by_logits[0]


def test_scores_fn_of_the_wrong_shape(digits):
    X, y_true = digits
    y = np.full(100, MISSING_LABEL)
    y[:20] = y_true[:20]
    qs = SkalPCoreSet(scores_fn=lambda clf, X: clf.predict_proba(X)[:-1])
    with pytest.raises(ValueError, match=r"scores_fn returned shape \(79, 10\); expected \(80, n_classes\)"):
        qs.query(X[:100], y, skal_classifier(), batch_size=2)


# --- modAL -----------------------------------------------------------------


# modAL 0.4 passes check_X_y(force_all_finite=...), renamed by scikit-learn 1.6
# (removed in 1.8, hence the <1.8 pin in the integrations extra)
modal_sklearn_rename = pytest.mark.filterwarnings("ignore:'force_all_finite' was renamed:FutureWarning")


@modal_sklearn_rename
def test_modal_active_learner_loop(digits, select_spy):
    X, y = digits
    initial = two_per_class(y[:1000], range(10))
    pool_rows = np.setdiff1d(np.arange(1000), initial)
    X_pool, y_pool = X[pool_rows], y[pool_rows]
    learner = modal_models.ActiveLearner(estimator=LogisticRegression(max_iter=2000),
                                         query_strategy=pcoreset_sampling,
                                         X_training=X[initial], y_training=y[initial])
    for round_k in range(3):
        pool_probs = learner.estimator.predict_proba(X_pool)
        train_probs = learner.estimator.predict_proba(learner.X_training)
        want, want_radii = farthest_first(pool_probs, train_probs, 10)
        if round_k == 2:
            query_idx, query_inst, radii = learner.query(X_pool, n_instances=10, return_metrics=True)
            np.testing.assert_allclose(radii, want_radii, rtol=1e-9)
        else:
            query_idx, query_inst = learner.query(X_pool, n_instances=10)
        np.testing.assert_array_equal(query_idx, want)          # positions in X_pool
        np.testing.assert_array_equal(query_inst, X_pool[query_idx])
        learner.teach(X_pool[query_idx], y_pool[query_idx])
        X_pool, y_pool = np.delete(X_pool, query_idx, axis=0), np.delete(y_pool, query_idx)
    assert learner.X_training.shape[0] == 20 + 30
    assert all(c["backend"] == "auto" for c in select_spy)


@modal_sklearn_rename
def test_modal_partial_forwards_options(digits, select_spy):
    X, y = digits
    strategy = functools.partial(pcoreset_sampling, backend="torch", from_logits=True, temperature=3.0)
    learner = modal_models.ActiveLearner(estimator=LinearSVC(), query_strategy=strategy,
                                         X_training=X[:40], y_training=y[:40])
    X_pool = X[40:500]
    query_idx, _ = learner.query(X_pool, n_instances=7)
    want, _ = farthest_first(softmax64(learner.estimator.decision_function(X_pool), 3.0),
                             softmax64(learner.estimator.decision_function(X[:40]), 3.0), 7)
    np.testing.assert_array_equal(query_idx, want)
    assert select_spy[-1]["backend"] == "torch"
    assert select_spy[-1]["from_logits"] is True and select_spy[-1]["temperature"] == 3.0


@modal_sklearn_rename
def test_modal_errors(digits):
    X, y = digits
    learner = modal_models.ActiveLearner(estimator=LinearSVC(), query_strategy=pcoreset_sampling,
                                         X_training=X[:40], y_training=y[:40])
    with pytest.raises(InvalidTypeError, match=r"clf=ActiveLearner wrapping LinearSVC has no predict_proba"):
        learner.query(X[40:100], n_instances=3)
    learner = modal_models.ActiveLearner(estimator=LogisticRegression(max_iter=2000),
                                         query_strategy=pcoreset_sampling, X_training=X[:40], y_training=y[:40])
    with pytest.raises(PoolExhaustedError, match="n_instances=61 but only 60"):
        learner.query(X[40:100], n_instances=61)
    query_idx, _ = learner.query(X[40:100], n_instances=60)   # the whole pool is fine
    np.testing.assert_array_equal(np.sort(query_idx), np.arange(60))


@pytest.mark.parametrize("from_logits", [False, True])
def test_center_vectors_equal_the_float64_oracle(from_logits):
    """Center vectors (a learner's training data) go to pcoreset.select as
    centers=: the picks are the float64 oracle's, the lowest index first on
    an exact tie (rows 10 and 50 are equal; row 10 is picked at a step where
    both are the farthest)."""
    rng = np.random.default_rng(3)
    pool = softmax64(rng.normal(0, 2, size=(300, 6)))
    pool[50] = pool[10]
    centers = softmax64(rng.normal(0, 2, size=(12, 6)))
    scores_pool = np.log(pool) * 2.0 if from_logits else pool
    scores_centers = np.log(centers) * 2.0 if from_logits else centers
    want, want_radii = farthest_first(pool, centers, 40)
    assert 10 in want and 50 not in want
    picks, radii = _common.select_with_center_vectors(scores_pool, scores_centers, 40, from_logits=from_logits,
                                                      temperature=2.0, backend="cpu")
    np.testing.assert_array_equal(picks, want)
    np.testing.assert_allclose(radii, want_radii, rtol=1e-9)


def test_options_are_checked_when_built():
    with pytest.raises(ValueError, match=r"temperature=0"):
        SmallTextPCoreSet(temperature=0)
    with pytest.raises(TypeError, match=r"backend=3"):
        SkalPCoreSet(backend=3)
    with pytest.raises(TypeError, match=r"scores_fn='x'"):
        SmallTextPCoreSet(scores_fn="x")

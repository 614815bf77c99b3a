"""The six selection strategies: hand-checkable pools, float64 oracles, and
properties every strategy must keep (absolute ids, disjoint from the labeled
set, unique, seeded, budget edges, clear errors)."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import CPU_BACKENDS
from pcoreset import InvalidInputError, InvalidTypeError, PoolExhaustedError
from pcoreset import strategies
from pcoreset.strategies import PoolState, mixed_probs
from pcoreset.strategies.badge import gradient_factors, kmeanspp_factored
from pcoreset.strategies.class_balanced import allocate

NAMES = ["random", "entropy", "coreset", "badge", "class_balanced", "pcoreset"]
SEEDED = {"random", "badge", "class_balanced"}


def make_pool(n=60, c=5, d=4, labeled_frac=0.2, seed=0, offset=1000, dtype=np.float32):
    rng = np.random.default_rng(seed)
    labeled = rng.random(n) < labeled_frac
    return PoolState(
        indices=(rng.permutation(n) + offset).astype(np.int64),
        labeled_mask=labeled,
        ce_logits=rng.normal(0, 2, size=(n, c)).astype(dtype),
        kd_logits=rng.normal(0, 2, size=(n, c)).astype(dtype),
        features=rng.normal(size=(n, d)).astype(dtype),
        labels=rng.integers(0, c, size=n),
    )


def onehot_probs(rows):
    p = np.asarray(rows, dtype=np.float64)
    return p / p.sum(axis=1, keepdims=True)


def oracle_kcenter(x64, labeled, budget):
    """Float64 farthest-first traversal, every distance recomputed each step
    (no running minimum, no pruning); lowest row wins exact ties."""
    centers = list(labeled)
    picks = []
    if budget and not centers:
        d = np.linalg.norm(x64 - x64.mean(axis=0), axis=1)
        picks.append(int(np.argmax(d)))
        centers.append(picks[-1])
    while len(picks) < budget:
        d = np.min(np.linalg.norm(x64[:, None, :] - x64[None, centers, :], axis=2), axis=1)
        d[centers] = -1.0
        picks.append(int(np.argmax(d)))
        centers.append(picks[-1])
    return np.array(picks, dtype=np.int64)


def oracle_kmeanspp(emb, budget, gen):
    """k-means++ seeding on explicit embeddings (N, C*D) in float64, drawing
    with the same random calls as the strategy."""
    sq = (emb * emb).sum(axis=1)
    picks = [int(np.argmax(sq))]
    min_d2 = np.full(emb.shape[0], np.inf)
    while len(picks) < budget:
        min_d2 = np.minimum(min_d2, ((emb - emb[picks[-1]]) ** 2).sum(axis=1))
        w = min_d2.copy()
        w[picks] = 0.0
        cum = np.cumsum(w)
        new = min(int(np.searchsorted(cum, gen.random() * cum[-1], side="right")), len(w) - 1)
        picks.append(new)
    return np.array(picks, dtype=np.int64)


# ---------------------------------------------------------------- registry


def test_registry_names_and_get():
    assert strategies.names() == NAMES
    for name in NAMES:
        s = strategies.get(name)
        assert isinstance(s, strategies.Strategy) and s.name == name
    assert strategies.get("pcoreset", backend="torch").backend == "torch"


def test_registry_unknown_name_lists_known():
    with pytest.raises(InvalidInputError, match="known strategies: random, entropy, coreset"):
        strategies.get("kmeans")


def test_registry_unknown_option_says_what_it_takes():
    with pytest.raises(InvalidInputError, match=r"'coreset' does not take seed \(it takes: backend, num_threads\)"):
        strategies.get("coreset", seed=0)
    with pytest.raises(InvalidInputError, match="takes: no options"):
        strategies.get("random", backend="cpu")


# ---------------------------------------------------------------- mixed_probs


def test_mixed_probs_is_mean_of_softmaxes():
    ce = np.array([[0.0, 0.0], [np.log(3.0), 0.0]])
    kd = np.array([[np.log(3.0), 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(mixed_probs(ce, kd), [[0.625, 0.375], [0.625, 0.375]])
    np.testing.assert_allclose(mixed_probs(ce, None), [[0.5, 0.5], [0.75, 0.25]])
    np.testing.assert_allclose(mixed_probs(None, kd), [[0.75, 0.25], [0.5, 0.5]])
    assert mixed_probs(ce.astype(np.float32), kd.astype(np.float32)).dtype == np.float32


def test_mixed_probs_errors():
    with pytest.raises(InvalidInputError, match="both are None"):
        mixed_probs(None, None)
    with pytest.raises(InvalidInputError, match=r"ce_logits has shape \(2, 3\) but kd_logits has shape \(2, 4\)"):
        mixed_probs(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(InvalidInputError, match="kd_logits has a NaN or inf value in row 1"):
        mixed_probs(np.zeros((2, 3)), np.array([[0.0, 0, 0], [np.nan, 0, 0]]))


# ---------------------------------------------------------------- hand-checkable pools


def test_random_is_seeded_and_uniform_over_unlabeled():
    pool = make_pool(n=40, labeled_frac=0.5)
    s = strategies.get("random")
    a = s.select(pool, 10, rng=7)
    np.testing.assert_array_equal(a, s.select(pool, 10, rng=np.random.default_rng(7)))
    assert not np.array_equal(a, s.select(pool, 10, rng=8))
    # Every unlabeled sample is reachable, no labeled one ever is.
    seen = np.concatenate([s.select(pool, 3, rng=k) for k in range(300)])
    np.testing.assert_array_equal(np.unique(seen), np.sort(pool.indices[~pool.labeled_mask]))


def test_entropy_picks_flattest_rows_first():
    probs = onehot_probs([
        [1, 0, 0, 0],      # 0: certain
        [1, 1, 1, 1],      # 1: flattest, labeled
        [1, 1, 1, 1],      # 2: flattest
        [2, 1, 1, 0],      # 3
        [1, 1, 0, 0],      # 4
        [1, 1, 1, 1],      # 5: flattest (tie with 2: lower row first)
        [8, 1, 1, 0],      # 6
    ])
    pool = PoolState(indices=np.arange(7) + 50, labeled_mask=np.arange(7) == 1, probs=probs)
    got = strategies.get("entropy").select(pool, 5)
    np.testing.assert_array_equal(got, [52, 55, 53, 54, 56])


def test_entropy_uses_the_mixed_prediction():
    # CE head certain, KD head certain of another class: the mix is flat.
    ce = np.array([[9.0, -9.0], [9.0, -9.0], [0.0, 0.0]])
    kd = np.array([[-9.0, 9.0], [9.0, -9.0], [0.0, 9.0]])
    pool = PoolState(indices=np.array([5, 6, 7]), labeled_mask=np.zeros(3, bool), ce_logits=ce, kd_logits=kd)
    np.testing.assert_array_equal(strategies.get("entropy").select(pool, 3), [5, 7, 6])


def test_class_balanced_fills_rarest_class_first():
    # Labeled: class 0 x4, class 1 x1, class 2 x0. Unlabeled predictions: 3 of each class.
    labeled_labels = [0, 0, 0, 0, 1]
    pred = [0, 0, 0, 1, 1, 1, 2, 2, 2]
    c = 3
    probs = np.full((14, c), 0.1)
    probs[np.arange(5), labeled_labels] = 0.8
    probs[5 + np.arange(9), pred] = 0.8
    labels = np.r_[labeled_labels, np.zeros(9, int)]
    pool = PoolState(indices=np.arange(14) * 10, labeled_mask=np.arange(14) < 5, probs=probs, labels=labels)
    s = strategies.get("class_balanced")
    one = s.select(pool, 1, rng=0)
    assert one[0] in (110, 120, 130)  # a class-2 sample
    # Weights 1/5, 1/2, 1: budget 5 -> floor(5 * [2, 5, 10] / 17) = [0, 1, 2], +1 to class 2, +1 to class 1.
    np.testing.assert_array_equal(allocate(5, np.array([4, 1, 0]), np.ones(3, bool)), [0, 2, 3])
    five = s.select(pool, 5, rng=0)
    assert set(five[:3]) == {110, 120, 130} and set(five[3:]) <= {80, 90, 100}
    # Class 2 is exhausted at budget 7: the remainder is drawn from the rest.
    seven = s.select(pool, 7, rng=1)
    assert {110, 120, 130} <= set(seven) and len(set(seven)) == 7


def test_class_balanced_uniform_without_labels():
    np.testing.assert_array_equal(allocate(7, np.zeros(3, int), np.array([True, True, True])), [3, 2, 2])
    np.testing.assert_array_equal(allocate(4, np.zeros(3, int), np.array([True, False, True])), [2, 0, 2])
    probs = onehot_probs([[3, 1], [3, 1], [1, 3], [1, 3]])
    pool = PoolState(indices=np.arange(4), labeled_mask=np.zeros(4, bool), probs=probs)
    got = strategies.get("class_balanced").select(pool, 2, rng=0)
    assert sorted(got // 2) == [0, 1]  # one of each predicted class


def test_coreset_matches_float64_feature_oracle():
    pool = make_pool(n=80, d=6, labeled_frac=0.1, seed=3, offset=0, dtype=np.float64)
    pool.indices = np.arange(80)
    f = pool.features / np.linalg.norm(pool.features, axis=1, keepdims=True)
    want = oracle_kcenter(f, np.flatnonzero(pool.labeled_mask), 30)
    np.testing.assert_array_equal(strategies.get("coreset").select(pool, 30), want)
    # Cosine distance: scaling a feature row changes nothing.
    pool.features = pool.features * np.linspace(0.5, 3.0, 80)[:, None]
    np.testing.assert_array_equal(strategies.get("coreset").select(pool, 30), want)


def test_pcoreset_matches_float64_probability_oracle():
    pool = make_pool(n=80, c=6, labeled_frac=0.1, seed=4, dtype=np.float64)
    p = mixed_probs(pool.ce_logits, pool.kd_logits)
    rows = oracle_kcenter(p, np.flatnonzero(pool.labeled_mask), 25)
    np.testing.assert_array_equal(strategies.get("pcoreset").select(pool, 25), pool.indices[rows])
    for backend in CPU_BACKENDS:
        got = strategies.get("pcoreset", backend=backend).select(pool, 25)
        np.testing.assert_array_equal(got, pool.indices[rows])


def test_badge_first_pick_is_largest_gradient_norm():
    probs = np.array([[0.75, 0.25], [0.5, 0.5], [0.5, 0.5], [1.0, 0.0]])
    # ||onehot(argmax p) - p||^2 = 0.125, 0.5, 0.5, 0 (exact in binary)
    features = np.array([[4.0, 0.0], [1.0, 0.0], [0.0, 2.0], [9.0, 9.0]])
    # gradient norms^2: 0.125*16, 0.5*1, 0.5*4, 0 = 2, 0.5, 2, 0: rows 0 and 2 tie -> row 0
    pool = PoolState(indices=np.array([10, 11, 12, 13]), labeled_mask=np.zeros(4, bool),
                     probs=probs, features=features)
    for seed in range(5):
        assert strategies.get("badge").select(pool, 1, rng=seed)[0] == 10
    pool.labeled_mask = np.array([True, False, False, False])  # labeled rows take no part
    assert strategies.get("badge").select(pool, 1, rng=0)[0] == 12


@pytest.mark.parametrize("n,c,d,clusters", [(300, 4, 3, 0), (400, 6, 5, 6)])
def test_badge_matches_explicit_embedding_oracle(n, c, d, clusters):
    """The factored, pruned D^2 sampling draws what sampling on the
    materialised N x (C*D) embeddings draws, call for call."""
    rng = np.random.default_rng(n)
    if clusters:
        centre = rng.normal(0, 3, size=(clusters, c + d))
        z = centre[rng.integers(0, clusters, n)] + rng.normal(0, 0.3, size=(n, c + d))
        logits, features = z[:, :c], z[:, c:]
    else:
        logits, features = rng.normal(0, 2, size=(n, c)), rng.normal(size=(n, d))
    p = mixed_probs(logits, None)
    a, h, sq = gradient_factors(p, features)
    emb = (a[:, :, None] * h[:, None, :]).reshape(n, c * d)
    np.testing.assert_allclose(sq, (emb * emb).sum(1), rtol=1e-12)
    got = kmeanspp_factored(a, h, sq, 60, np.random.default_rng(5))
    want = oracle_kmeanspp(emb, 60, np.random.default_rng(5))
    np.testing.assert_array_equal(got, want)


def test_badge_products_ignore_only_the_blas_spurious_flag():
    # BADGE's products go through the BLAS, whose short-row kernels can raise
    # a spurious "invalid value" flag; the flag is ignored there, but a real
    # invalid operation (inf * 0) still raises under NumPy's error state and
    # the products are those of matmul
    from pcoreset.strategies.badge import _matvec

    rng = np.random.default_rng(0)
    m, v = rng.normal(size=(7, 5)).astype(np.float32), rng.normal(size=5).astype(np.float32)
    np.testing.assert_array_equal(_matvec(m, v), m @ v)
    bad = np.array([[np.inf, 1.0]], dtype=np.float32)
    with np.errstate(invalid="raise"), pytest.raises(FloatingPointError):
        _matvec(bad, np.array([0.0, 1.0], dtype=np.float32))
    with np.errstate(invalid="ignore"):
        assert np.isnan(_matvec(bad, np.array([0.0, 1.0], dtype=np.float32))).all()


def test_badge_duplicates_fill_uniformly():
    probs = np.tile(onehot_probs([[3, 1]]), (6, 1))
    pool = PoolState(indices=np.arange(6), labeled_mask=np.zeros(6, bool), probs=probs,
                     features=np.ones((6, 2)))
    got = strategies.get("badge").select(pool, 6, rng=0)
    assert got[0] == 0 and sorted(got) == list(range(6))


# ---------------------------------------------------------------- properties of all


def pools(draw_dtype=np.float32):
    @st.composite
    def build(draw):
        n = draw(st.integers(1, 25))
        c = draw(st.integers(2, 5))
        d = draw(st.integers(1, 4))
        seed = draw(st.integers(0, 2**16))
        rng = np.random.default_rng(seed)
        mask = rng.random(n) < draw(st.sampled_from([0.0, 0.3, 0.9]))
        ties = draw(st.booleans())  # duplicated rows: exact ties everywhere
        ce = rng.normal(0, 3, size=(n, c))
        feats = rng.normal(size=(n, d))
        if ties:
            ce, feats = ce[rng.integers(0, min(n, 2), n)], feats[rng.integers(0, min(n, 2), n)]
        pool = PoolState(indices=rng.choice(10 * n + 5, size=n, replace=False).astype(np.int64),
                         labeled_mask=mask, ce_logits=ce.astype(draw_dtype),
                         kd_logits=(ce + rng.normal(size=(n, c))).astype(draw_dtype),
                         features=feats.astype(draw_dtype), labels=rng.integers(0, c, size=n))
        budget = draw(st.integers(0, int((~mask).sum())))
        return pool, budget
    return build()


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=pools(), seed=st.integers(0, 1000))
def test_properties(name, case, seed):
    pool, budget = case
    s = strategies.get(name, **({"num_threads": 1} if name in ("coreset", "pcoreset") else {}))
    got = s.select(pool, budget, rng=seed)
    assert got.dtype == np.int64 and got.shape == (budget,)
    assert len(set(got.tolist())) == budget
    assert set(got.tolist()) <= set(pool.indices[~pool.labeled_mask].tolist())
    np.testing.assert_array_equal(got, s.select(pool, budget, rng=seed))
    np.testing.assert_array_equal(got, s.select(pool, budget, rng=np.random.default_rng(seed)))


@pytest.mark.parametrize("name", NAMES)
def test_budget_zero_and_full_pool(name):
    pool = make_pool(n=30, seed=1)
    s = strategies.get(name)
    empty = s.select(pool, 0, rng=0)
    assert empty.dtype == np.int64 and empty.shape == (0,)
    unlabeled = np.sort(pool.indices[~pool.labeled_mask])
    np.testing.assert_array_equal(np.sort(s.select(pool, unlabeled.size, rng=0)), unlabeled)
    with pytest.raises(PoolExhaustedError, match=f"budget={unlabeled.size + 1} but only {unlabeled.size}"):
        s.select(pool, unlabeled.size + 1, rng=0)


@pytest.mark.parametrize("name", NAMES)
def test_bad_budget_and_rng(name):
    pool = make_pool(n=10)
    s = strategies.get(name)
    with pytest.raises(InvalidInputError, match="budget must be >= 0, got -1"):
        s.select(pool, -1)
    with pytest.raises(InvalidTypeError, match="budget must be an integer"):
        s.select(pool, 2.0)
    if name in SEEDED:
        with pytest.raises(InvalidTypeError, match="rng must be a numpy Generator"):
            s.select(pool, 1, rng="seed")


@pytest.mark.parametrize("name,field,message", [
    ("coreset", "features", "coreset needs pool.features"),
    ("badge", "features", "badge needs pool.features"),
    ("class_balanced", "labels", "class_balanced needs pool.labels for the"),
])
def test_missing_input_is_named(name, field, message):
    pool = make_pool(n=20, labeled_frac=0.5)
    setattr(pool, field, None)
    with pytest.raises(InvalidInputError, match=message):
        strategies.get(name).select(pool, 2, rng=0)


@pytest.mark.parametrize("name", ["entropy", "badge", "class_balanced", "pcoreset"])
def test_missing_prediction_is_named(name):
    pool = make_pool(n=20)
    pool.ce_logits = pool.kd_logits = None
    with pytest.raises(InvalidInputError, match=f"{name} needs the student's prediction: pool.probs"):
        strategies.get(name).select(pool, 2, rng=0)


def test_pool_field_checks():
    s = strategies.get("random")
    pool = make_pool(n=10)
    pool.labeled_mask = pool.labeled_mask.astype(int)
    with pytest.raises(InvalidTypeError, match="pool.labeled_mask must be a bool array"):
        s.select(pool, 1)
    pool = make_pool(n=10)
    pool.indices[3] = pool.indices[5]
    with pytest.raises(InvalidInputError, match="pool.indices has a duplicated id"):
        s.select(pool, 1)
    pool = make_pool(n=10)
    pool.features = pool.features[:9]
    with pytest.raises(InvalidInputError, match=r"pool.features has shape \(9, 4\); expected \(10, D\)"):
        strategies.get("coreset").select(pool, 1)
    pool = make_pool(n=10)
    pool.probs = np.full((10, 5), 0.3)
    with pytest.raises(InvalidInputError, match="pool.probs row 0 is not a probability vector"):
        strategies.get("entropy").select(pool, 1)
    pool = make_pool(n=10, labeled_frac=0.9)
    pool.labels = np.full(10, 7)
    with pytest.raises(InvalidInputError, match=r"pool.labels\[\d+\]=7 is not a class id in \[0, 5\)"):
        strategies.get("class_balanced").select(pool, 1)
    pool = make_pool(n=10)
    pool.features[4, 1] = np.inf
    with pytest.raises(InvalidInputError, match="pool.features has a NaN or inf value in row 4"):
        strategies.get("badge").select(pool, 1)


def test_torch_fields_are_accepted():
    torch = pytest.importorskip("torch")
    pool = make_pool(n=30)
    tpool = PoolState(indices=torch.from_numpy(pool.indices), labeled_mask=torch.from_numpy(pool.labeled_mask),
                      ce_logits=torch.from_numpy(pool.ce_logits), kd_logits=torch.from_numpy(pool.kd_logits),
                      features=torch.from_numpy(pool.features), labels=torch.from_numpy(pool.labels))
    for name in NAMES:
        s = strategies.get(name)
        np.testing.assert_array_equal(s.select(tpool, 5, rng=3), s.select(pool, 5, rng=3))


def test_pcoreset_and_coreset_take_centers_outside_the_pool():
    import pcoreset
    from pcoreset.strategies import get
    from pcoreset.strategies.base import PoolState
    from pcoreset.strategies.coreset import l2_normalise

    rng = np.random.default_rng(41)
    probs = rng.dirichlet(np.ones(6), size=300)
    feats = rng.normal(size=(300, 12))
    outside_p = rng.dirichlet(np.ones(6), size=25)
    outside_f = rng.normal(size=(25, 12))
    mask = np.zeros(300, dtype=bool)
    mask[[3, 50]] = True
    pool = PoolState(indices=np.arange(1000, 1300), labeled_mask=mask, probs=probs, features=feats,
                     center_probs=outside_p, center_features=outside_f)
    got = get("pcoreset").select(pool, 10)
    want = pcoreset.select(probs, [3, 50], 10, centers=outside_p) + 1000
    np.testing.assert_array_equal(got, want)
    got = get("coreset").select(pool, 10)
    want = pcoreset.kcenter_greedy(l2_normalise(feats), [3, 50], 10, centers=l2_normalise(outside_f)) + 1000
    np.testing.assert_array_equal(got, want)
    assert not np.array_equal(got, get("coreset").select(PoolState(indices=np.arange(1000, 1300),
                                                                   labeled_mask=mask, features=feats), 10))
    with pytest.raises(ValueError, match=r"pool.center_probs has shape \(25,\)"):
        get("pcoreset").select(PoolState(indices=np.arange(300), labeled_mask=mask, probs=probs,
                                         center_probs=outside_p[:, 0]), 3)

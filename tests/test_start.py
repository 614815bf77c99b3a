"""The start (each row's nearest initial center) on pools that break float
shortcuts, through every start path forced at small sizes, on every CPU
backend and dtype; and initial centers given as vectors (`centers=`)."""
import tracemalloc

import numpy as np
import pytest

import pcoreset
from pcoreset import _start
from pcoreset._start import bounds, centers as start_centers, certified, search, sizes
from pcoreset.backends import cpu as cpu_backend
from pcoreset._problem import make_problem
from conftest import CPU_BACKENDS, needs_torch, torch, clustered_pool
from reference import as_float64_rows, check_greedy_valid

BACKENDS = list(CPU_BACKENDS) + (["faiss"] if pcoreset.backends.get("faiss").unavailable() is None else [])
DTYPES = ["float16", "float32", "float64"] + (["bfloat16"] if torch is not None else [])  # bfloat16: torch tensors


def confident_pool(n, c, gap, seed=0):
    """softmax(gap * one-hot + N(0, 1)): rows of one class lie 1e-7 to 1e-5
    apart while their norms are near 1, so a float32 GEMM cannot order them."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.0, (n, c))
    z[np.arange(n), rng.integers(0, c, n)] += gap
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


def quantised_pool(n, c, seed=0, units=8):
    """Rows k/units: few distinct rows, exact in every dtype, many exact ties."""
    rng = np.random.default_rng(seed)
    counts = np.zeros((n, c))
    for _ in range(units):
        counts[np.arange(n), rng.integers(0, min(c, 6), n)] += 1
    return counts / units


def duplicated_pool(n, c, seed=0):
    """A clustered pool in which every fourth row repeats an earlier row, so
    many rows lie at distance exactly 0 from a labeled row."""
    x = clustered_pool(n, c, seed=seed, dtype=np.float64)
    src = np.arange(0, n, 4)
    x[src[1:] - 1] = x[src[:-1]]
    return x


POOLS = {
    "confident12": lambda: confident_pool(1500, 40, 12.0, seed=1),
    "confident16": lambda: confident_pool(1500, 40, 16.0, seed=2),
    "confident20": lambda: confident_pool(1500, 40, 20.0, seed=3),
    "quantised": lambda: quantised_pool(1500, 40, seed=4),
    "duplicated": lambda: duplicated_pool(1500, 40, seed=5),
}


def as_dtype(x, dtype):
    if dtype == "bfloat16":
        return torch.from_numpy(x).to(torch.bfloat16)
    return x.astype(dtype)


def labeled_for(name, n):
    rng = np.random.default_rng(11)
    lab = rng.choice(n, 150, replace=False)
    if name == "duplicated":  # the sources of the copies are labeled
        lab = np.unique(np.concatenate([lab, np.arange(0, n, 16)]))
    return lab


@pytest.mark.parametrize("pool", sorted(POOLS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_start_path_is_greedy_valid(pool, dtype, backend):
    x = as_dtype(POOLS[pool](), dtype)
    lab = labeled_for(pool, 1500)
    x64 = as_float64_rows(x)
    got = {}
    for method in ("exact", "certified"):
        with _start.force(method):
            picks, radii = pcoreset.select(x, lab, 25, backend=backend, return_radii=True)
        picks = np.asarray(picks)
        check_greedy_valid(x64, lab, picks)
        assert np.all(np.diff(np.asarray(radii)) <= 0)
        got[method] = picks
    # the certified candidates hold every center the kernel's rounding could
    # prefer, so the running minimum and the picks are those of the exact pass
    np.testing.assert_array_equal(got["certified"], got["exact"])


@pytest.mark.parametrize("pool", sorted(POOLS))
def test_certified_start_gives_the_exact_running_minimum(pool):
    x, lab, problem, exact = exact_start(pool)
    cand = _start.nearest_candidates(problem)
    assert cand.shape == (x.shape[0], _start.K_OUT)
    assert cand.min() >= 0 and cand.max() < lab.size
    cert = cpu_backend.make_state(problem)
    cert.seed_rows_with_candidates(lab, cand)
    np.testing.assert_array_equal(cert.min_dist2(), exact.min_dist2())


def test_plain_gemm_candidates_would_fail_here():
    # The premise of the certified search: on confident rows the float32 GEMM
    # identity misorders distances (its error is far above them).
    x = confident_pool(2000, 64, 16.0, seed=9).astype(np.float32)
    lab = np.arange(0, 2000, 10)
    c = x[lab]
    d_gemm = (x * x).sum(1)[:, None] + (c * c).sum(1)[None, :] - np.float32(2.0) * (x @ c.T)
    x64 = x.astype(np.float64)
    d_true = ((x64[:, None, :] - x64[lab][None, :, :]) ** 2).sum(2)
    assert d_gemm.dtype == np.float32
    wrong = np.mean(d_gemm.argmin(1) != d_true.argmin(1))
    assert wrong > 0.3, f"only {wrong:.0%} of GEMM argmins are wrong: the pool does not break the shortcut"


def test_the_issue_pool_in_the_default_path():
    # 30,000 confident rows, C = 100, 1,000 labeled; N * L * C = 3e9
    # takes the certified path without forcing.
    x = confident_pool(30000, 100, 18.0, seed=0).astype(np.float32)
    lab = np.random.default_rng(1).choice(30000, 1000, replace=False)
    assert _start.start_method(30000, 1000, 100) == "certified"
    picks = pcoreset.select(x, lab, 30, backend="cpu")
    check_greedy_valid(x.astype(np.float64), lab, picks)


def test_the_cpu_backend_bounds_the_exact_start_by_pairs(monkeypatch):
    # the kernel's exact start costs about 10 ns a pair of row and center
    # whatever C: 40,000 rows of 10 values with 100 labeled (4e6 pairs, 4e7
    # values of work) take the certified search, 4,000 rows the exact pass,
    # both unforced, with the same picks and radii as the other path
    from pcoreset import backends

    cpu = backends.get("cpu")
    assert _start.start_method(40_000, 100, 10, cpu.exact_max_work, cpu.exact_max_pairs) == "certified"
    assert _start.start_method(4_000, 100, 10, cpu.exact_max_work, cpu.exact_max_pairs) == "exact"
    assert _start.start_method(40_000, 100, 10) == "exact"  # a backend without a pair limit
    # a narrow pool of many rows keeps the exact pass (the search's per-row
    # memory would exceed a quarter of the pool and SEARCH_FREE_BYTES)
    assert _start.use_exact(2_000_000, 100, 10, cpu, 4)
    assert not _start.use_exact(200_000, 100, 10, cpu, 4)
    seen = []
    real = _start.kernel_candidates
    monkeypatch.setattr(_start, "kernel_candidates", lambda *a, **k: seen.append(1) or real(*a, **k))
    for n, want in ((40_000, 1), (4_000, 0)):
        x = confident_pool(n, 10, 9.0, seed=2).astype(np.float32)
        lab = np.random.default_rng(3).choice(n, 100, replace=False)
        seen.clear()
        sel = pcoreset.Selector(x, lab, backend="cpu")
        assert len(seen) == want
        picks, radii = sel.next(40), sel.radii
        other = "exact" if want else "certified"
        with _start.force(other):
            ref = pcoreset.Selector(x, lab, backend="cpu")
            np.testing.assert_array_equal(ref.next(40), picks)
        np.testing.assert_array_equal(ref.radii, radii)
        np.testing.assert_array_equal(ref.state_dict()["mind"], sel.state_dict()["mind"])
        np.testing.assert_array_equal(ref.state_dict()["nearest"], sel.state_dict()["nearest"])


def test_logits_start_uses_the_kernels_own_softmax():
    rng = np.random.default_rng(3)
    z = rng.normal(0, 1, (1200, 30)).astype(np.float32)
    z[np.arange(1200), rng.integers(0, 30, 1200)] += 14.0
    lab = np.arange(0, 1200, 7)
    with _start.force("exact"):
        a = pcoreset.select(z, lab, 30, from_logits=True, temperature=0.7, backend="cpu")
    with _start.force("certified"):
        b = pcoreset.select(z, lab, 30, from_logits=True, temperature=0.7, backend="cpu")
    np.testing.assert_array_equal(a, b)


def test_force_rejects_unknown_methods(monkeypatch):
    with pytest.raises(ValueError, match="gemm"):
        with _start.force("gemm"):
            pass
    monkeypatch.setenv("PCORESET_START", "faiss")
    with pytest.raises(ValueError, match="PCORESET_START='faiss'"):
        _start.start_method(10, 10, 10)


# --------------------------------------------------------------------------- centers=


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", ["exact", "certified"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_centers_equal_labeled_rows_of_a_concatenated_pool(backend, method, dtype):
    x = clustered_pool(900, 24, seed=21, dtype=np.float64)
    v = clustered_pool(120, 24, seed=22, dtype=np.float64)  # labeled samples from another loader
    lab = np.array([5, 17, 300])
    xs, vs = as_dtype(x, dtype), as_dtype(v, dtype)
    both = as_dtype(np.concatenate([v, x]), dtype)
    with _start.force(method):
        picks, radii = pcoreset.select(xs, lab, 30, centers=vs, backend=backend, return_radii=True)
        want, want_radii = pcoreset.select(both, np.concatenate([np.arange(120), lab + 120]), 30,
                                           backend=backend, return_radii=True)
        only, _ = pcoreset.select(xs, None, 10, centers=vs, backend=backend, return_radii=True)
        want_only = pcoreset.select(both, np.arange(120), 10, backend=backend)
    np.testing.assert_array_equal(np.asarray(picks), np.asarray(want) - 120)
    np.testing.assert_array_equal(np.asarray(radii), np.asarray(want_radii))
    np.testing.assert_array_equal(np.asarray(only), np.asarray(want_only) - 120)


def test_centers_without_labeled_rows_start_from_the_farthest_row():
    x = clustered_pool(500, 10, seed=23, dtype=np.float64)
    v = x[:3] * 0.5 + 0.5 / 10  # vectors inside the simplex, not rows
    picks, radii = pcoreset.select(x, None, 5, centers=v, return_radii=True)
    d = np.sqrt(((x[:, None, :] - v[None, :, :]) ** 2).sum(2)).min(1)
    assert picks[0] == int(np.argmax(d))
    assert np.isfinite(radii[0]) and radii[0] == pytest.approx(d.max(), rel=1e-12)


def test_kcenter_greedy_takes_center_vectors():
    rng = np.random.default_rng(24)
    feats = rng.normal(size=(400, 16))
    ctr = rng.normal(size=(30, 16)) * 3.0
    picks = pcoreset.kcenter_greedy(feats, None, 20, centers=ctr)
    allrows = np.concatenate([ctr, feats])
    want = pcoreset.kcenter_greedy(allrows, np.arange(30), 20)
    np.testing.assert_array_equal(picks, want - 30)


@pytest.mark.parametrize("method", ["exact", "certified"])
def test_centers_do_not_copy_the_pool(method):
    # the exact pass needs no per-row memory; the certified search keeps a
    # few int32 per row and chunk temporaries (at most SEARCH_FREE_BYTES or a
    # quarter of the pool, the rule that lets it replace the exact pass):
    # neither comes near a copy of the pool
    x = clustered_pool(200_000, 50, seed=25)  # 40 MB
    v = clustered_pool(50, 50, seed=26)
    limit = x.nbytes // 4 if method == "exact" else max(x.nbytes // 4, _start.SEARCH_FREE_BYTES)
    tracemalloc.start()
    try:
        with _start.force(method):
            pcoreset.select(x, None, 5, centers=v, backend="cpu")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < limit, f"selection with centers allocated {peak} bytes for a {x.nbytes}-byte pool"


@pytest.mark.parametrize("bad, match", [
    (np.ones((3, 7)) / 7, r"centers has 7 columns but probs has C=10"),
    (np.ones(10) / 10, r"centers must be 2-D \(M, C\) with C=10"),
    (np.full((2, 10), np.nan), r"centers has a NaN or inf value in row 0"),
    (np.full((2, 10), 0.3), r"centers row 0 is not a probability vector"),
    (np.ones((2, 10), dtype=np.int64), r"centers has dtype int64"),
    ("nosuch.npy", r"centers='nosuch.npy': no such file"),
])
def test_bad_centers_are_named(bad, match):
    x = clustered_pool(100, 10, seed=27)
    with pytest.raises((ValueError, TypeError), match=match):
        pcoreset.select(x, None, 3, centers=bad)


@needs_torch
def test_centers_follow_from_logits():
    rng = np.random.default_rng(28)
    z = rng.normal(0, 2, (300, 8))
    zc = rng.normal(0, 2, (20, 8))
    a = pcoreset.select(z, None, 10, centers=zc, from_logits=True, temperature=2.0, backend="torch")
    b = pcoreset.select(np.concatenate([zc, z]), np.arange(20), 10, from_logits=True, temperature=2.0,
                        backend="torch")
    np.testing.assert_array_equal(a, b - 20)
    # logits centers are not checked as probabilities, probability centers are
    with pytest.raises(ValueError, match="centers row 0 is not a probability vector"):
        pcoreset.select(np.abs(z) / np.abs(z).sum(1, keepdims=True), None, 2, centers=zc)


def test_empty_centers_are_no_centers():
    x = clustered_pool(200, 6, seed=29)
    np.testing.assert_array_equal(pcoreset.select(x, None, 5, centers=np.zeros((0, 6))),
                                  pcoreset.select(x, None, 5))


# --------------------------------------------------------------------------- temperature


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_temperature_whose_inverse_overflows_is_rejected(dtype):
    z = np.random.default_rng(30).normal(size=(50, 5)).astype(dtype)
    tiny = 1e-40 if dtype == "float32" else 1e-310
    for backend in BACKENDS:
        with pytest.raises(ValueError, match=rf"temperature={tiny!r} is too small: 1/temperature overflows"):
            pcoreset.select(z, None, 3, from_logits=True, temperature=tiny, backend=backend)
    if dtype == "float64":  # 1e-40 is fine in float64 accumulation
        picks, radii = pcoreset.select(z, None, 3, from_logits=True, temperature=1e-40, return_radii=True)
        assert np.all(np.isfinite(radii[1:]))


def force_projection(monkeypatch, dims=4, rounds=2, frac=0.25):
    """The certified search with the projected bound in every tile of rows
    that has a probe bound, whatever the sizes: returns the list that
    collects (rows, columns, pairs kept) per projected tile."""
    if bounds._C is None:
        pytest.skip("the projected bound runs in the C++ module, which is not built here")
    monkeypatch.setattr(sizes, "PROJ_MIN_C", 1)
    monkeypatch.setattr(sizes, "PROJ_MIN_COLS", 1)
    monkeypatch.setattr(sizes, "proj_dims", lambda c: max(1, min(dims, c - 1)))
    monkeypatch.setattr(sizes, "PROJ_ROUNDS", rounds)
    monkeypatch.setattr(sizes, "PROJ_FRAC", frac)
    stats = []
    monkeypatch.setattr(sizes, "PROJ_STATS", stats)
    return stats


@pytest.mark.parametrize("pool", sorted(POOLS))
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("dims", [2, 8])
@pytest.mark.parametrize("rounds,frac", [(0, 0.25), (2, 0.25), (8, 0.125), (3, 1.0)])
def test_projected_bound_keeps_the_exact_running_minimum(pool, dtype, dims, rounds, frac, monkeypatch):
    # The projected bound in every tile (confident rows 1e-7 apart, exact
    # duplicates, quantised rows with ties), with no rounds, a few, many, and
    # rounds that take every kept pair at once: the candidates still hold
    # the exact pass's nearest center, and the bound drops pairs (it is used).
    stats = force_projection(monkeypatch, dims, rounds, frac)
    monkeypatch.setattr(sizes, "PROBE", 4)  # many small groups, many tiles
    monkeypatch.setattr(sizes, "n_pivots", lambda m: min(m, 6))
    x = POOLS[pool]().astype(dtype)
    lab = labeled_for(pool, x.shape[0])
    problem = make_problem(x, lab, 0, simplex=True, from_logits=False, temperature=1.0, prune=True,
                           num_threads=1, progress=None)
    exact = cpu_backend.make_state(problem)
    exact.seed_rows(lab)
    with _start.force("certified"):
        cand = _start.nearest_candidates(problem)
    cert = cpu_backend.make_state(problem)
    cert.seed_rows_with_candidates(lab, cand)
    np.testing.assert_array_equal(cert.min_dist2(), exact.min_dist2())
    st = np.array(stats)
    assert st.size, "no tile went through the projected bound"
    if rounds or dims > 2:
        assert st[:, 2].sum() < (st[:, 0] * st[:, 1]).sum(), "the bound dropped no pair"


@pytest.mark.parametrize("scale", [1e-30, 1e-6, 1.0, 1e15])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_projected_bound_is_below_every_squared_distance(scale, dtype):
    # The bound exactly as the C++ search evaluates and compares it (float32
    # lanes: a pair is dropped where v > thr - off rounded up), against
    # exact squared distances, on pairs chosen to break it: rows in the span
    # of P (their residual norms cancel to nothing), rows orthogonal to it,
    # copies of a center and rows a rounding away from one, at tiny and huge
    # magnitudes. No pair may be dropped at its own distance.
    if bounds._C is None:
        pytest.skip("the projected bound runs in the C++ module, which is not built here")
    rng = np.random.default_rng(3)
    c, d = 40, 6
    base = clustered_pool(600, c, seed=8, dtype=np.float64)
    proj = bounds.Projection(base[:300].astype(dtype), d, dtype, lambda u: (base[u] * scale).astype(dtype),
                             300, 1 << 20)
    ys = (base[:300] * scale).astype(dtype)
    pivot = ys[7].copy()
    p = proj.p
    rows = [base[300:] * scale,
            (ys[:50] - pivot) @ p.T @ p + pivot,                                  # in the span
            ys[50:100] + (rng.normal(size=(50, c)) @ (np.eye(c) - p.T @ p)) * scale * 1e-3,
            ys[100:150],                                                          # copies
            ys[150:200] * (1 + 4 * np.finfo(dtype).eps)]                          # a rounding away
    xr = np.concatenate(rows).astype(dtype)
    g = proj.group(pivot)
    xs, sh = xr - pivot, ys - pivot
    pa, rt = g.rows(xs, bounds.sq_norms(xs)[0])
    pb, col = g.cols(np.arange(300), bounds.sq_norms(sh)[0])
    gp = pa @ pb.T
    row = np.ascontiguousarray(np.vstack([rt, np.zeros(rt.shape[1])]).T)
    v, off = bounds._C.proj_bound_terms(gp, row, np.ascontiguousarray(col), g.e, g.ea, g.ea0)
    diff = xr.astype(np.float64)[:, None, :] - ys.astype(np.float64)[None]
    exact = np.einsum("ijk,ijk->ij", diff, diff)

    def theta(th):  # th - off rounded up to float32, as the search does
        x64 = th - off[:, None]
        y = x64.astype(np.float32)
        low = y.astype(np.float64) < x64
        y[low] = np.nextafter(y[low], np.float32(np.inf))
        return y

    dropped = v > theta(exact)
    assert not dropped.any(), f"{dropped.sum()} pairs dropped at their own distance"
    # and the bound is not empty: it drops most pairs against each row's
    # nearest distance (at 1e-30 the squares lie below float32's subnormals,
    # where the bound's absolute term keeps every pair: rigorous, not useful)
    if scale >= 1e-6:
        assert (v > theta(exact.min(1, keepdims=True))).mean() > 0.5


def test_projected_tile_rejects_bad_shapes():
    if bounds._C is None:
        pytest.skip("the C++ module is not built here")
    x = np.zeros((3, 5), np.float32)
    y = np.zeros((4, 5), np.float32)
    n3, n4 = np.zeros(3, np.float32), np.zeros(4, np.float32)
    f3, f4 = np.zeros(3), np.zeros(4)
    args = dict(x=x, y=y, nx2=n3, ny2=n4, nx=f3, ny=f4, gp=np.zeros((3, 4), np.float32),
                row=np.zeros((3, 5)), col=np.zeros((4, 4)), e=0.0, ea=0.0, ea0=0.0, rounds=1, frac=0.5,
                kappa=0.0, tiny=0.0, kernel_rel=0.0, k=2)
    bounds._C.certify_tile_proj(**args)
    for bad in [dict(gp=np.zeros((3, 3), np.float32)), dict(row=np.zeros((3, 4))), dict(col=np.zeros((3, 4))),
                dict(frac=0.0), dict(rounds=-1), dict(k=0), dict(y=np.zeros((4, 6), np.float32))]:
        with pytest.raises((ValueError, TypeError)):
            bounds._C.certify_tile_proj(**{**args, **bad})


def exact_start(pool):
    """(pool rows, labeled rows, problem, a cpu state seeded by the exact pass)."""
    x = POOLS[pool]().astype(np.float32)
    lab = labeled_for(pool, x.shape[0])
    problem = make_problem(x, lab, 0, simplex=True, from_logits=False, temperature=1.0, prune=True,
                           num_threads=1, progress=None)
    exact = cpu_backend.make_state(problem)
    exact.seed_rows(lab)
    return x, lab, problem, exact


@pytest.mark.parametrize("pool", ["confident16", "duplicated"])
def test_numpy_epilogue_matches_the_fused_one(pool, monkeypatch):
    # Without the C++ module the certified search's epilogue runs in NumPy;
    # with it, fused in C++. Both must give candidates with the exact minimum.
    x, lab, problem, exact = exact_start(pool)
    fused = _start.nearest_candidates(problem)
    monkeypatch.setattr(bounds, "_C", None)
    plain = _start.nearest_candidates(problem)
    for cand in (fused, plain):
        s = cpu_backend.make_state(problem)
        s.seed_rows_with_candidates(lab, cand)
        np.testing.assert_array_equal(s.min_dist2(), exact.min_dist2())


@pytest.mark.parametrize("labeled", [None, "many"])
def test_picks_do_not_depend_on_the_thread_count(labeled):
    # The default thread count follows the machine's load, so the same call
    # may run on one thread or several: the picks and radii must be the same
    # bits either way (the ActiveKD demo's reproducibility rests on this).
    x = clustered_pool(60_000, 40, seed=33)
    lab = None if labeled is None else np.random.default_rng(2).choice(60_000, 700, replace=False)
    with _start.force("certified"):
        one = pcoreset.select(x, lab, 150, num_threads=1, return_radii=True)
        two = pcoreset.select(x, lab, 150, num_threads=2, return_radii=True)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])
    if lab is None:  # the first steps visit whole cells: the two-thread run used its threads
        st = pcoreset.backends.get("cpu").last_stats
        assert st["parallel_steps"] > 0, st


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_epilogue_does_not_depend_on_the_thread_count(dtype):
    # certify_tile splits a tile into row blocks over threads; the candidates
    # and the over-full rows' lists must come back the same, in row order.
    from pcoreset import _C
    rng = np.random.default_rng(5)
    rows, cols = 9000, 40  # several row blocks
    # quantised values: many exact ties, many rows with more than k candidates
    g = (np.round(rng.random((rows, cols)) * 4) / 4).astype(dtype)
    g[::3] -= np.linspace(0, 0.2, cols, dtype=dtype)  # and rows without ties
    nx2 = rng.random(rows).astype(dtype)
    ny2 = (np.round(rng.random(cols) * 4) / 2).astype(dtype)
    nx, ny = rng.random(rows) + 0.5, rng.random(cols) + 0.5
    one = _C.certify_tile(g, nx2, ny2, nx, ny, 1e-3, 1e-30, 1e-6, 4, num_threads=1)
    two = _C.certify_tile(g, nx2, ny2, nx, ny, 1e-3, 1e-30, 1e-6, 4, num_threads=2)
    assert one[2].size > 0  # the over-full lists were exercised
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
    # every row's first candidate is its argmin (lowest column among equals)
    # of the GEMM identity (ny2 - 2 g) + nx2, formed in the tile's dtype
    d = (ny2[None, :] + dtype(-2.0) * g) + nx2[:, None]
    np.testing.assert_array_equal(one[0][:, 0][one[1] <= 4], d.argmin(1)[one[1] <= 4])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pivot_assignment_and_norms_in_cpp_match_numpy(dtype):
    # The C++ passes work on whole SIMD registers with independent minima;
    # they must pick the lowest index among equal minima, never a NaN, and
    # give upper bounds of the shifted squared norms, whatever the lanes.
    from pcoreset import _C
    rng = np.random.default_rng(8)
    rows, p, c = 3000, 37, 29  # neither a multiple of the lanes
    x = (np.round(rng.random((rows, c)) * 8) / 8).astype(dtype)  # quantised: many ties
    r = x[rng.choice(rows, p, replace=False)].copy()
    r[21] = r[3]  # equal pivots: the lower index wins
    g = x @ r.T
    g[7, :] = np.nan  # no finite distance: pivot 0
    g[8, 10:] = np.nan  # a NaN never wins
    rn2 = (r * r).sum(1)
    piv, s2 = _C.assign_pivots(x, g, r, rn2)
    d = rn2[None, :] + dtype(-2.0) * g
    np.testing.assert_array_equal(piv, np.where(np.isnan(d), np.inf, d).argmin(1))
    assert not np.any(piv == 21)
    sh = (x - r[piv]).astype(np.float64)  # the float shift, then exact squares
    want = (sh * sh).sum(1)
    s2 = s2.astype(np.float64)
    assert np.all(s2 >= want * (1 - 1e-13))
    np.testing.assert_allclose(s2, want, rtol=4 * np.finfo(dtype).eps, atol=0)
    norm, norm2 = _C.row_norms(x)
    np.testing.assert_allclose(norm, np.sqrt((x.astype(np.float64) ** 2).sum(1)), rtol=1e-13)
    assert norm2.dtype == dtype
    np.testing.assert_allclose(norm2, np.einsum("ij,ij->i", x, x), rtol=c * np.finfo(dtype).eps)


@pytest.mark.parametrize("pool", sorted(POOLS))
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("cache", [0.0, 1.0])
def test_certified_search_in_small_pieces(pool, threads, cache, monkeypatch):
    # Tiny probes, tiles and row chunks force every branch of the search
    # (the probe's per-row reach, rows sorted into several tiles, groups cut
    # into row chunks, center-to-pivot bounds in blocks, groups on worker
    # threads, the centers kept or read on demand): the running minimum
    # stays the exact pass's, bit for bit.
    x = POOLS[pool]().astype(np.float32)
    lab = labeled_for(pool, x.shape[0])
    problem = make_problem(x, lab, 0, simplex=True, from_logits=False, temperature=1.0, prune=True,
                           num_threads=threads, progress=None)
    exact = cpu_backend.make_state(problem)
    exact.seed_rows(lab)
    monkeypatch.setattr(sizes, "PROBE", 4)
    monkeypatch.setattr(sizes, "TILE", 600)
    monkeypatch.setattr(sizes, "ROW_CHUNK_BYTES", 4096)
    monkeypatch.setattr(sizes, "NEAR_BLOCKS", 2)
    monkeypatch.setattr(sizes, "CENTER_CACHE", cache)
    monkeypatch.setattr(sizes, "PAIR_BYTES", 8 * 150 * 3)
    monkeypatch.setattr(sizes, "n_pivots", lambda m: min(m, 12))
    monkeypatch.setattr(sizes, "PIVOT_SAMPLE", 40)  # pivots from a strided sample
    wide = []
    real_wide = search.wide
    monkeypatch.setattr(search, "wide", lambda *a: wide.append(1) or real_wide(*a))
    cand = _start.nearest_candidates(problem)
    assert wide, "no tile was searched block by block"
    cert = cpu_backend.make_state(problem)
    cert.seed_rows_with_candidates(lab, cand)
    np.testing.assert_array_equal(cert.min_dist2(), exact.min_dist2())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("collide", [False, True])
def test_dedupe_keeps_the_lowest_index_of_each_distinct_row(dtype, collide, monkeypatch):
    # The start merges identical centers (the lowest index represents them)
    # by hashing rows; equal hashes are compared bit for bit, so even a hash
    # under which every row collides merges exactly the identical rows.
    if collide:
        monkeypatch.setattr(start_centers, "row_hash", lambda bits, mult: np.zeros(bits.shape[0], dtype=np.uint64))
    monkeypatch.setattr(sizes, "ROW_CHUNK_BYTES", 2048)  # several chunks
    x = quantised_pool(700, 12, seed=3).astype(dtype)
    x[5] = x[400]
    x[600] = 1e-30
    x[601] = 1e30
    _, first = np.unique(x, axis=0, return_index=True)
    got = start_centers.dedupe(lambda ids: x[ids], x.shape[0], x.shape[1], dtype)
    np.testing.assert_array_equal(got, np.sort(first))


@pytest.mark.parametrize("pool", sorted(POOLS))
def test_kernel_candidates_are_as_narrow_as_the_pool_allows(pool, monkeypatch):
    # The kernel gets (N, k') int64 with k' the most candidates any row
    # has: still the exact running minimum, and narrower where rows have
    # a single candidate.
    x, lab, problem, exact = exact_start(pool)
    full = _start.nearest_candidates(problem)
    monkeypatch.setattr(sizes, "WIDEN_ROWS", 7)  # widened in place over many chunks
    narrow = certified.kernel_candidates(problem, None, cpu_backend.kernel_values(exact))
    width = max(int((full != full[:, :1]).any(0).nonzero()[0].max(initial=0)) + 1, 1)
    assert narrow.shape == (x.shape[0], width) and narrow.dtype == np.int64
    np.testing.assert_array_equal(narrow, full[:, :width])
    s = cpu_backend.make_state(problem)
    s.seed_rows_with_candidates(lab, narrow)
    np.testing.assert_array_equal(s.min_dist2(), exact.min_dist2())


def test_certified_start_memory_stays_a_fraction_of_the_pool(monkeypatch):
    # The search keeps per row an int32 pivot order, a squared norm and
    # int32 candidates, and otherwise chunks (scaled down here with the
    # pool): what NumPy allocates stays under a quarter of the pool,
    # however many centers there are.
    monkeypatch.setattr(sizes, "ROW_CHUNK_BYTES", 1 << 17)
    monkeypatch.setattr(sizes, "PAIR_BYTES", 1 << 18)
    monkeypatch.setattr(sizes, "TILE", 1 << 15)
    monkeypatch.setattr(sizes, "PIVOT_SAMPLE", 1024)
    x = clustered_pool(60_000, 100, seed=4, dtype=np.float32)
    pcoreset.select(x[:100], None, 1, backend="cpu")  # lazy imports happen outside the trace
    for n_lab in (600, 6000):
        lab = np.random.default_rng(n_lab).choice(x.shape[0], n_lab, replace=False)
        tracemalloc.start()
        try:
            with _start.force("certified"):
                pcoreset.select(x, lab, 1, backend="cpu", num_threads=1)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak <= 0.25 * x.nbytes, (n_lab, peak / x.nbytes)


@pytest.mark.parametrize("pool", ["confident16", "quantised"])
def test_add_rows_and_vectors_through_the_certified_search(pool):
    # Rows labeled later and center vectors added to a running state
    # (Selector, distributed ranks) take the certified path for large
    # products: the running minimum is the exact pass's, bit for bit.
    x = POOLS[pool]().astype(np.float32)
    lab = labeled_for(pool, x.shape[0])
    vecs = x[lab[:40]].astype(np.float64) * 0.5 + x[lab[40:80]].astype(np.float64) * 0.5
    problem = make_problem(x, None, 0, simplex=True, from_logits=False, temperature=1.0, prune=True,
                           num_threads=1, progress=None)
    backend = pcoreset.backends.get("cpu")
    exact, cert = backend.make_state(problem), backend.make_state(problem)
    exact.seed_rows(lab)
    exact.seed_vectors(vecs)
    with _start.force("certified"):
        _start.add_rows(backend, cert, problem, lab)
        _start.add_vectors(backend, cert, problem, vecs)
    np.testing.assert_array_equal(cert.min_dist2(), exact.min_dist2())


@pytest.mark.parametrize("scale", [1e-30, 1e-20, 1e-3, 1e17, 1e25])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("cache", [0.0, 1.0])
@pytest.mark.parametrize("proj", [False, True])
def test_certified_start_at_huge_and_tiny_magnitudes(scale, dtype, threads, cache, proj, monkeypatch):
    # Points far from probability rows: squares that underflow (1e-30 and
    # 1e-20; at 1e-30 the projections' products are below float32's
    # subnormals), that nearly overflow float32 (1e17), that overflow it
    # (1e25: the shifted squared norms become inf). The certified candidates
    # still hold the exact pass's nearest center, bit for bit, with the
    # centers kept or read on demand, with and without the projected bound.
    monkeypatch.setattr(sizes, "CENTER_CACHE", cache)
    if proj:
        force_projection(monkeypatch, dims=6)
    x = (clustered_pool(1200, 24, seed=6, dtype=np.float64) * scale).astype(dtype)
    lab = np.arange(0, 1200, 9)
    problem = make_problem(x, lab, 0, simplex=False, from_logits=False, temperature=1.0, prune=True,
                           num_threads=threads, progress=None)
    exact = cpu_backend.make_state(problem)
    exact.seed_rows(lab)
    cert = cpu_backend.make_state(problem)
    cert.seed_rows_with_candidates(lab, certified.kernel_candidates(problem, None, cpu_backend.kernel_values(cert)))
    np.testing.assert_array_equal(cert.min_dist2(), exact.min_dist2())
    with _start.force("exact"):
        want = pcoreset.kcenter_greedy(x, lab, 20, num_threads=threads)
    with _start.force("certified"):
        got = pcoreset.kcenter_greedy(x, lab, 20, num_threads=threads)
    np.testing.assert_array_equal(got, want)


def test_workers_stop_after_an_error_without_running_the_rest():
    """An error (or Ctrl-C) in one item of a pass: the items not yet started
    never run, so the start unwinds after the running ones, not the pass."""
    import threading
    import time as _time

    ran = []
    lock = threading.Lock()

    def fn(i):
        if i == 0:
            raise KeyboardInterrupt
        _time.sleep(0.05)
        with lock:
            ran.append(i)

    w = certified.Workers(2)
    try:
        with pytest.raises(KeyboardInterrupt):
            w.each(fn, range(200))
    finally:
        w.close()
    assert len(ran) < 10  # 200 items of 50 ms on 2 threads would take 5 s


def _concurrency(monkeypatch, readings, requested=0, items=40):
    """The most items of one pass that ran at once on a 4-core machine, with
    `_threads.available` answering `readings` in turn (the last one from
    then on)."""
    import threading
    import time as _time

    from pcoreset import _threads

    answers = list(readings)
    monkeypatch.setattr(_threads, "cores", lambda: 4)
    monkeypatch.setattr(_threads, "available", lambda requested=0: answers.pop(0) if len(answers) > 1 else answers[0])
    lock = threading.Lock()
    now, most, done = [0], [0], []

    def fn(i):
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        _time.sleep(0.01)
        with lock:
            now[0] -= 1
            done.append(i)

    w = certified.Workers(requested)
    try:
        w.each(fn, range(items))
    finally:
        w.close()
    assert sorted(done) == list(range(items))  # every item ran once
    return most[0]


def test_default_workers_use_every_core_whatever_the_thread_rule_reads(monkeypatch):
    """The start's workers run independent one-thread items: by default one
    per core, even when a reading of the kernel's thread rule says the
    machine is busy (one such reading had put whole starts on one thread);
    a caller's count is kept."""
    assert _concurrency(monkeypatch, [1]) == 4
    assert _concurrency(monkeypatch, [1], requested=3) == 3
    assert _concurrency(monkeypatch, [4], requested=1) == 1


def test_start_candidates_do_not_depend_on_the_workers(monkeypatch):
    """The certified start gives the same candidates on one worker and on
    one per core, whatever the thread rule reads."""
    from pcoreset import _threads

    x = clustered_pool(30_000, 12, seed=5)
    p = make_problem(x, np.arange(0, 30_000, 7), 0, simplex=True, from_logits=False, temperature=1.0, prune=True,
                     num_threads=0, progress=None)
    monkeypatch.setattr(_threads, "cores", lambda: 1)
    want = _start.nearest_candidates(p)
    monkeypatch.setattr(_threads, "cores", lambda: 3)
    monkeypatch.setattr(_threads, "available", lambda requested=0: requested or 1)
    np.testing.assert_array_equal(_start.nearest_candidates(p), want)

"""The selection contract (the docstring of pcoreset.select) on the CPU backends."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pcoreset
from pcoreset.backends import cpu as cpu_backend
from reference import as_float64_rows, check_greedy_valid, reference_kcenter
from conftest import CPU_BACKENDS, needs_torch, torch, clustered_pool

BACKENDS = list(CPU_BACKENDS)


def dirichlet(n, c, seed, dtype=np.float64, alpha=0.5):
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(c, alpha), size=n).astype(dtype)


# ---------------------------------------------------------------- exactness


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("labeled", [[], [3], [0, 7, 19, 40]])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_float64_oracle_on_tie_free_pool(backend, labeled, dtype):
    x = dirichlet(120, 7, seed=len(labeled), dtype=dtype)
    budget = 30
    picks, radii = pcoreset.select(x, labeled, budget, backend=backend, return_radii=True)
    want, want_radii = reference_kcenter(as_float64_rows(x), labeled, budget)
    np.testing.assert_array_equal(picks, want)
    np.testing.assert_allclose(radii, want_radii, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_go_to_lowest_index(backend):
    # Three distinct one-hot rows, each repeated: every distance is exact, so
    # every step is a tie that only the index rule can break.
    base = np.eye(3)
    x = base[[2, 0, 1, 0, 2, 1, 1, 0, 2, 2, 0, 1]]
    for labeled in ([], [4], [1, 2]):
        budget = 12 - len(labeled)
        picks = pcoreset.select(x, labeled, budget, backend=backend)
        want, _ = reference_kcenter(x, labeled, budget)
        np.testing.assert_array_equal(picks, want)
    # With nothing labeled all rows are equally far from the mean: row 0 first.
    assert pcoreset.select(x, [], 1, backend=backend)[0] == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_half_precision_is_greedy_valid(backend):
    x = clustered_pool(600, 33, seed=3)
    labeled = [5, 100, 333]
    halves = [x.astype(np.float16)]
    if torch is not None:
        halves += [torch.from_numpy(x).half(), torch.from_numpy(x).bfloat16()]
    for t in halves:
        picks = pcoreset.select(t, labeled, 60, backend=backend)
        check_greedy_valid(as_float64_rows(t), labeled, np.asarray(picks))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_from_logits_matches_softmax_input(backend, temperature):
    rng = np.random.default_rng(7)
    logits = rng.normal(0, 3, size=(200, 9))
    probs = as_float64_rows(logits, from_logits=True, temperature=temperature)
    got = pcoreset.select(logits, [1, 2], 40, from_logits=True, temperature=temperature, backend=backend)
    want = pcoreset.select(probs, [1, 2], 40, backend=backend)
    np.testing.assert_array_equal(got, want)
    got32 = pcoreset.select(logits.astype(np.float32), [1, 2], 40, from_logits=True,
                            temperature=temperature, backend=backend)
    check_greedy_valid(probs, [1, 2], got32)


@needs_torch
def test_cpu_and_torch_agree_and_pruning_changes_nothing():
    x = clustered_pool(3000, 20, seed=11)
    labeled = np.arange(0, 3000, 97)
    a = pcoreset.select(x, labeled, 300, backend="cpu")
    b = pcoreset.select(x, labeled, 300, backend="cpu", prune=False)
    c = pcoreset.select(x, labeled, 300, backend="torch")
    d = pcoreset.select(x, labeled, 300, backend="cpu", num_threads=1)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, d)
    check_greedy_valid(as_float64_rows(x), labeled, c)
    # float32 backends may swap near-ties only; here there are none.
    np.testing.assert_array_equal(a, c)


def test_pruning_skips_most_rows_on_clustered_pools():
    from pcoreset import _start
    from pcoreset._problem import make_problem

    x = clustered_pool(20000, 50, k=10, noise=1.0, seed=2)
    labeled = np.arange(0, 20000, 100)
    problem = make_problem(x, labeled, 200, simplex=True, from_logits=False, temperature=1.0,
                           prune=True, num_threads=0, progress=None)
    backend = cpu_backend.CpuBackend()
    picks, _ = backend.run(problem, _start.start_state)
    np.testing.assert_array_equal(picks, pcoreset.select(x, labeled, 200, backend="cpu", prune=False))
    stats = backend.last_stats
    # the row bound rules out most rows of the cells (or centers) in reach
    assert stats["rows_computed"] / stats["rows_in_reach"] < 0.5, stats


def test_large_labeled_set_uses_candidates_and_stays_greedy_valid(monkeypatch):
    from pcoreset import _start

    monkeypatch.setattr(_start, "_forced", "certified")
    x = clustered_pool(2000, 16, seed=5)
    labeled = np.arange(0, 2000, 3)
    for backend in BACKENDS:
        picks = pcoreset.select(x, labeled, 50, backend=backend)
        check_greedy_valid(as_float64_rows(x), labeled, picks)


# ---------------------------------------------------------------- properties


@needs_torch
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 60),
    c=st.integers(1, 40),
    n_labeled=st.integers(0, 10),
    budget_frac=st.floats(0, 1),
    dtype=st.sampled_from(["float16", "bfloat16", "float32", "float64"]),
    seed=st.integers(0, 2**16),
    backend=st.sampled_from(BACKENDS),
)
def test_properties(n, c, n_labeled, budget_frac, dtype, seed, backend):
    rng = np.random.default_rng(seed)
    x = rng.dirichlet(np.ones(c), size=n)
    t = torch.from_numpy(x).to(getattr(torch, dtype))
    labeled = rng.choice(n, size=min(n_labeled, n), replace=False)
    budget = int(round(budget_frac * (n - labeled.size)))
    before = t.clone()
    picks, radii = pcoreset.select(t, labeled, budget, backend=backend, return_radii=True,
                                   simplex_atol=5e-2)
    assert torch.equal(t, before)
    assert isinstance(picks, torch.Tensor) and picks.dtype == torch.int64
    assert picks.shape == (budget,)
    p = picks.numpy()
    assert len(set(p.tolist())) == budget
    assert not set(p.tolist()) & set(labeled.tolist())
    r = radii.numpy()
    assert np.all(np.diff(r) <= 1e-12) or budget <= 1
    if budget and labeled.size == 0:
        assert np.isinf(r[0])
    check_greedy_valid(as_float64_rows(t), labeled, p, rtol=1e-5)
    if dtype == "float64":
        other = "cpu" if backend == "torch" else "torch"
        q = pcoreset.select(t, labeled, budget, backend=other)
        check_greedy_valid(as_float64_rows(t), labeled, q.numpy(), rtol=1e-9)


# ---------------------------------------------------------------- interface


def test_return_kinds_and_edge_budgets():
    x = dirichlet(50, 4, seed=0, dtype=np.float32)
    out = pcoreset.select(x, [0], 0)
    assert isinstance(out, np.ndarray) and out.dtype == np.int64 and out.size == 0
    full = pcoreset.select(x, [0], 49)
    assert sorted(full.tolist()) == list(range(1, 50))
    if torch is not None:
        t = pcoreset.select(torch.from_numpy(x), torch.tensor([0]), 5)
        assert isinstance(t, torch.Tensor) and t.dtype == torch.int64
        np.testing.assert_array_equal(t.numpy(), full[:5])
    picks, radii = pcoreset.select(x, None, 3, return_radii=True)
    assert radii.dtype == np.float64 and np.isinf(radii[0])
    assert pcoreset.select(x, [], 3).tolist() == picks.tolist()


def test_inputs_are_not_modified_and_npy_path(tmp_path):
    x = clustered_pool(400, 12, seed=4)
    keep = x.copy()
    lab = np.array([3, 9])
    keep_lab = lab.copy()
    a = pcoreset.select(x, lab, 20)
    np.testing.assert_array_equal(x, keep)
    np.testing.assert_array_equal(lab, keep_lab)
    np.save(tmp_path / "pool.npy", x)
    b = pcoreset.select(str(tmp_path / "pool.npy"), lab, 20)
    np.testing.assert_array_equal(a, b)
    # non-contiguous and big-endian inputs give the same answer
    xt = np.asfortranarray(x)
    np.testing.assert_array_equal(pcoreset.select(xt, lab, 20), a)
    np.testing.assert_array_equal(pcoreset.select(x.astype(">f4"), lab, 20), a)


def test_kcenter_greedy_on_features():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(150, 6))
    picks = pcoreset.kcenter_greedy(f, [1, 2], 25)
    want, _ = reference_kcenter(f, [1, 2], 25)
    np.testing.assert_array_equal(picks, want)
    with pytest.raises(ValueError, match="NaN or inf value in row 4"):
        f[4, 2] = np.nan
        pcoreset.kcenter_greedy(f, [], 3)


def test_progress_callback_and_info():
    x = clustered_pool(500, 10, seed=9)
    for backend in CPU_BACKENDS + (["faiss"] if pcoreset.info()["faiss"] else []):
        seen = []
        pcoreset.select(x, [], 50, backend=backend, progress=seen.append)
        assert seen and seen[-1] == 50, backend
    info = pcoreset.info()
    assert info["cpu_module"]["built"] is True
    assert info["backends"]["cpu"] == "available"
    assert info["cpu_module"]["simd"] in ("avx2+f16c", "sse2", "neon", "scalar")


# ---------------------------------------------------------------- errors


GOOD = dirichlet(20, 3, seed=1, dtype=np.float32)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(probs=np.ones(5)), ValueError, r"must be 2-D \(N, C\), got shape \(5,\)"),
        (dict(probs=np.zeros((4, 0))), ValueError, "at least one column"),
        (dict(probs=np.ones((4, 3), dtype=np.int32)), TypeError, "dtype int32"),
        (dict(probs=np.ones((4, 3), dtype=np.complex64)), TypeError, "dtype complex64"),
        (dict(probs="nope.npy"), ValueError, "no such file"),
        (dict(probs=[["a"]]), TypeError, "dtype <U1"),
        (dict(probs=np.full((4, 2), 0.5)[[0, 1, 2, 3]] * [[1, 1], [1, 1], [1, 3], [1, 1]]), ValueError,
         "row 2 is not a probability vector: it sums to 2"),
        (dict(probs=np.array([[0.5, 0.5], [1.5, -0.5]])), ValueError, "row 1 .* negative value -0.5"),
        (dict(probs=np.array([[0.5, 0.5], [np.nan, 1.0]])), ValueError, "NaN or inf value in row 1"),
        (dict(probs=np.array([[0.5, 0.5], [np.inf, 1.0]]), from_logits=True), ValueError, "row 1"),
        (dict(labeled_idx=[0, 20]), ValueError, "index out of range: 20"),
        (dict(labeled_idx=[-1]), ValueError, "index out of range: -1"),
        (dict(labeled_idx=[2**70]), ValueError, "index out of range: 1180591620717411303424"),
        (dict(labeled_idx=[3, 3]), ValueError, "duplicated index: 3"),
        (dict(labeled_idx=[1.0]), TypeError, "must hold integers, got dtype float64"),
        (dict(labeled_idx=np.array([1, 7], dtype=object)), TypeError, "labeled_idx must hold integers, got dtype object"),
        (dict(labeled_idx=np.array([7], dtype=object)), TypeError, "labeled_idx must hold integers, got dtype object"),
        (dict(labeled_idx=np.array([1.0, 7.0])), TypeError, "labeled_idx must hold integers, got dtype float64"),
        (dict(labeled_idx=np.array([1, "7"], dtype=object)), TypeError, "labeled_idx must hold integers, got dtype object"),
        (dict(budget=np.True_), TypeError, "budget must be an integer"),
        (dict(simplex_atol=float("nan")), ValueError, "simplex_atol must be a finite number >= 0, got nan"),
        (dict(simplex_atol=float("inf")), ValueError, "simplex_atol must be a finite number >= 0, got inf"),
        (dict(simplex_atol=-1e-3), ValueError, "simplex_atol must be a finite number >= 0, got -0.001"),
        (dict(simplex_atol="x"), TypeError, "simplex_atol must be a number >= 0 .*got 'x'"),
        (dict(simplex_atol=True), TypeError, "simplex_atol must be a number >= 0 .*got True"),
        (dict(labeled_idx=np.zeros((2, 2), dtype=int)), ValueError, "must be 1-D"),
        (dict(budget=-1), ValueError, "budget must be >= 0, got -1"),
        (dict(budget=2.0), TypeError, r"budget must be an integer, got 2.0"),
        (dict(budget=True), TypeError, "budget must be an integer"),
        (dict(budget=20, labeled_idx=[0]), pcoreset.PoolExhaustedError, "budget=20 but only 19"),
        (dict(temperature=0.0, from_logits=True), ValueError, "temperature must be a positive finite number, got 0.0"),
        (dict(temperature=float("nan")), ValueError, "temperature"),
        (dict(backend="gpu"), ValueError, r"backend='gpu' is not known; choose one of \['auto', 'cuda'|backend='gpu' is not known"),
        (dict(from_logits="yes"), TypeError, "from_logits must be True or False"),
        (dict(num_threads=-2), ValueError, "num_threads must be an integer >= 0"),
    ],
)
def test_errors_name_argument_and_value(kwargs, exc, match):
    args = dict(probs=GOOD, labeled_idx=[], budget=1)
    args.update(kwargs)
    probs = args.pop("probs")
    with pytest.raises(exc, match=match):
        pcoreset.select(probs, args.pop("labeled_idx"), args.pop("budget"), **args)


@needs_torch
def test_torch_argument_errors_name_argument_and_value():
    with pytest.raises(TypeError, match="labeled_idx must hold integers, got dtype torch.float32"):
        pcoreset.select(GOOD, torch.tensor([1.0, 7.0]), 1)
    with pytest.raises(TypeError, match="budget must be an integer"):
        pcoreset.select(GOOD, [], torch.tensor(True))


def test_pool_exhausted_is_a_value_error_with_counts():
    with pytest.raises(ValueError) as info:
        pcoreset.select(GOOD, [0, 1], 19)
    assert info.value.available == 18 and info.value.requested == 19


@needs_torch  # auto falls through to the torch backend
def test_unavailable_backend_lists_reasons(monkeypatch):
    monkeypatch.setattr(cpu_backend, "_C", None)
    monkeypatch.setattr(cpu_backend, "_IMPORT_ERROR", "simulated: not built")
    with pytest.raises(pcoreset.BackendUnavailableError, match=r"cpu: the C\+\+ extension .*\(simulated"):
        pcoreset.select(GOOD, [0], 2, backend="cpu")
    # auto falls through to a backend that can run it
    np.testing.assert_array_equal(pcoreset.select(GOOD, [0], 2), pcoreset.select(GOOD, [0], 2, backend="torch"))


def test_extension_rejects_bad_buffers_without_crashing():
    from pcoreset import _C

    with pytest.raises(ValueError, match="itemsize"):
        _C.KCenterState(np.zeros((3, 2), np.float32), "float64")
    with pytest.raises(ValueError, match="dtype='int8'"):
        _C.KCenterState(np.zeros((3, 2), np.int8), "int8")
    with pytest.raises(ValueError, match="2-D"):
        _C.KCenterState(np.zeros(3, np.float32), "float32")
    with pytest.raises(ValueError, match="C-contiguous"):
        _C.KCenterState(np.zeros((3, 4), np.float32)[:, ::2], "float32")
    s = _C.KCenterState(np.eye(3, dtype=np.float32), "float32")
    with pytest.raises(IndexError, match="labeled row=7 is out of range"):
        s.seed_rows(np.array([7]))
    with pytest.raises(ValueError, match="vector must have shape"):
        s.push_center(np.zeros(5))


def test_simplex_atol_nan_does_not_turn_the_check_off():
    bad = np.array([[0.5, 0.5], [0.9, 0.9]])
    for atol in (float("nan"), float("inf")):
        with pytest.raises(pcoreset.InvalidInputError, match="simplex_atol"):
            pcoreset.select(bad, [], 1, simplex_atol=atol)
        with pytest.raises(pcoreset.InvalidInputError, match="simplex_atol"):
            pcoreset.Selector(bad, None, simplex_atol=atol)


# ---------------------------------------------------------------- magnitudes
# kcenter_greedy takes any finite vectors: squared distances of float32 data
# beyond ~1e18 overflow float32 and those of data below ~1e-12 go subnormal or
# zero. The answer must be the float64 greedy one (or a clear refusal).


def greedy64(x, labeled, budget, centers=None):
    """k-center greedy in float64 with centers= vectors (x already float64,
    magnitudes float64 can square)."""
    n = x.shape[0]
    mind = np.full(n, np.inf)
    taken = np.zeros(n, dtype=bool)
    for v in ([] if centers is None else list(centers)) + [x[i] for i in labeled]:
        mind = np.minimum(mind, ((x - v) ** 2).sum(1))
    taken[list(labeled)] = True
    picks, radii = [], []
    for _ in range(budget):
        if not np.isfinite(mind[~taken]).all():  # no center yet: from the mean
            d = ((x - x.mean(0)) ** 2).sum(1)
            d[taken] = -1
            p, r = int(np.argmax(d)), np.inf
        else:
            score = np.where(taken, -1.0, mind)
            p = int(np.argmax(score))
            r = float(np.sqrt(mind[p]))
        picks.append(p)
        radii.append(r)
        taken[p] = True
        mind = np.minimum(mind, ((x - x[p]) ** 2).sum(1))
    return np.array(picks), np.array(radii)


MAG_BACKENDS = list(CPU_BACKENDS) + (["faiss"] if pcoreset.backends.get("faiss").unavailable() is None else [])


@pytest.mark.parametrize("backend", MAG_BACKENDS)
def test_issue_examples_of_large_float32_values(backend):
    x = np.array([[0, 0], [1.5e19, 1.5e19], [1.2e19, 0], [5, 5]], np.float32)
    picks, radii = pcoreset.kcenter_greedy(x, [0], 2, backend=backend, return_radii=True)
    np.testing.assert_array_equal(picks, [1, 2])
    np.testing.assert_array_equal(picks, pcoreset.kcenter_greedy(x.astype(np.float64), [0], 2, backend=backend))
    np.testing.assert_allclose(radii, greedy64(x.astype(np.float64), [0], 2)[1], rtol=1e-12)
    y = np.array([[0, 0], [1e20, 0]], np.float32)
    picks, radii = pcoreset.kcenter_greedy(y, None, 2, backend=backend, return_radii=True)
    np.testing.assert_array_equal(picks, greedy64(y.astype(np.float64), [], 2)[0])
    assert radii[1] == pytest.approx(float(np.float32(1e20)), rel=1e-12)


@pytest.mark.parametrize("backend", MAG_BACKENDS)
@pytest.mark.parametrize("scale", [1e19, 1e25, 3e38 / 4, 1e-13, 1e-20, 1e-30, 1e-40])
@pytest.mark.parametrize("with_centers", [False, True])
def test_float32_extreme_magnitudes_give_the_float64_answer(backend, scale, with_centers):
    rng = np.random.default_rng(0)
    base = rng.standard_normal((150, 4))
    base[140:] = base[:10]  # exact duplicates: ties
    x = (base * scale).astype(np.float32)
    x64 = x.astype(np.float64)
    ctr = (rng.standard_normal((3, 4)) * scale).astype(np.float32) if with_centers else None
    lab = [] if with_centers else [5]
    picks, radii = pcoreset.kcenter_greedy(x, lab, 40, centers=ctr, backend=backend, return_radii=True)
    want, want_r = greedy64(x64, lab, 40, None if ctr is None else ctr.astype(np.float64))
    np.testing.assert_array_equal(picks, want)
    np.testing.assert_allclose(radii, want_r, rtol=1e-12)
    if backend == "torch":  # torch tensors (the result comes back as one) and bfloat16
        got = pcoreset.kcenter_greedy(torch.from_numpy(x), lab, 40, centers=ctr, backend=backend)
        np.testing.assert_array_equal(got.numpy(), want)
        if not with_centers and 1e-30 < scale < 1e30:
            xb = torch.from_numpy(x).to(torch.bfloat16)
            wantb = greedy64(xb.double().numpy(), lab, 40)[0]
            np.testing.assert_array_equal(pcoreset.kcenter_greedy(xb, lab, 40, backend=backend).numpy(), wantb)


@pytest.mark.parametrize("backend", MAG_BACKENDS)
@pytest.mark.parametrize("scale", [1e160, 1e300, 1e-150, 1e-300])
def test_float64_extreme_magnitudes_are_scaled_exactly(backend, scale):
    rng = np.random.default_rng(1)
    base = rng.standard_normal((120, 3))
    x = base * scale
    k = -int(np.round(np.log2(scale)))
    picks, radii = pcoreset.kcenter_greedy(x, [2], 30, backend=backend, return_radii=True)
    want, want_r = greedy64(np.ldexp(x, k), [2], 30)  # exact power-of-two scaling
    np.testing.assert_array_equal(picks, want)
    np.testing.assert_allclose(radii, np.ldexp(want_r, -k), rtol=1e-12)
    if backend == "torch":
        got, got_r = pcoreset.kcenter_greedy(torch.from_numpy(x), [2], 30, backend=backend, return_radii=True)
        np.testing.assert_array_equal(got.numpy(), want)
        np.testing.assert_allclose(got_r.numpy(), np.ldexp(want_r, -k), rtol=1e-12)


def test_magnitudes_float64_cannot_square_are_refused_naming_the_safe_one():
    x = np.array([[0.0, 0.0], [1e300, 0.0], [1e-300, 1.0]])
    with pytest.raises(pcoreset.InvalidInputError, match=r"largest safe magnitude is 1\.\d+e\+153"):
        pcoreset.kcenter_greedy(x, [0], 2)
    with pytest.raises(pcoreset.InvalidInputError, match="largest safe magnitude"):
        pcoreset.kcenter_greedy(np.zeros((3, 2), np.float32), [0], 2, centers=np.array([[1e300, 0], [1e-300, 0]]))


def test_ordinary_magnitudes_keep_their_dtype(monkeypatch):
    """Only data that needs it pays for the float64 copy."""
    import sys

    select_mod = sys.modules["pcoreset.select"]

    seen = []
    real = select_mod._run

    def spy(problem, backend, return_radii):
        seen.append(problem.dtype)
        return real(problem, backend, return_radii)
    monkeypatch.setattr(select_mod, "_run", spy)
    x = np.random.default_rng(0).standard_normal((50, 3)).astype(np.float32)
    pcoreset.kcenter_greedy(x, [0], 5)
    pcoreset.kcenter_greedy(x * 1e15, [0], 5)
    pcoreset.kcenter_greedy(x * 1e19, [0], 5)
    assert seen == ["float32", "float32", "float64"]


@pytest.mark.parametrize("how", ["extension", "extension-baseline", "table"])
def test_float16_checks_read_every_bit_pattern_as_numpy_does(how, monkeypatch):
    # float16 pools are checked through the extension's conversion (vcvtph2ps
    # where the processor has it, a bit conversion in the baseline build) or,
    # without the extension, a table of all bit patterns (NumPy's cast is slow
    # on the subnormals that softmax rows are full of): the same float32
    # values as astype, NaN and inf where astype has them
    import pcoreset._problem as problem_mod
    from pcoreset._problem import _float16_as_float32, check_values

    if how == "table":
        monkeypatch.delattr(pcoreset._C, "half_to_float")
    elif how == "extension-baseline":
        monkeypatch.setenv("PCORESET_SIMD", "baseline")
    bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    want = bits.view(np.float16).astype(np.float32)
    # shapes whose sizes are not multiples of 8 (the vector loop's tail), and
    # a reused buffer larger than the chunk
    for shape, buf in (((256, 256), None), ((5, 13), None), ((3, 7), np.full(100, 7.0, np.float32))):
        sel = bits[:shape[0] * shape[1]] if shape != (256, 256) else bits
        if shape == (3, 7):
            sel = bits[0x7BF0:0x7BF0 + 21]  # the largest finite halves, inf and the first NaNs
        got = _float16_as_float32(sel.view(np.float16).reshape(shape), buf).ravel()
        ref = sel.view(np.float16).astype(np.float32)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
        ok = ~np.isnan(ref)
        np.testing.assert_array_equal(got[ok].view(np.uint32), ref[ok].view(np.uint32))
    assert np.isinf(want).sum() == 2
    if how != "table":  # the output is written in place, never into a converted copy
        for out in (np.zeros(16), np.zeros(32, np.float32)[::2]):
            with pytest.raises(TypeError):
                pcoreset._C.half_to_float(bits[:16], out)
    # a pool checked in several chunks (the buffer reused, the last chunk
    # shorter): a bad value in the last chunk is named by its row
    monkeypatch.setattr(problem_mod, "_HOST_CHECK_CHUNK_BYTES", 4 * 400 * 64)
    # a pool of subnormal-heavy softmax rows passes; a bad value is named by row
    z = np.random.default_rng(0).normal(0, 3.0, size=(300, 400))
    p = np.exp(z - z.max(1, keepdims=True))
    x = (p / p.sum(1, keepdims=True)).astype(np.float16)
    assert (np.abs(x[x != 0]) < np.finfo(np.float16).tiny).any()  # subnormals present
    check_values(x, "float16", True)
    for row in (123, 299):
        for bad, why in ((np.inf, f"NaN or inf value in row {row}"), (np.nan, f"NaN or inf value in row {row}"),
                         (-0.5, f"row {row} is not a probability vector")):
            y = x.copy()
            y[row, 7] = bad
            with pytest.raises(pcoreset.InvalidInputError, match=why):
                check_values(y, "float16", True)


@needs_torch
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_radii_are_correctly_rounded_square_roots(kind):
    """Every radius is the correctly rounded square root of its squared
    radius, whatever the pool's kind: torch's float64 CPU sqrt was one unit
    in the last place off on one machine (the first value below), so a torch
    pool's radii and Selector.radius (math.sqrt) disagreed."""
    import math

    from pcoreset._problem import make_problem, radii_to_kind

    rng = np.random.default_rng(0)
    d2 = np.concatenate([[0.15917834639549255, 0.0, 1e-300, 4.0], rng.random(4096), rng.random(64) * 1e30])
    pool = np.zeros((4, 3))
    problem = make_problem(torch.from_numpy(pool) if kind == "torch" else pool, None, 1, simplex=False,
                           from_logits=False, temperature=1.0, prune=True, num_threads=0, progress=None)
    for given in (d2, torch.from_numpy(d2)):
        got = radii_to_kind(given, problem)
        assert isinstance(got, torch.Tensor) == (kind == "torch")
        got = got.numpy() if kind == "torch" else got
        assert got.dtype == np.float64
        assert got.tolist() == [math.sqrt(v) for v in d2.tolist()]

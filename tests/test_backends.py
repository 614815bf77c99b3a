"""The backend protocol: every backend's state implements it, and a backend
added from outside the package (tests/numpy_backend.py, registered at run
time) serves select, Selector, estimate_memory and the start like the
built-in ones."""
from __future__ import annotations

import numpy as np
import pytest

import pcoreset
from pcoreset import _start, backends
from pcoreset._problem import make_problem
from pcoreset.backends.base import Backend, KCenterState

from conftest import clustered_pool
from numpy_backend import NumpyBackend
from reference import reference_kcenter


@pytest.fixture
def numpy_backend():
    b = backends.register(NumpyBackend())
    try:
        yield b
    finally:
        backends.unregister(b.name)


def _problem(x, labeled=None, budget=0):
    return make_problem(x, labeled, budget, simplex=True, from_logits=False, temperature=1.0, prune=True,
                        num_threads=0, progress=None)


@pytest.mark.parametrize("name", ["cpu", "torch", "faiss"])
def test_builtin_states_implement_the_protocol(name):
    backend = backends.get(name)
    if backend.unavailable():
        pytest.skip(backend.unavailable())
    state = backend.make_state(_problem(clustered_pool(50, 4)))
    assert isinstance(state, KCenterState)
    for method in ("seed_rows", "seed_rows_with_candidates", "seed_vectors", "seed_vectors_with_candidates",
                   "take", "exclude", "push_row", "push_center", "current_best", "run", "export_state",
                   "load_state", "min_dist2", "stats"):
        assert callable(getattr(state, method)), method
    assert state.num_centers == 0


def test_a_backend_must_declare_its_state_and_footprint():
    class Half(Backend):
        name = "half"

        def make_state(self, problem):
            return None

    with pytest.raises(TypeError, match="memory_parts"):
        Half()
    with pytest.raises(pcoreset.InvalidInputError, match="Backend"):
        backends.register(object())
    with pytest.raises(pcoreset.InvalidInputError, match="built in"):
        backends.unregister("cpu")


def test_registered_backend_runs_select(numpy_backend):
    assert "numpy-test" in backends.names()
    assert backends.names()[:4] == ["cuda", "cpu", "faiss", "torch"]  # auto tries the built-in ones first
    x = clustered_pool(300, 6, seed=3).astype(np.float64)
    for labeled in ([], [0, 7, 99]):
        picks, radii = pcoreset.select(x, labeled, 25, backend="numpy-test", return_radii=True)
        ref_picks, ref_radii = reference_kcenter(x, labeled, 25)
        np.testing.assert_array_equal(picks, ref_picks)
        np.testing.assert_allclose(radii, ref_radii, rtol=1e-12)
        np.testing.assert_array_equal(picks, pcoreset.select(x, labeled, 25, backend="cpu"))
    assert numpy_backend.last_stats["steps"] == 24  # the last pick is never pushed


def test_registered_backend_runs_the_certified_start(numpy_backend, monkeypatch):
    x = clustered_pool(2000, 8, seed=4).astype(np.float64)
    labeled = np.arange(0, 2000, 7)
    monkeypatch.setattr(_start, "_forced", "certified")
    picks = pcoreset.select(x, labeled, 20, backend="numpy-test")
    monkeypatch.setattr(_start, "_forced", "exact")
    np.testing.assert_array_equal(picks, pcoreset.select(x, labeled, 20, backend="numpy-test"))
    np.testing.assert_array_equal(picks, pcoreset.select(x, labeled, 20, backend="cpu"))


def test_registered_backend_runs_selector(numpy_backend):
    x = clustered_pool(400, 5, seed=5).astype(np.float64)
    sel = pcoreset.Selector(x, [1, 2], backend="numpy-test")
    assert sel.backend == "numpy-test"
    a = sel.next(10)
    np.testing.assert_array_equal(a, pcoreset.select(x, [1, 2], 10, backend="cpu"))
    sel.add_centers([50, 60])
    b = sel.next(5)
    labeled = np.concatenate([[1, 2], a, [50, 60]])
    np.testing.assert_array_equal(b, pcoreset.select(x, labeled, 5, backend="cpu"))
    sel.exclude(b[:2])
    saved = sel.state_dict()
    again = pcoreset.Selector.from_state_dict(x, saved, backend="numpy-test")
    picks, radii = sel.until(0.1, 30)
    picks2, radii2 = again.until(0.1, 30)
    np.testing.assert_array_equal(picks, picks2)
    np.testing.assert_array_equal(radii, radii2)
    assert sel.radius <= 0.1 or picks.size == 30


def test_registered_backend_declares_its_footprint(numpy_backend):
    est = pcoreset.estimate_memory(1000, 10, "float32", backend="numpy-test", budget=5)
    assert est == 1000 * 10 * 8 + 1000 * 17 + 5 * 10 * 8 + 5 * 16
    with pytest.raises(pcoreset.InvalidInputError, match="backend='nope'"):
        pcoreset.estimate_memory(10, 2, backend="nope")


def test_unregistered_backend_is_gone(numpy_backend):
    backends.unregister("numpy-test")
    with pytest.raises(pcoreset.InvalidInputError, match="numpy-test"):
        pcoreset.select(clustered_pool(20, 3), None, 2, backend="numpy-test")
    backends.register(numpy_backend)


# ---- labeled rows and the same rows as centers= vectors agree bit for bit


def _confident(n, c, seed):
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.0, (n, c))
    z[np.arange(n), rng.integers(0, c, n)] += rng.uniform(12.0, 20.0, n)  # near one-hot rows
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


def _duplicated(n, c, seed):
    base = clustered_pool(n // 4, c, seed=seed).astype(np.float64)
    pool = np.repeat(base, 4, axis=0)  # every row four times: exact ties everywhere
    return pool[np.random.default_rng(seed).permutation(pool.shape[0])]


@pytest.mark.parametrize("backend", ["cpu", "torch", "faiss"])
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("pool", ["confident", "duplicated"])
@pytest.mark.parametrize("method", ["exact", "certified"])
def test_labeled_rows_equal_the_same_rows_as_center_vectors(backend, dtype, pool, method, monkeypatch):
    if backends.get(backend).unavailable():
        pytest.skip(backends.get(backend).unavailable())
    x = (_confident(800, 12, 1) if pool == "confident" else _duplicated(800, 12, 2)).astype(dtype)
    labeled = np.sort(np.random.default_rng(3).choice(x.shape[0], 40, replace=False))
    rest = np.setdiff1d(np.arange(x.shape[0]), labeled)
    monkeypatch.setattr(_start, "_forced", method)
    picks, radii = pcoreset.select(x, labeled, 30, backend=backend, return_radii=True)
    picks_v, radii_v = pcoreset.select(x[rest], None, 30, centers=x[labeled], backend=backend, return_radii=True)
    np.testing.assert_array_equal(picks, rest[picks_v])
    assert radii.tobytes() == radii_v.tobytes()
    # and a Selector continuing from either start
    a = pcoreset.Selector(x, labeled, backend=backend)
    b = pcoreset.Selector(x[rest], None, centers=x[labeled], backend=backend)
    np.testing.assert_array_equal(a.next(10), rest[b.next(10)])
    assert a.radius == b.radius


def test_pack_key_orders_as_the_kernels_tie_rule():
    from pcoreset.backends.base import KEY_INDEX_LIMIT, pack_key, unpack_key

    assert pack_key(2.0, 5) > pack_key(1.0, 0)   # larger distance wins
    assert pack_key(1.0, 3) > pack_key(1.0, 4)   # equal distances: the lower row wins
    assert pack_key(0.0, 0) > 0                  # a zero distance is still a key
    for d2, row in ((0.0, 0), (1e-30, 7), (3.5, KEY_INDEX_LIMIT - 1)):
        g, back = unpack_key(pack_key(d2, row))
        assert g == row and back == np.float32(d2)


def test_mean_block_rows_is_the_kernels_block():
    """The first pick's pool mean: MEAN_BLOCK_ROWS-row blocks, each summed in
    row order from 0.0, block sums added in order. The cpu kernel's
    mean_vector must give exactly that (distributed selection rebuilds it),
    and this pool is one where another block size gives other bits."""
    from pcoreset.backends.base import MEAN_BLOCK_ROWS

    rng = np.random.default_rng(0)
    # float64 values over 16 decades: every partial sum rounds
    x = rng.random((3 * MEAN_BLOCK_ROWS + 123, 5)) * 10.0 ** rng.uniform(-8, 8, (3 * MEAN_BLOCK_ROWS + 123, 5))

    def blocked_mean(block):
        total = np.zeros(5)
        for s in range(0, x.shape[0], block):
            total = total + np.add.accumulate(np.vstack([np.zeros((1, 5)), x[s:s + block]]))[-1]
        return total / x.shape[0]

    problem = make_problem(x, None, 0, simplex=False, from_logits=False, temperature=1.0, prune=True,
                           num_threads=0, progress=None)
    kernel = backends.get("cpu").make_state(problem).mean_vector()
    assert np.asarray(kernel).tobytes() == blocked_mean(MEAN_BLOCK_ROWS).tobytes()
    assert any(blocked_mean(b).tobytes() != blocked_mean(MEAN_BLOCK_ROWS).tobytes() for b in (1024, 2048, 8192))

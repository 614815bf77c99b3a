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

"""backend="faiss" and the FAISS labeled start (needs faiss; skipped cleanly without it)."""
import numpy as np
import pytest
import torch

import pcoreset
from pcoreset import _start, backends
from pcoreset._problem import make_problem
from pcoreset.errors import BackendUnavailableError

from conftest import clustered_pool
from reference import as_float64_rows, check_greedy_valid, reference_kcenter

faiss = pytest.importorskip("faiss")
pytestmark = pytest.mark.faiss


@pytest.mark.parametrize("labeled", [None, [3, 77, 150]])
def test_matches_float64_reference(labeled):
    x = clustered_pool(300, 12, seed=5)
    ref, ref_r = reference_kcenter(x.astype(np.float64), labeled or [], 25)
    idx, radii = pcoreset.select(x, labeled, 25, backend="faiss", return_radii=True)
    np.testing.assert_array_equal(idx, ref)
    np.testing.assert_allclose(radii, ref_r, rtol=1e-5)


@pytest.mark.parametrize("dtype", ["float16", "float64", "bfloat16", "logits"])
def test_same_picks_as_cpu_backend(dtype):
    x = clustered_pool(3000, 40, seed=6)
    kw = {}
    if dtype == "bfloat16":
        x = torch.from_numpy(x).bfloat16()
    elif dtype == "logits":
        x, kw = np.log(x + 1e-4).astype(np.float16), {"from_logits": True, "temperature": 2.0}
    else:
        x = x.astype(dtype)
    lab = np.arange(0, 3000, 50)
    for labeled in (None, lab):
        a = pcoreset.select(x, labeled, 60, backend="cpu", **kw)
        b = pcoreset.select(x, labeled, 60, backend="faiss", **kw)
        assert type(a) is type(b)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_ties_go_to_lowest_index():
    # rows 0..3 are copies, 4..7 are copies: every distance ties
    x = np.repeat(np.eye(2, dtype=np.float32), 4, axis=0)
    idx = pcoreset.select(x, None, 4, backend="faiss")
    ref, _ = reference_kcenter(x.astype(np.float64), [], 4)
    np.testing.assert_array_equal(idx, ref)
    assert idx[0] == 0 and idx[1] == 4 and idx[2] == 1


def test_greedy_valid_with_large_labeled_start(monkeypatch):
    # force the candidate path (FAISS k-NN + exact refine) on a small input
    monkeypatch.setattr(_start, "_forced", "certified")
    x = clustered_pool(2000, 20, seed=7)
    lab = np.arange(0, 2000, 4)
    a = pcoreset.select(x, lab, 40, backend="faiss")
    b = pcoreset.select(x, lab, 40, backend="cpu")
    np.testing.assert_array_equal(a, b)
    check_greedy_valid(as_float64_rows(x), lab, a)


def test_certified_candidates_contain_the_nearest_labeled_row():
    x = clustered_pool(4000, 16, seed=8)
    lab = np.arange(1, 4000, 3)
    p = make_problem(x, lab, 0, simplex=True, from_logits=False, temperature=1.0, prune=True,
                     num_threads=0, progress=None)
    cand = _start.nearest_candidates(p)
    x64 = x.astype(np.float64)
    c64 = x64[lab]
    d = (x64 ** 2).sum(1)[:, None] + (c64 ** 2).sum(1)[None, :] - 2.0 * x64 @ c64.T
    nearest_d = d.min(1)
    cand_d = np.take_along_axis(d, cand, 1).min(1)
    np.testing.assert_allclose(cand_d, nearest_d, rtol=1e-5, atol=1e-9)
    assert _start.start_method(4000, 1334, 16) == "exact"
    assert _start.start_method(10**6, 10**5, 100) == "certified"


def test_progress_and_interrupt():
    x = clustered_pool(2000, 10, seed=9)
    seen = []
    pcoreset.select(x, None, 30, backend="faiss", progress=seen.append)
    assert seen[-1] == 30 and seen == sorted(seen)

    def stop(done):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pcoreset.select(x, None, 30, backend="faiss", progress=stop)


def test_reasons_when_unavailable(monkeypatch):
    from pcoreset.backends import faiss_backend

    b = backends.get("faiss")
    monkeypatch.setattr(faiss_backend, "faiss", None)
    with pytest.raises(BackendUnavailableError, match="faiss is not installed"):
        pcoreset.select(np.eye(3, dtype=np.float32), None, 1, backend="faiss")
    monkeypatch.undo()
    p = make_problem(np.eye(3, dtype=np.float32), None, 1, simplex=True, from_logits=False,
                     temperature=1.0, prune=True, num_threads=0, progress=None)
    p.device = "cuda:0"
    if faiss_backend._gpu_count() == 0:
        assert "faiss-gpu" in b.rejects(p)
    p.device = "mps"
    assert "mps" in b.rejects(p)
    assert pcoreset.info()["faiss"] == faiss.__version__

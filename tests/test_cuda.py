"""The CUDA backend against the CPU kernel and the float64 oracle.

GPU tests carry the `cuda` marker and skip through the `cuda_device` fixture
when the CUDA module or a device is missing; nothing here queries CUDA at
import time."""
import numpy as np
import pytest
import torch

import pcoreset
from pcoreset.errors import BackendUnavailableError

from conftest import clustered_pool
from reference import as_float64_rows, check_greedy_valid, reference_kcenter

TORCH_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
                "float64": torch.float64}


@pytest.fixture
def cuda_device():
    from pcoreset.backends import cuda as cuda_backend

    reason = cuda_backend.CudaBackend().unavailable()
    if reason:
        pytest.skip(reason)
    return torch.device("cuda", torch.cuda.current_device())


def simplex_pool(n, c, seed, dtype="float32", clustered=False):
    """Rows in the simplex, stored in `dtype`, renormalised after rounding
    so that the stored rows pass the simplex check."""
    if clustered:
        p = clustered_pool(n, c, seed=seed, dtype=np.float64)
    else:
        rng = np.random.default_rng(seed)
        p = rng.random((n, c)) + 1e-3
        p /= p.sum(1, keepdims=True)
    return torch.from_numpy(p).to(TORCH_DTYPES[dtype])


def select_both(x, labeled, budget, **kw):
    """(cuda picks, cuda radii, cpu picks, cpu radii) as NumPy arrays."""
    pc, rc = pcoreset.select(x.cuda(), labeled, budget, backend="cuda", return_radii=True, **kw)
    assert pc.is_cuda and pc.dtype == torch.int64 and rc.dtype == torch.float64
    pp, rp = pcoreset.select(x, labeled, budget, backend="cpu", return_radii=True, **kw)
    as_np = lambda t: t.cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
    return as_np(pc), as_np(rc), as_np(pp), as_np(rp)


def test_cpu_input_is_rejected_with_a_reason():
    x = simplex_pool(20, 3, seed=0, dtype="float64")
    with pytest.raises(BackendUnavailableError, match="cuda"):
        pcoreset.select(x, [0], 2, backend="cuda")


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("c", [1, 7, 33, 300])
@pytest.mark.parametrize("prune", [True, False])
@pytest.mark.parametrize("n_labeled", [0, 11])
def test_identical_to_cpu_kernel(cuda_device, dtype, c, prune, n_labeled):
    n = 1037  # not a multiple of any block or warp size
    x = simplex_pool(n, c, seed=c, dtype=dtype, clustered=c > 1)
    labeled = np.arange(0, 3 * n_labeled, 3)
    budget = min(90, n - n_labeled)
    pc, rc, pp, rp = select_both(x, labeled, budget, prune=prune)
    np.testing.assert_array_equal(pc, pp)
    np.testing.assert_array_equal(rc, rp)


@pytest.mark.cuda
@pytest.mark.parametrize("c", [1024, 4096])
def test_wide_rows(cuda_device, c):
    x = simplex_pool(300, c, seed=5, dtype="float32", clustered=True)
    pc, _, pp, _ = select_both(x, [1, 2], 40)
    np.testing.assert_array_equal(pc, pp)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("labeled", [[], [3, 50, 120]])
def test_matches_float64_oracle(cuda_device, dtype, labeled):
    x = simplex_pool(257, 10, seed=7, dtype=dtype)
    picks = pcoreset.select(x.to(cuda_device), labeled, 40, backend="cuda").cpu().numpy()
    ref, _ = reference_kcenter(as_float64_rows(x), labeled, 40)
    np.testing.assert_array_equal(picks, ref)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_from_logits_is_greedy_valid(cuda_device, dtype, temperature):
    rng = np.random.default_rng(3)
    logits = torch.from_numpy(rng.normal(0, 3, size=(801, 37))).to(TORCH_DTYPES[dtype])
    labeled = [0, 5, 9]
    picks = pcoreset.select(logits.to(cuda_device), labeled, 60, from_logits=True, temperature=temperature,
                            backend="cuda").cpu().numpy()
    rtol = 1e-9 if dtype == "float64" else 1e-5
    x64 = as_float64_rows(logits.double(), from_logits=True, temperature=temperature)
    check_greedy_valid(x64, labeled, picks, rtol=rtol)
    cpu = pcoreset.select(logits, labeled, 60, from_logits=True, temperature=temperature, backend="cpu")
    # CUDA's expf and the C library's may differ in the last bit: equal picks
    # except where two candidates are within that rounding.
    assert np.mean(picks == np.asarray(cpu)) > 0.9


@pytest.mark.cuda
def test_budget_zero_and_full_pool(cuda_device):
    x = simplex_pool(130, 6, seed=1).to(cuda_device)
    assert pcoreset.select(x, [4], 0, backend="cuda").numel() == 0
    picks = pcoreset.select(x, [4, 7], 128, backend="cuda").cpu().numpy()
    assert sorted(picks.tolist()) == sorted(set(range(130)) - {4, 7})
    picks = pcoreset.select(x, None, 130, backend="cuda").cpu().numpy()
    assert sorted(picks.tolist()) == list(range(130))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_graphs_pruning_and_candidates_do_not_change_picks(cuda_device, dtype, monkeypatch):
    from pcoreset.backends import cuda as cuda_backend

    x = simplex_pool(3001, 20, seed=9, dtype=dtype, clustered=True).to(cuda_device)
    labeled = np.arange(0, 3001, 97)
    base = pcoreset.select(x, labeled, 200, backend="cuda").cpu()
    assert torch.equal(base, pcoreset.select(x, labeled, 200, backend="cuda", prune=False).cpu())
    monkeypatch.setenv("PCORESET_CUDA_GRAPHS", "0")
    assert torch.equal(base, pcoreset.select(x, labeled, 200, backend="cuda").cpu())
    monkeypatch.setattr(cuda_backend, "EXACT_MAX_WORK", 0)
    assert torch.equal(base, pcoreset.select(x, labeled, 200, backend="cuda").cpu())


@pytest.mark.cuda
def test_runs_on_the_callers_stream(cuda_device):
    x = simplex_pool(2000, 16, seed=2, clustered=True).to(cuda_device)
    expect = pcoreset.select(x, [0], 100, backend="cuda").cpu()
    side = torch.cuda.Stream(cuda_device)
    with torch.cuda.stream(side):
        got = pcoreset.select(x, [0], 100, backend="cuda")
    torch.cuda.current_stream(cuda_device).wait_stream(side)
    assert torch.equal(expect, got.cpu())


@pytest.mark.cuda
def test_pruning_skips_rows_on_clustered_pools(cuda_device):
    from pcoreset.backends import get

    x = simplex_pool(20000, 50, seed=4, clustered=True).to(cuda_device)
    pcoreset.select(x, np.arange(0, 20000, 100), 100, backend="cuda")
    stats = get("cuda").last_stats
    assert 0 < stats["rows_computed"] < stats["rows_visited"]


@pytest.mark.cuda
def test_auto_picks_cuda_for_cuda_tensors(cuda_device):
    x = simplex_pool(100, 5, seed=0).to(cuda_device)
    out = pcoreset.select(x, [1], 5)
    assert out.is_cuda

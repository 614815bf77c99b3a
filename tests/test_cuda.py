"""The CUDA backend against the CPU kernel and the float64 oracle.

Two kinds of tests:

- `cuda`-marked tests run the CUDA module on a device; they skip through the
  `cuda_device` fixture when the module or a device is missing (nothing here
  queries CUDA at import time).
- Emulation tests run everywhere with a C++ compiler: they build the real
  kernels, state and binding (csrc/cuda, csrc/bind_cuda.cpp) against the
  host emulation in csrc/cuda/emu (lanes as fibers, warp collectives and
  grid barriers as fiber barriers) and compare every result, bit for bit,
  with the CPU kernel. They check the control flow and the summation order
  of the device code, not its speed, its memory model or the device's expf.
"""
import hashlib
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

import pcoreset
from pcoreset.errors import BackendUnavailableError

from conftest import clustered_pool
from reference import as_float64_rows, check_greedy_valid, reference_kcenter

ROOT = Path(__file__).resolve().parents[1]
TORCH_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32,
                "float64": torch.float64}


@pytest.fixture
def cuda_device():
    from pcoreset.backends import cuda as cuda_backend

    reason = cuda_backend.CudaBackend().unavailable()
    if reason:
        if os.environ.get("PCORESET_REQUIRE_CUDA") == "1":  # the device check: a skip would hide the failure
            pytest.fail(f"PCORESET_REQUIRE_CUDA=1 but the cuda backend is unavailable: {reason}")
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


def as_np(t):
    return t.cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)


def select_both(x, labeled, budget, **kw):
    """(cuda picks, cuda radii, cpu picks, cpu radii) as NumPy arrays."""
    pc, rc = pcoreset.select(x.cuda(), labeled, budget, backend="cuda", return_radii=True, **kw)
    assert pc.is_cuda and pc.dtype == torch.int64 and rc.dtype == torch.float64
    pp, rp = pcoreset.select(x, labeled, budget, backend="cpu", return_radii=True, **kw)
    return as_np(pc), as_np(rc), as_np(pp), as_np(rp)


def cpu_problem(x, labeled=(), budget=0, **kw):
    from pcoreset._problem import make_problem

    return make_problem(x, labeled, budget, simplex=False, from_logits=kw.get("from_logits", False),
                        temperature=kw.get("temperature", 1.0), prune=kw.get("prune", True), num_threads=0,
                        progress=None)


@pytest.fixture
def steps_env(monkeypatch):
    """Sets PCORESET_CUDA_STEPS for the test."""
    def use(steps="auto"):
        monkeypatch.setenv("PCORESET_CUDA_STEPS", steps)
    return use


def test_cpu_input_is_rejected_with_a_reason():
    x = simplex_pool(20, 3, seed=0, dtype="float64")
    with pytest.raises(BackendUnavailableError, match="cuda"):
        pcoreset.select(x, [0], 2, backend="cuda")


def test_bad_step_mode_is_named(monkeypatch):
    from pcoreset.backends import cuda as cuda_backend

    monkeypatch.setenv("PCORESET_CUDA_STEPS", "warp-speed")
    with pytest.raises(ValueError, match="PCORESET_CUDA_STEPS='warp-speed'"):
        cuda_backend._options()


# --------------------------------------------------------------------------- on a device


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
@pytest.mark.parametrize("steps", ["persistent", "graph", "launches"])
@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_step_modes_identical_and_reported(cuda_device, steps_env, steps, dtype):
    from pcoreset.backends import get

    x = simplex_pool(3001, 20, seed=9, dtype=dtype, clustered=True)
    labeled = np.arange(0, 3001, 97)
    steps_env(steps)
    pc, rc, pp, rp = select_both(x, labeled, 200)
    np.testing.assert_array_equal(pc, pp)
    np.testing.assert_array_equal(rc, rp)
    st = get("cuda").last_stats
    assert st["pass"] == "prefetch"
    assert st["step_mode"] == steps, st
    assert st["cuda_graph"] == (steps == "graph"), st  # budget 200 >= 2 x 32 steps: a graph when asked
    assert st["steps"] == 199 and st["rows_visited"] == 199 * 3001


@pytest.mark.cuda
@pytest.mark.parametrize("c", [1024, 4096, 9000])
def test_wide_rows(cuda_device, c):
    # 9000 float32 values do not fit the shared-memory center: graph steps
    # with the center in global memory, and the stats say so
    from pcoreset.backends import get

    x = simplex_pool(300, c, seed=5, dtype="float32", clustered=True)
    pc, rc, pp, rp = select_both(x, [1, 2], 40)
    np.testing.assert_array_equal(pc, pp)
    np.testing.assert_array_equal(rc, rp)
    st = get("cuda").last_stats
    wide = c * 4 > 32 * 1024
    assert st["step_mode"] == ("graph" if wide else "persistent"), st
    assert ("shared memory" in st["note"]) == wide, st


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("labeled", [[], [3, 50, 120]])
def test_matches_float64_oracle(cuda_device, dtype, labeled):
    x = simplex_pool(257, 10, seed=7, dtype=dtype)
    picks = pcoreset.select(x.to(cuda_device), labeled, 40, backend="cuda").cpu().numpy()
    ref, _ = reference_kcenter(as_float64_rows(x), labeled, 40)
    np.testing.assert_array_equal(picks, ref)


def first_divergence(a, b):
    diff = np.nonzero(np.asarray(a) != np.asarray(b))[0]
    return int(diff[0]) if diff.size else len(a)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_from_logits_same_picks_until_a_near_tie_then_greedy_valid(cuda_device, dtype, temperature):
    """CUDA's expf and the C library's may differ in the last bit, so the two
    kernels may part at a near-tie: equal picks up to the first difference,
    which must be a near-tie in float64, and greedy-valid picks throughout."""
    rng = np.random.default_rng(3)
    logits = torch.from_numpy(rng.normal(0, 3, size=(801, 37))).to(TORCH_DTYPES[dtype])
    labeled = [0, 5, 9]
    picks = pcoreset.select(logits.to(cuda_device), labeled, 60, from_logits=True, temperature=temperature,
                            backend="cuda").cpu().numpy()
    rtol = 1e-9 if dtype == "float64" else 1e-5
    x64 = as_float64_rows(logits.double(), from_logits=True, temperature=temperature)
    check_greedy_valid(x64, labeled, picks, rtol=rtol)
    cpu = np.asarray(pcoreset.select(logits, labeled, 60, from_logits=True, temperature=temperature,
                                     backend="cpu"))
    k = first_divergence(picks, cpu)
    np.testing.assert_array_equal(picks[:k], cpu[:k])
    if k < len(picks):  # the two candidates of step k were within rounding of each other
        centers = list(labeled) + list(picks[:k])
        d = lambda r: min(np.sum((x64[r] - x64[c]) ** 2) for c in centers)
        a, b = d(picks[k]), d(cpu[k])
        assert abs(np.sqrt(a) - np.sqrt(b)) <= 4 * rtol * max(np.sqrt(a), np.sqrt(b)), (k, a, b)


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
    from pcoreset import _start

    x = simplex_pool(3001, 20, seed=9, dtype=dtype, clustered=True).to(cuda_device)
    labeled = np.arange(0, 3001, 97)
    base = pcoreset.select(x, labeled, 200, backend="cuda").cpu()
    assert torch.equal(base, pcoreset.select(x, labeled, 200, backend="cuda", prune=False).cpu())
    monkeypatch.setenv("PCORESET_CUDA_GRAPHS", "0")
    assert torch.equal(base, pcoreset.select(x, labeled, 200, backend="cuda").cpu())
    with _start.force("certified"):
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
@pytest.mark.parametrize("labeled", [[0], []])
def test_waits_for_writes_queued_on_the_callers_stream(cuda_device, labeled):
    """The pool is written on a side stream behind a long sleep, and the
    selection starts at once on that stream: the state must wait for the
    write (stream join), or it reads the decoy that was there before."""
    from pcoreset import _start
    from pcoreset.backends.cuda import CudaBackend

    real = simplex_pool(4000, 16, seed=11, clustered=True)
    decoy = simplex_pool(4000, 16, seed=12, clustered=True)
    expect = np.asarray(pcoreset.select(real, labeled, 50, backend="cpu"))
    assert not np.array_equal(expect, np.asarray(pcoreset.select(decoy, labeled, 50, backend="cpu")))
    x = decoy.to(cuda_device)
    src = real.to(cuda_device)
    problem = cpu_problem(x, labeled, 50)  # validated on the decoy, before the write
    torch.cuda.synchronize(cuda_device)
    side = torch.cuda.Stream(cuda_device)
    with torch.cuda.stream(side):
        torch.cuda._sleep(500_000_000)  # a few hundred ms of GPU time on `side`
        x.copy_(src)                    # queued behind the sleep
        picks, _ = CudaBackend().run(problem, _start.start_state)
    torch.cuda.synchronize(cuda_device)
    np.testing.assert_array_equal(as_np(picks), expect)


@pytest.mark.cuda
@pytest.mark.parametrize("c", [8, 40])
def test_pool_where_each_warp_loops_over_several_groups(cuda_device, c):
    # 132 SMs x 4 blocks x 8 warps x 32 rows = 135k rows per sweep: 300k rows
    # make every warp of the pass (and of the first kernel's 8-block grid) loop.
    x = simplex_pool(300_000, c, seed=21, dtype="float16", clustered=True)
    pc, rc, pp, rp = select_both(x, np.arange(0, 300_000, 1000), 60)
    np.testing.assert_array_equal(pc, pp)
    np.testing.assert_array_equal(rc, rp)


@pytest.mark.cuda
def test_more_centers_than_warps_in_the_dcc_loop(cuda_device):
    # c = 40 > 32: four centers per warp in the center-to-center stage, so a
    # sweep of 132 SMs x 4 blocks x 8 warps covers 16,896 centers; 25,000
    # labeled rows make every warp loop.
    x = simplex_pool(50_000, 40, seed=22, dtype="float32", clustered=True)
    labeled = np.arange(0, 50_000, 2)
    pc, rc, pp, rp = select_both(x, labeled, 150)
    np.testing.assert_array_equal(pc, pp)
    np.testing.assert_array_equal(rc, rp)


@pytest.mark.cuda
@pytest.mark.parametrize("prune", [True, False])
def test_pool_of_more_than_2_31_values(cuda_device, prune):
    """N * C > 2^31: identical uniform rows everywhere except a few distinct
    rows at the very end, whose offsets need 64-bit arithmetic. Expected
    picks: the float64 greedy order of the distinct rows, then the lowest
    remaining indices (all at distance 0)."""
    c, k = 1024, 6
    n = (1 << 31) // c + 4096
    x = torch.full((n, c), 1.0 / c, dtype=torch.float16, device=cuda_device)
    rng = np.random.default_rng(23)
    special = rng.dirichlet(np.full(c, 0.05), size=k)
    rows = np.arange(n - k, n)
    x[torch.from_numpy(rows).to(cuda_device)] = torch.from_numpy(special).to(cuda_device, torch.float16)
    small = np.vstack([x[0:1].double().cpu().numpy(), x[n - k:].double().cpu().numpy()])
    ref, ref_r = reference_kcenter(small, [0], k)
    picks, radii = pcoreset.select(x, [0], k + 3, backend="cuda", prune=prune, return_radii=True)
    picks, radii = as_np(picks), as_np(radii)
    np.testing.assert_array_equal(picks[:k], rows[ref - 1])
    np.testing.assert_allclose(radii[:k], ref_r, rtol=1e-3)
    np.testing.assert_array_equal(picks[k:], [1, 2, 3])
    del x
    torch.cuda.empty_cache()


@pytest.mark.cuda
def test_pruning_skips_rows_on_clustered_pools(cuda_device):
    from pcoreset.backends import get

    x = simplex_pool(20000, 50, seed=4, clustered=True).to(cuda_device)
    pcoreset.select(x, np.arange(0, 20000, 100), 100, backend="cuda")
    stats = get("cuda").last_stats
    assert 0 < stats["rows_computed"] < stats["rows_visited"]


@pytest.mark.cuda
def test_centers_vectors_identical_to_cpu(cuda_device):
    x = simplex_pool(2000, 24, seed=30, clustered=True)
    vecs = simplex_pool(40, 24, seed=31, dtype="float64", clustered=True).numpy()
    pc, rc, pp, rp = select_both(x, [5, 9], 80, centers=vecs)
    np.testing.assert_array_equal(pc, pp)
    np.testing.assert_array_equal(rc, rp)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_state_interface_identical_to_cpu(cuda_device, dtype):
    from pcoreset.backends import cpu as cpu_backend
    from pcoreset.backends.cuda import CudaState

    x = simplex_pool(1500, 40, seed=32, dtype=dtype, clustered=True)
    gpu = CudaState(cpu_problem(x.to(cuda_device)))
    host = cpu_backend.make_state(cpu_problem(x))
    compare_state_scenario(gpu, host, n=1500, c=40, seed=33)


@pytest.mark.cuda
def test_auto_picks_cuda_for_cuda_tensors(cuda_device):
    x = simplex_pool(100, 5, seed=0).to(cuda_device)
    out = pcoreset.select(x, [1], 5)
    assert out.is_cuda


@pytest.mark.cuda
@pytest.mark.parametrize("stop_call", [1, 3])
def test_selector_interrupted_on_the_device_keeps_the_finished_steps(cuda_device, stop_call):
    """A progress callback that raises inside Selector.next on the device:
    the Selector reports the steps that finished (the device state holds
    exactly those), its state_dict loads, and continuing gives the sequence
    of one uninterrupted call."""
    x = simplex_pool(100_000, 24, seed=34, dtype="float32", clustered=True).to(cuda_device)
    want = pcoreset.select(x, [3, 5], 2000, backend="cuda").cpu()
    calls = []

    def progress(done):
        calls.append(done)
        if len(calls) == stop_call:
            raise KeyboardInterrupt

    sel = pcoreset.Selector(x, [3, 5], backend="cuda", progress=progress)
    with pytest.raises(KeyboardInterrupt):
        sel.next(2000)
    t = len(sel.picks)
    assert 0 < t < 2000, t
    assert torch.equal(torch.as_tensor(sel.picks).cpu(), want[:t])
    back = pcoreset.Selector.from_state_dict(x, sel.state_dict(), backend="cuda")
    calls.clear()
    stop_call = -1  # no more stops
    rest = torch.as_tensor(sel.next(2000 - t)).cpu()
    assert torch.equal(torch.cat([want[:t], rest]), want)
    assert torch.equal(torch.as_tensor(back.next(2000 - t)).cpu(), rest)


# --------------------------------------------------------------------------- a scenario for both


def compare_state_scenario(dev, host, n, c, seed, labeled_every=37):
    """Drives a device state and the CPU state through the same calls and
    asserts every result equal, bit for bit: the start (rows, vectors,
    candidates), runs that continue each other, push_row / push_center,
    exclusions, queries, export/load."""
    rng = np.random.default_rng(seed)
    eq = np.testing.assert_array_equal
    labeled = np.arange(3, n, labeled_every)
    half = labeled.size // 2
    dev.seed_rows(labeled[:half])
    host.seed_rows(labeled[:half])
    cand = rng.integers(-1, labeled.size - half, size=(n, 3))
    dev.seed_rows_with_candidates(labeled[half:], cand)
    host.seed_rows_with_candidates(labeled[half:], cand)
    vecs = rng.dirichlet(np.ones(c), size=5)
    dev.seed_vectors(vecs)
    host.seed_vectors(vecs)
    vcand = rng.integers(-1, 5, size=(n, 2))
    dev.seed_vectors_with_candidates(vecs[::-1].copy(), vcand)
    host.seed_vectors_with_candidates(vecs[::-1].copy(), vcand)
    eq(dev.min_dist2(), host.min_dist2())
    assert dev.current_best() == host.current_best()
    p1, r1 = dev.run(20)
    q1, s1 = host.run(20)
    eq(p1, q1)
    eq(r1, s1)
    assert dev.push_row(int(p1[-1])) == host.push_row(int(q1[-1]))
    out = rng.choice(n, size=7, replace=False)
    dev.exclude(out)
    host.exclude(out)
    dev.take(int(out[0]))
    host.take(int(out[0]))
    p2, r2 = dev.run(40)
    q2, s2 = host.run(40)
    eq(p2, q2)
    eq(r2, s2)
    assert dev.push_row(int(p2[-1])) == host.push_row(int(q2[-1]))
    probe = rng.dirichlet(np.ones(c))
    assert dev.farthest_from(probe) == host.farthest_from(probe)
    assert dev.push_center(probe) == host.push_center(probe)
    eq(dev.mean_vector(), host.mean_vector())
    eq(dev.row_vector(11), host.row_vector(11))
    eq(dev.min_dist2(), host.min_dist2())
    assert dev.num_centers == host.num_centers
    saved = dev.export_state()
    for a, b in zip(saved, host.export_state()):
        eq(a, b)
    p3, r3 = dev.run(15)
    dev.load_state(*saved)
    p4, r4 = dev.run(15)  # the same continuation from the restored state
    eq(p3, p4)
    eq(r3, r4)
    q3, s3 = host.run(15)
    eq(p3, q3)
    eq(r3, s3)


# --------------------------------------------------------------------------- host emulation

EMU_SOURCES = ["csrc/cuda/kcenter_f16.cu", "csrc/cuda/kcenter_bf16.cu", "csrc/cuda/kcenter_f32.cu",
               "csrc/cuda/kcenter_f64.cu", "csrc/cuda/kcenter_cuda.cu", "csrc/cuda/emu/emu_cuda.cpp",
               "csrc/bind_cuda.cpp"]


def _emu_module_path():
    """Builds (once per source version) the real CUDA sources against the host
    emulation into a Python module; returns its path, or a reason to skip."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return None, f"the host emulation switches stacks in x86-64 assembly, this is {platform.machine()}"
    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    if cxx is None:
        return None, "no C++ compiler for the host emulation"
    try:
        import pybind11
    except ImportError:
        return None, "pybind11 is not installed"
    deps = sorted(set(EMU_SOURCES) | {str(p.relative_to(ROOT)) for d in ("csrc/cuda", "csrc/include")
                                      for p in (ROOT / d).rglob("*") if p.is_file()})
    h = hashlib.sha256()
    for d in deps:
        h.update(d.encode() + b"\0" + (ROOT / d).read_bytes())
    h.update(cxx.encode() + sys.version.encode())
    final = ROOT / "_build" / "cuda-emu" / h.hexdigest()[:16]
    so = final / ("_C_cuda" + sysconfig.get_config_var("EXT_SUFFIX"))
    if so.exists():
        return so, None
    final.mkdir(parents=True, exist_ok=True)
    # Objects in a directory of this process only (other test runs in the
    # same tree may build at the same time); the module appears atomically.
    out = Path(tempfile.mkdtemp(prefix="build-", dir=final))
    flags = ["-std=c++17", "-O1", "-fPIC", "-DPCS_CUDA_EMULATION", f"-I{ROOT / 'csrc/include'}",
             f"-I{ROOT / 'csrc/cuda'}", f"-I{ROOT / 'csrc/cuda/emu/include'}", f"-I{pybind11.get_include()}",
             f"-I{sysconfig.get_paths()['include']}"]

    def compile_one(src):
        obj = out / (Path(src).name + ".o")
        lang = ["-x", "c++"] if src.endswith(".cu") else []
        r = subprocess.run([cxx, *flags, *lang, "-c", str(ROOT / src), "-o", str(obj)], capture_output=True,
                           text=True)
        if r.returncode:
            raise RuntimeError(f"host emulation: {src} did not compile:\n{r.stderr[-4000:]}")
        return str(obj)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        objs = list(pool.map(compile_one, EMU_SOURCES))
    tmp = out / so.name
    r = subprocess.run([cxx, "-shared", *objs, "-o", str(tmp), "-lpthread"], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"host emulation: link failed:\n{r.stderr[-4000:]}")
    os.replace(tmp, so)
    shutil.rmtree(out, ignore_errors=True)
    return so, None


@pytest.fixture(scope="session")
def emu():
    so, reason = _emu_module_path()
    if so is None:
        pytest.skip(reason)
    spec = importlib.util.spec_from_file_location("_C_cuda", so)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class EmuState:
    """The emulated module's state over a NumPy pool (host memory stands in
    for device memory), with the CPU state's method signatures."""

    def __init__(self, emu, x, dtype, steps="auto", variant="prefetch", from_logits=False, temperature=1.0, prune=True):
        self.x = np.ascontiguousarray(x)
        self.s = emu.KCenterState(self.x.ctypes.data, dtype, x.shape[0], x.shape[1], from_logits, temperature,
                                  prune, 0, 0, steps, variant)

    def __getattr__(self, name):
        return getattr(self.s, name)


def host_pool(n, c, dtype, seed, clustered=True):
    """(array for the states, dtype name, array for the CPU state) in `dtype`
    (bfloat16 as its uint16 bits, as the CPU binding takes it)."""
    t = simplex_pool(n, c, seed, dtype=dtype, clustered=clustered)
    if dtype == "bfloat16":
        a = t.view(torch.int16).numpy().view(np.uint16)
    else:
        a = t.numpy()
    return a, dtype


def cpu_state(x, dtype, from_logits=False, temperature=1.0, prune=True):
    from pcoreset import _C

    return _C.KCenterState(x, dtype, from_logits, temperature, prune, 1)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("c", [5, 40, 300])
def test_emulated_kernel_identical_to_cpu(emu, dtype, c):
    """Seeded runs of the persistent kernel on shapes that take each path of
    pass v2: a row per thread (c <= 32), four rows per warp in one partial
    chunk (c = 40), full chunks with early exits (c = 300)."""
    x, dt = host_pool(500, c, dtype, seed=c)
    labeled = np.arange(0, 500, 23)
    for prune in (True, False):
        dev, host = EmuState(emu, x, dt, prune=prune), cpu_state(x, dt, prune=prune)
        dev.seed_rows(labeled)
        host.seed_rows(labeled)
        p, r = dev.run(30)
        q, s = host.run(30)
        np.testing.assert_array_equal(p, q)
        np.testing.assert_array_equal(r, s)
        st = dev.stats()
        assert st["step_mode"] == "persistent" and st["pass"] == "prefetch" and not st["cuda_graph"], st


@pytest.mark.parametrize("steps,variant", [("graph", "prefetch"), ("launches", "prefetch"), ("graph", "plain"),
                                           ("persistent", "plain"), ("persistent", "prefetch")])
def test_emulated_step_modes_identical_to_cpu(emu, steps, variant):
    """The three-kernel step (replayed from a captured graph, or launched one
    by one, with either pass) and the persistent kernel, from the pool mean
    (no labeled rows) over more steps than one graph holds; the persistent
    kernel here runs 4 blocks with grid barriers (1,100 rows)."""
    x, dt = host_pool(1100, 20, "float32", seed=3)
    dev, host = EmuState(emu, x, dt, steps=steps, variant=variant), cpu_state(x, dt)
    p, r = dev.run(70)
    q, s = host.run(70)
    np.testing.assert_array_equal(p, q)
    np.testing.assert_array_equal(r, s)
    assert np.isinf(r[0])
    st = dev.stats()
    assert st["step_mode"] == steps and st["cuda_graph"] == (steps == "graph") and st["pass"] == variant, st
    if steps == "persistent":
        assert st["grid_blocks"] == 4, st


def test_emulated_refused_cooperative_launch_falls_back_to_graph_steps(emu, monkeypatch):
    """A device that refuses the persistent kernel after its first segment
    of steps: the run goes on in graph steps from where it stopped, same
    picks, and stats say what happened."""
    x, dt = host_pool(600, 24, "float32", seed=12)
    dev, host = EmuState(emu, x, dt), cpu_state(x, dt)
    dev.seed_rows(np.array([2, 300]))
    host.seed_rows(np.array([2, 300]))
    monkeypatch.setenv("PCS_EMU_COOPERATIVE_LIMIT", "1")  # one more cooperative launch, then refusals
    p, r = dev.run(120)
    q, s = host.run(120)
    np.testing.assert_array_equal(p, q)
    np.testing.assert_array_equal(r, s)
    st = dev.stats()
    assert st["step_mode"] == "graph" and st["cuda_graph"] and st["segments"] >= 2, st
    assert "cooperative launch refused (cudaErrorCooperativeLaunchTooLarge)" in st["note"], st
    p, r = dev.run(5)  # the state stays on graph steps (plain launches below 64 steps)
    assert dev.stats()["step_mode"] == "launches"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_emulated_logits_identical_to_cpu(emu, dtype):
    rng = np.random.default_rng(5)
    x = rng.normal(0, 3, size=(400, 37)).astype(dtype)
    dev, host = EmuState(emu, x, dtype, from_logits=True, temperature=2.0), cpu_state(x, dtype, True, 2.0)
    dev.seed_rows(np.array([0, 5, 9]))
    host.seed_rows(np.array([0, 5, 9]))
    p, r = dev.run(40)
    q, s = host.run(40)
    np.testing.assert_array_equal(p, q)
    np.testing.assert_array_equal(r, s)
    np.testing.assert_array_equal(dev.row_vector(7), host.row_vector(7))


@pytest.mark.parametrize("dtype,c", [("float16", 40), ("float64", 300), ("float32", 12)])
def test_emulated_state_interface_identical_to_cpu(emu, dtype, c):
    x, dt = host_pool(700, c, dtype, seed=40 + c)
    compare_state_scenario(EmuState(emu, x, dt), cpu_state(x, dt), n=700, c=c, seed=41)


def test_emulated_run_to_the_last_row_and_bad_indices(emu):
    x, dt = host_pool(90, 6, "float32", seed=8, clustered=False)
    dev, host = EmuState(emu, x, dt), cpu_state(x, dt)
    dev.seed_rows(np.array([4, 7]))
    host.seed_rows(np.array([4, 7]))
    p, r = dev.run(88)
    q, s = host.run(88)
    np.testing.assert_array_equal(p, q)
    np.testing.assert_array_equal(r, s)
    assert sorted(p.tolist()) == sorted(set(range(90)) - {4, 7})
    assert dev.push_row(int(p[-1])) == host.push_row(int(q[-1])) == (-1, 0.0)  # nothing left
    with pytest.raises(IndexError, match="row=90 is out of range for 90 rows"):
        dev.push_row(90)
    with pytest.raises(ValueError, match=r"candidates must have shape \(90, k\)"):
        dev.seed_rows_with_candidates(np.array([1]), np.zeros((3, 2), dtype=np.int64))


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_selector_continues_on_the_device(cuda_device, dtype):
    x = simplex_pool(20_000, 24, seed=31, dtype=dtype, clustered=True).to(cuda_device)
    sel = pcoreset.Selector(x, [3, 5], backend="cuda")
    got = torch.cat([sel.next(30), sel.next(20)])
    want, radii = pcoreset.select(x, [3, 5], 50, backend="cuda", return_radii=True)
    assert got.device == x.device and torch.equal(got, want)
    # until() steps one pick per call on the device state; same sequence
    r = float(radii[35])
    sel2 = pcoreset.Selector(x, [3, 5], backend="cuda")
    picks, _ = sel2.until(r)
    first = int(torch.nonzero(radii <= r)[0, 0])
    assert torch.equal(picks, want[:first])
    sel2.add_centers([100, 200])
    sel2.exclude([300])
    sd = sel2.state_dict()
    back = pcoreset.Selector.from_state_dict(x, sd, backend="cuda")
    assert torch.equal(back.next(10), sel2.next(10))


# --------------------------------------------------------------------------- emulation: accidents and edges


def _cpu_after(x, dt, seeds, picks, push_last=True):
    """The CPU state after starting from `seeds` and an uninterrupted run of
    len(picks) steps whose last pick is pushed too (as an interrupted run
    leaves it), asserting the same picks."""
    host = cpu_state(x, dt)
    if len(seeds):
        host.seed_rows(np.asarray(seeds))
    if len(picks):
        q, _ = host.run(len(picks))
        np.testing.assert_array_equal(picks, q)
        if push_last:
            host.push_row(int(q[-1]))
    return host


def _same_state(dev, host):
    assert dev.num_centers == host.num_centers
    for a, b in zip(dev.export_state(), host.export_state()):
        np.testing.assert_array_equal(a, b)


class _Stop(Exception):
    pass


@pytest.mark.parametrize("steps", ["persistent", "graph", "launches"])
@pytest.mark.parametrize("stop_at", [1, 2, 4])
def test_emulated_interrupted_run_keeps_the_finished_steps(emu, steps, stop_at):
    """A progress callback that raises at its stop_at-th call: the exception
    propagates, last_run() has every pick the device made (each a center),
    the state equals the CPU state after an uninterrupted run of those steps,
    and continuing gives the uninterrupted sequence."""
    x, dt = host_pool(800, 24, "float32", seed=50)
    seeds = np.array([1, 400])
    dev = EmuState(emu, x, dt, steps=steps)
    dev.seed_rows(seeds)
    calls = []

    def progress(done):
        calls.append(done)
        if len(calls) == stop_at:
            raise _Stop()

    budget = 300
    with pytest.raises(_Stop):
        dev.run(budget, progress)
    p, r = dev.last_run()
    assert calls[-1] <= len(p) < budget, (calls, len(p))
    want, want_r = cpu_state_run(x, dt, seeds, budget)
    np.testing.assert_array_equal(p, want[:len(p)])
    np.testing.assert_array_equal(r, want_r[:len(p)])
    assert dev.num_centers == seeds.size + len(p)  # every recorded pick is a center
    _same_state(dev, _cpu_after(x, dt, seeds, p))
    q, s = dev.run(budget - len(p))
    np.testing.assert_array_equal(np.concatenate([p, q]), want)
    np.testing.assert_array_equal(np.concatenate([r, s]), want_r)


def cpu_state_run(x, dt, seeds, budget):
    host = cpu_state(x, dt)
    if len(seeds):
        host.seed_rows(np.asarray(seeds))
    return host.run(budget)


def test_emulated_keyboard_interrupt_and_a_real_sigint(emu):
    """KeyboardInterrupt from the callback, then a real SIGINT sent while the
    run is inside the kernel (no callback): both keep the finished steps."""
    import signal
    import threading

    x, dt = host_pool(900, 24, "float32", seed=51)
    want, want_r = cpu_state_run(x, dt, [], 800)
    dev = EmuState(emu, x, dt)

    def interrupt(done):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        dev.run(800, interrupt)
    p1, _ = dev.last_run()
    assert 0 < len(p1) < 800
    np.testing.assert_array_equal(p1, want[:len(p1)])
    _same_state(dev, _cpu_after(x, dt, [], p1))
    # The run takes seconds in the emulation; the signal comes after 0.3 s.
    # Only while the run is on does SIGINT raise: a signal that came late
    # cannot interrupt the test session.
    armed = [True]

    def on_sigint(signum, frame):
        if armed[0]:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            dev.run(800 - len(p1))
    finally:
        armed[0] = False
        timer.cancel()
        timer.join()
        signal.signal(signal.SIGINT, previous)
    p2, _ = dev.last_run()
    assert 0 < len(p2) < 800 - len(p1)
    got = np.concatenate([p1, p2])
    np.testing.assert_array_equal(got, want[:len(got)])
    _same_state(dev, _cpu_after(x, dt, [], got))
    q, _ = dev.run(800 - len(got))
    np.testing.assert_array_equal(np.concatenate([got, q]), want)


@pytest.mark.parametrize("steps", ["persistent", "graph", "launches"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_emulated_budget_above_the_eligible_rows(emu, steps, dtype):
    """A step that finds no eligible row (the binding's callers check the
    budget; the kernel must still be safe): an error naming the picks made,
    last_run() has exactly those picks, no pick or center is invented, and
    the state equals the CPU state after those steps."""
    x, dt = host_pool(90, 6, dtype, seed=8, clustered=False)
    seeds = np.array([4, 7])
    dev = EmuState(emu, x, dt, steps=steps)
    dev.seed_rows(seeds)
    with pytest.raises(RuntimeError, match=r"pool exhausted inside the kernel \(no eligible row after 88 of 120"):
        dev.run(120)
    p, r = dev.last_run()
    want, want_r = cpu_state_run(x, dt, seeds, 88)
    np.testing.assert_array_equal(p, want)
    np.testing.assert_array_equal(r, want_r)
    assert dev.num_centers == 90
    _same_state(dev, _cpu_after(x, dt, seeds, p))
    assert dev.current_best() == (-1, 0.0)


def test_emulated_fallback_mid_run_stops_at_the_segment_end(emu, monkeypatch):
    """The persistent kernel refused after its first segment (16 steps): the
    graph steps that follow start at step 16, not a multiple of 32, and must
    not replay a whole graph past the segment's end. A stop asked at the
    first report (16 picks) ends the run at the end of the segment queued
    then (32 picks), not 48."""
    x, dt = host_pool(600, 24, "float32", seed=12)
    dev = EmuState(emu, x, dt)
    dev.seed_rows(np.array([2, 300]))
    monkeypatch.setenv("PCS_EMU_COOPERATIVE_LIMIT", "1")
    seen = []

    def progress(done):
        seen.append(done)
        raise _Stop()

    with pytest.raises(_Stop):
        dev.run(200, progress)
    p, _ = dev.last_run()
    assert seen == [16] and len(p) == 32, (seen, len(p))
    st = dev.stats()
    assert st["step_mode"] == "graph" and "cooperative launch refused" in st["note"], st
    _same_state(dev, _cpu_after(x, dt, [2, 300], p))


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_emulated_negative_zero_in_a_loaded_state(emu, dtype):
    """mind = -0.0 in a loaded state is an eligible row at distance 0 on
    both kernels: the GPU must not rank its sign bit above every row."""
    x, dt = host_pool(300, 8, dtype, seed=60)
    dev, host = EmuState(emu, x, dt), cpu_state(x, dt)
    dev.seed_rows(np.array([0, 100, 200]))
    host.seed_rows(np.array([0, 100, 200]))
    mind, nearest, centers = host.export_state()
    mind = mind.copy()
    mind[[5, 250]] = -0.0  # two rows "on" their centers, stored with a sign
    mind[7] = 0.0
    assert np.signbit(mind[5]) and not np.signbit(mind[7])
    dev.load_state(mind, nearest, centers)
    host.load_state(mind, nearest, centers)
    assert dev.current_best() == host.current_best()
    p, r = dev.run(297)  # down to the rows at distance 0, in row order
    q, s = host.run(297)
    np.testing.assert_array_equal(p, q)
    np.testing.assert_array_equal(r, s)
    assert list(p[-3:]) == [5, 7, 250]


def test_emulated_dcc_launch_error_is_named(emu, monkeypatch):
    """push_row launches prep, dcc, pass: a failed dcc launch is reported as
    dcc_kernel's (not as the pass's that follows)."""
    x, dt = host_pool(200, 40, "float32", seed=61)
    dev = EmuState(emu, x, dt)
    dev.seed_rows(np.array([3]))
    monkeypatch.setenv("PCS_EMU_FAIL_LAUNCH", "2")
    with pytest.raises(RuntimeError, match="dcc_kernel failed: cudaErrorLaunchOutOfResources"):
        dev.push_row(10)


def test_emulated_failed_launch_inside_a_run(emu, monkeypatch):
    """Plain launches: the run's first unit is prep (2nd launch after the
    slot-0 scan), dcc (3rd), pass. A failed dcc launch is named, the pick
    that prep recorded is reported, and the state, whose step is half done,
    refuses every later call instead of continuing from it."""
    x, dt = host_pool(300, 40, "float32", seed=63)
    dev = EmuState(emu, x, dt, steps="launches")
    dev.seed_rows(np.array([3, 150]))
    monkeypatch.setenv("PCS_EMU_FAIL_LAUNCH", "3")
    with pytest.raises(RuntimeError, match="dcc_kernel failed: cudaErrorLaunchOutOfResources"):
        dev.run(20)
    monkeypatch.delenv("PCS_EMU_FAIL_LAUNCH")
    p, _ = dev.last_run()
    want, _ = cpu_state_run(x, dt, [3, 150], 20)
    np.testing.assert_array_equal(p, want[:len(p)])
    assert len(p) == 1
    for call in (dev.current_best, dev.export_state, lambda: dev.run(5), lambda: dev.push_row(7)):
        with pytest.raises(RuntimeError, match="cannot be used after an error inside run"):
            call()


@pytest.mark.parametrize("variant", ["prefetch", "plain"])
def test_emulated_more_centers_than_one_dcc_sweep(emu, variant):
    """c = 40 > 32: four centers per warp in the center-to-center stage. The
    emulated device's dcc grid is 8 blocks = 64 warps = 256 centers per
    sweep; 400 labeled rows make every warp loop."""
    x, dt = host_pool(1200, 40, "float32", seed=62)
    labeled = np.arange(0, 1200, 3)
    dev, host = EmuState(emu, x, dt, variant=variant), cpu_state(x, dt)
    dev.seed_rows(labeled)
    host.seed_rows(labeled)
    p, r = dev.run(25)
    q, s = host.run(25)
    np.testing.assert_array_equal(p, q)
    np.testing.assert_array_equal(r, s)
    assert dev.stats()["center_dists"] > 0


@pytest.mark.parametrize("variant", ["prefetch", "plain"])
@pytest.mark.parametrize("dtype,c", [("float16", 128), ("float16", 129), ("float16", 700), ("float32", 513),
                                     ("bfloat16", 260)])
def test_emulated_chunk_edges_identical_to_cpu(emu, variant, dtype, c):
    """Rows of exactly one chunk (128 columns for 2-byte values), one more
    column, several chunks with early-exit checks and a partial last chunk:
    both pass variants, bit for bit with the CPU kernel."""
    x, dt = host_pool(260, c, dtype, seed=c)
    labeled = np.arange(0, 260, 19)
    dev, host = EmuState(emu, x, dt, variant=variant), cpu_state(x, dt)
    dev.seed_rows(labeled)
    host.seed_rows(labeled)
    p, r = dev.run(20)
    q, s = host.run(20)
    np.testing.assert_array_equal(p, q)
    np.testing.assert_array_equal(r, s)
    assert dev.stats()["pass"] == variant


# --------------------------------------------------------------------------- the device check script


def test_gpu_check_stops_at_once_without_a_device(tmp_path):
    """benchmarks/gpu_check.sh on a machine without a CUDA device: exit 2
    with one line naming the reason, before any build, and a summary that
    says FAIL for the preflight and SKIP for every later stage."""
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device: the script would run for real")
    out = tmp_path / "out"
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(out)], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: FAIL preflight: no CUDA device"), r.stderr
    summary = (out / "summary.txt").read_text()
    assert "FAIL preflight no CUDA device" in summary and summary.rstrip().endswith("RESULT FAIL"), summary
    for stage in ("build", "import", "smoke", "tests", "sanitizer", "bench"):
        assert f"SKIP {stage}" in summary, summary
    assert sorted(p.name for p in out.iterdir()) == ["stages.log", "summary.txt"]


@pytest.mark.parametrize("steps", ["persistent", "graph"])
@pytest.mark.parametrize("dtype,huge", [("float32", 1e25), ("float64", 1e160)])
@pytest.mark.parametrize("labeled", [[], [0, 1]])
def test_emulated_overflowing_distances_equal_the_cpu(emu, steps, dtype, huge, labeled):
    """Rows whose squared distances overflow to +inf in the accumulation
    type (select rescales such pools first; the kernels must still be
    exact; they share the CPU kernel's pruning test, which never skips on an
    infinite bound): the device's pruned and dense runs give the CPU
    kernel's unpruned picks, radii, minima and nearest centers, with exact
    duplicates of huge and of small rows among them."""
    rng = np.random.default_rng(len(labeled) + (dtype == "float64"))
    for c in (3, 40):
        x = rng.random((400, c))
        x[rng.random(400) < 0.6] *= huge  # a mix: finite and infinite distances
        x[100:140] = x[100] * (1.0 if x[100, 0] > 1.0 else huge)  # duplicates of a huge row: 0 apart,
        x[200:230] = x[200] * (1.0 if x[200, 0] > 1.0 else huge)  # infinitely far from most centers
        x[300:320] = x[300] / (huge if x[300, 0] > 1.0 else 1.0)  # and of a small row
        x = x.astype(dtype)
        for prune in (True, False):
            host = cpu_state(x, dtype, prune=False)
            dev = EmuState(emu, x, dtype, steps=steps, prune=prune)
            if labeled:
                host.seed_rows(np.array(labeled))
                dev.seed_rows(np.array(labeled))
            for budget in (10, 240):  # early, most rows still at +inf from every center; then late
                q, s = host.run(budget)
                p, r = dev.run(budget)
                np.testing.assert_array_equal(p, q)
                np.testing.assert_array_equal(r, s)
                np.testing.assert_array_equal(dev.min_dist2(), host.min_dist2())
                _same_state(dev, host)  # each row's nearest center too (the lowest when all are +inf)
            assert np.isinf(s).any() and np.isfinite(s).any()

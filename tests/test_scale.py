"""Pools larger than memory (.npy paths and np.memmap streamed in tiles whose
pages are handed back), predictable memory, OutOfMemoryError, and Ctrl-C."""
import importlib.util
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from numpy.lib.format import open_memmap

import pcoreset
from pcoreset import _C, _memory, backends
from pcoreset.errors import InvalidInputError, OutOfMemoryError

from conftest import clustered_pool

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rss_file():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssFile:"):
                return int(line.split()[1]) * 1024
    pytest.skip("no RssFile in /proc/self/status")


@pytest.fixture
def npy_pool(tmp_path):
    """A 4096 x 512 float16 pool (4 MiB) written as a .npy file."""
    x = clustered_pool(4096, 512, seed=11).astype(np.float16)
    path = tmp_path / "pool.npy"
    np.save(path, x)
    return str(path), x


@pytest.mark.parametrize("labeled", [None, np.arange(0, 4096, 64)])
def test_npy_path_and_memmap_match_in_memory(npy_pool, labeled):
    path, x = npy_pool
    ref = pcoreset.select(x, labeled, 40, backend="cpu", num_threads=1)
    np.testing.assert_array_equal(pcoreset.select(path, labeled, 40, backend="cpu", num_threads=1), ref)
    mm = np.load(path, mmap_mode="r")
    np.testing.assert_array_equal(pcoreset.kcenter_greedy(mm, labeled, 40, backend="cpu", num_threads=1), ref)
    np.testing.assert_array_equal(pcoreset.select(mm, labeled, 10, backend="torch"), ref[:10])


def test_labeled_candidate_start_on_memmap(npy_pool, monkeypatch):
    from pcoreset import _start

    path, x = npy_pool
    lab = np.arange(0, 4096, 5)
    with _start.force("certified"):
        np.testing.assert_array_equal(pcoreset.select(path, lab, 30, backend="cpu", num_threads=1),
                                      pcoreset.select(x, lab, 30, backend="cpu", num_threads=1))


def test_kernel_hands_pages_back(npy_pool):
    path, x = npy_pool
    mm = np.load(path, mmap_mode="r")
    assert _memory.file_backed(mm)
    before = _rss_file()
    s = _C.KCenterState(mm, "float16", prune=False, num_threads=1, release_pages=True)
    picks, _ = s.run(10)
    grown = _rss_file() - before
    assert grown < x.nbytes // 4, f"file-backed RSS grew by {grown} bytes for a {x.nbytes}-byte pool"
    np.testing.assert_array_equal(picks, _C.KCenterState(x, "float16", prune=False, num_threads=1).run(10)[0])
    np.testing.assert_array_equal(np.asarray(mm), x)  # data intact after MADV_DONTNEED


def test_release_rows_only_touches_shared_mappings(tmp_path):
    path = str(tmp_path / "a.npy")
    m = open_memmap(path, mode="w+", dtype=np.float32, shape=(1024, 256))
    m[:] = 1.0
    _memory.release_rows(m, 0, 1024)  # dirty shared pages: written back, not lost
    del m
    assert np.load(path).sum() == 1024 * 256
    cow = np.load(path, mmap_mode="c")
    assert not _memory.file_backed(cow)
    cow[0, 0] = 5.0
    _memory.release_rows(cow, 0, 1024)  # a no-op: would drop the private edit
    assert cow[0, 0] == 5.0
    assert not _memory.file_backed(np.zeros((4, 4)))


def test_estimate_memory():
    est = pcoreset.estimate_memory
    assert "estimate_memory" in pcoreset.__all__
    small, big = est(10_000, 100, "float32"), est(1_000_000, 100, "float32")
    assert 0 < small < big
    # the faiss backend needs a float32 copy of a float16 pool; the cpu kernel does not: its
    # share is per-row state plus, for rows this long, the projection bound's d + 3 floats a row
    assert est(10**6, 1000, "float16", backend="faiss") > 10**6 * 1000 * 4
    cpu = est(10**6, 1000, "float16", backend="cpu")
    assert 10**6 * (32 + 3) * 4 < cpu < 256 << 20
    # a file-backed pool adds one resident tile
    assert est(10**6, 1000, np.float16, in_memory=False) - est(10**6, 1000, np.float16) <= 64 << 20
    assert est(10**6, 100, "float32", n_labeled=10**5) > est(10**6, 100, "float32")
    with pytest.raises(InvalidInputError, match="backend='gpu'"):
        est(10, 2, "float32", backend="gpu")
    with pytest.raises(InvalidInputError, match="n must be"):
        est(-1, 2, "float32")


def test_out_of_memory_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(_memory, "available_bytes", lambda: 100)
    with pytest.raises(OutOfMemoryError, match=r"select\(n=50, c=4.*needs .* MiB but only 0.0 MiB") as exc:
        pcoreset.select(np.full((50, 4), 0.25, np.float32), None, 3)
    assert exc.value.needed > exc.value.available == 100
    assert isinstance(exc.value, MemoryError)


_INTERRUPT_SCRIPT = """
import sys, numpy as np, pcoreset
x = np.random.default_rng(0).random((50_000, 64), dtype=np.float32)
x /= x.sum(1, keepdims=True)
for backend in sys.argv[1:]:
    print("ready", flush=True)
    try:
        pcoreset.select(x, None, 40_000, backend=backend, prune=False)
        print("finished", flush=True)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
"""


def test_ctrl_c_returns_control():
    """SIGINT during a long selection raises KeyboardInterrupt in the caller
    (cpu: checked between kernel steps; faiss: a Python loop), and the
    interpreter carries on: a second selection in the same process runs."""
    backends = ["cpu"] + (["faiss"] if importlib.util.find_spec("faiss") is not None else [])
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", _INTERRUPT_SCRIPT] + backends, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        for backend in backends:
            assert proc.stdout.readline().strip() == "ready", backend
            time.sleep(0.3)
            proc.send_signal(signal.SIGINT)
            assert proc.stdout.readline().strip() == "interrupted", backend
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err


def test_cuda_estimate_counts_what_the_cuda_module_allocates():
    # the estimate runs without the CUDA module; where it is built, its own
    # count (state_bytes) must be what the estimate's state parts add up to
    parts = backends.memory_parts(10**6, 100, "float32", backend="cuda", n_labeled=1000, budget=5000)
    state = sum(v for k, v in parts.items() if "start" not in k)
    assert state > 10**6 * 8  # running minimum + nearest center per row
    cuda_mod = pytest.importorskip("pcoreset._C_cuda", reason="CUDA module not built")
    for dtype, logits, m, b in (("float32", False, 1000, 5000), ("float64", True, 0, 10), ("float16", False, 7, 0)):
        parts = backends.memory_parts(10**5, 37, dtype, backend="cuda", n_labeled=m, budget=b, from_logits=logits)
        mine = sum(v for k, v in parts.items() if "start" not in k and "picks and radii" not in k)
        theirs = cuda_mod.state_bytes(dtype, 10**5, 37, logits, m, b)
        assert mine == theirs, (dtype, mine, theirs)

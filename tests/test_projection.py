"""The projection lower bound of the CPU kernel (csrc/cpu/projection.h).

A step may skip a row whose projected distance to the new center proves it
keeps its running minimum; these tests force the bound on at small sizes,
on every pool family where a shortcut could break, and compare picks, radii
and running minimum bit for bit with the unpruned pass (prune=False)."""
import os

import numpy as np
import pytest

from pcoreset import _C

from test_kernel import _pruned_against_dense, degenerate_pool, quantised_rows, stored


def pool(kind, n, c, seed=0):
    """(float64 rows, labeled rows) of one family."""
    rng = np.random.default_rng(seed)
    if kind == "clustered":  # softmax of 6 centres + noise: the bound rejects many rows
        z = rng.normal(0, 4.0, size=(6, c))[rng.integers(0, 6, size=n)] + rng.normal(0, 1.0, size=(n, c))
        z = np.exp(z - z.max(1, keepdims=True))
        return z / z.sum(1, keepdims=True), np.array([4, 40])
    if kind == "confident":  # near-one-hot rows: ties in the bound's margins
        z = rng.normal(0, 1.0, size=(n, c))
        z[np.arange(n), rng.integers(0, c, size=n)] += 18.0
        z = np.exp(z - z.max(1, keepdims=True))
        return z / z.sum(1, keepdims=True), np.array([1])
    if kind == "quantised":  # few distinct values: exact ties between distances
        return quantised_rows(n, c, seed), np.array([0, 7])
    if kind == "duplicates":  # each row repeated: many rows at distance 0
        base = rng.dirichlet(np.ones(c), size=n // 8)
        return base[rng.integers(0, len(base), size=n)], np.array([3])
    if kind in ("identical", "one-hot", "copies-of-labeled", "few-distinct"):
        return degenerate_pool(kind, n, c, seed=seed)
    if kind == "huge":
        return rng.random((n, c)) * 1e150, np.array([2])
    if kind == "tiny":
        return rng.random((n, c)) * 1e-150, np.array([2])
    raise ValueError(kind)


FAMILIES = ["clustered", "confident", "quantised", "duplicates", "identical", "one-hot",
            "copies-of-labeled", "few-distinct"]


def compare(arr, dtype, lab, budget, monkeypatch, cells, basis=None, logits=False, **kw):
    """Run prune=False and the projection-forced state side by side; return
    the latter's stats."""
    monkeypatch.setenv("PCORESET_PROJECTION", "1")
    monkeypatch.setenv("PCORESET_CELL_VISIT", "1" if cells else "0")
    proj, _ = _pruned_against_dense(arr, dtype, budget, seed=lab, logits=logits, temperature=0.7, basis=basis, **kw)
    st = proj.stats()
    # cell steps over short rows (C <= 16) read the values kept in the
    # cells, not the pool: the bound is not asked there; elsewhere every row
    # the triangle tests keep is asked (after the first center, with which
    # every row moves), and a row it does not rule out is computed
    if cells and arr.shape[1] <= 16:
        assert st["proj_checked"] == 0
    else:
        assert st["proj_builds"] == 1
        first = 0 if len(lab) else len(arr) - 1
        assert st["rows_computed"] - first == st["proj_checked"] - st["proj_rejected"]
    return st


@pytest.mark.parametrize("cells", [True, False], ids=["cells", "dense"])
@pytest.mark.parametrize("c", [3, 20, 70])
@pytest.mark.parametrize("kind", FAMILIES)
def test_projection_gives_the_bits_of_the_dense_pass(kind, c, cells, monkeypatch):
    x64, lab = pool(kind, 600, c, seed=c)
    for dtype in ("float32", "float64", "float16"):
        arr, _ = stored(x64, dtype)
        st = compare(arr, dtype, lab, 150, monkeypatch, cells)
        if kind != "identical" and not (cells and c <= 16):
            assert st["proj_checked"] > 0
        if kind == "clustered" and c >= 20:  # the bound does rule rows out
            assert st["proj_rejected"] > 0


@pytest.mark.parametrize("kind", ["huge", "tiny"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_projection_at_huge_and_tiny_magnitudes(kind, dtype, monkeypatch):
    # near the top of each type's range (squared distances still finite)
    # and deep in its subnormal squares (distances underflow, ties at 0)
    x64, lab = pool(kind, 400, 40)
    if dtype == "float32":
        x64 = x64 * (1e-133 if kind == "huge" else 1e115)  # ~1e17 and ~1e-35
    for cells in (True, False):
        compare(x64.astype(dtype), dtype, lab, 100, monkeypatch, cells)


def test_projection_with_logits_and_bfloat16(monkeypatch):
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 3.0, size=(500, 66))
    for dtype in ("float32", "bfloat16"):
        arr, _ = stored(logits, dtype)
        for cells in (True, False):
            compare(arr, dtype, np.array([5]), 120, monkeypatch, cells, logits=True)


def test_projection_on_a_memmap(tmp_path, monkeypatch):
    x64, lab = pool("clustered", 3000, 80, seed=1)
    path = tmp_path / "pool.npy"
    np.save(path, x64.astype(np.float16))
    mm = np.load(path, mmap_mode="r")
    for cells in (True, False):
        st = compare(mm, "float16", lab, 200, monkeypatch, cells, release_pages=True)
        assert st["proj_rejected"] > 0
        # a file-backed pool's cell steps read their rows in pool order
        assert st["row_sorted_steps"] == st["cell_steps"]


def random_basis(c, d, seed=0):
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(c, d)))
    return np.ascontiguousarray(q.T)


@pytest.mark.parametrize("kind", ["clustered", "quantised", "duplicates"])
def test_any_orthonormal_basis_keeps_the_bits(kind, monkeypatch):
    # the bound holds for any basis: random ones, coordinate vectors (rows
    # equal there and apart elsewhere: the residual term carries them), a
    # basis of 1 or 64 rows, one off orthonormal by 1e-4
    x64, lab = pool(kind, 500, 70, seed=3)
    eye = np.eye(70)[[0, 5, 9]]
    off = random_basis(70, 12, 1) * (1 + 1e-4)
    for basis in (random_basis(70, 8), random_basis(70, 1, 2), random_basis(70, 64, 3), eye, off):
        for dtype in ("float32", "float64"):
            for cells in (True, False):
                compare(x64.astype(dtype), dtype, lab, 120, monkeypatch, cells, basis=basis)


def test_set_projection_rejects_bad_bases():
    x = np.random.default_rng(0).random((50, 10))
    s = _C.KCenterState(x, "float64", False, 1.0, True, 1)
    with pytest.raises(ValueError, match="orthonormal"):
        s.set_projection(np.ones((2, 10)))
    with pytest.raises(ValueError, match=r"\(d, 10\)"):
        s.set_projection(np.eye(10)[:3, :9])
    with pytest.raises(ValueError, match="non-finite"):
        b = np.eye(10)[:2].copy()
        b[0, 0] = np.nan
        s.set_projection(b)
    with pytest.raises(ValueError, match="1 to 64"):
        s.set_projection(np.zeros((0, 10)))


def test_the_basis_is_computed_only_when_the_run_could_repay_it(monkeypatch):
    # a basis costs 2 x 4 iterations x (sample rows) x C x d multiply-adds: a
    # short run over few rows (the start's pivots: 64 picks over the centers)
    # never computes one, a long run over many rows does; picks never change
    monkeypatch.delenv("PCORESET_PROJECTION", raising=False)
    monkeypatch.delenv("PCORESET_CELL_VISIT", raising=False)
    for n, budget, want in ((1000, 64, 0), (12000, 800, 1)):
        x, lab = pool("clustered", n, 300, seed=5)
        x = x.astype(np.float32)
        auto = _C.KCenterState(x, "float32", False, 1.0, True, 1)
        dense = _C.KCenterState(x, "float32", False, 1.0, False, 1)
        for t in (auto, dense):
            t.seed_rows(lab)
        np.testing.assert_array_equal(auto.run(budget)[0], dense.run(budget)[0])
        assert auto.stats()["proj_bases"] == want, (n, budget, auto.stats())


def test_projection_off_and_the_cost_model(monkeypatch):
    x64, lab = pool("clustered", 2000, 70, seed=4)
    monkeypatch.setenv("PCORESET_PROJECTION", "0")
    s = _C.KCenterState(x64, "float64", False, 1.0, True, 1)
    s.seed_rows(lab)
    s.run(50)
    assert s.stats()["proj_checked"] == 0 and s.stats()["proj_builds"] == 0
    # the cost model: a run too short to pay for projecting every row
    # leaves the rows alone, and picks never depend on it
    monkeypatch.delenv("PCORESET_PROJECTION")
    auto = _C.KCenterState(x64, "float64", False, 1.0, True, 1)
    short = _C.KCenterState(x64, "float64", False, 1.0, False, 1)
    for t in (auto, short):
        t.seed_rows(lab)
    np.testing.assert_array_equal(auto.run(5)[0], short.run(5)[0])
    assert auto.stats()["proj_builds"] == 0
    dense = _C.KCenterState(x64, "float64", False, 1.0, False, 1)
    dense.seed_rows(lab)
    long = _C.KCenterState(x64, "float64", False, 1.0, True, 1)
    long.seed_rows(lab)
    np.testing.assert_array_equal(long.run(1500)[0], dense.run(1500)[0])
    np.testing.assert_array_equal(long.min_dist2(), dense.min_dist2())


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    raise KeyError(field)


def test_projection_keeps_a_memmap_out_of_memory(tmp_path, monkeypatch):
    # the basis's sample reads rows all over the file; the pages each fault
    # reads ahead must be handed back, or most of the file stays resident
    # (a 1M x 1000 float16 pool once kept 1.6 GB): the peak resident memory
    # of a forced projection run stays well under the file's size
    if "libasan" in os.environ.get("LD_PRELOAD", ""):  # the sanitizer run of .ci/run
        pytest.skip("AddressSanitizer's quarantine keeps freed memory resident: the peak is not the kernel's")
    n, c = 48_000, 1000  # 96 MB of float16; the kernel's tiles are 32 MB
    path = tmp_path / "pool.npy"
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, c))
    rng = np.random.default_rng(0)
    for s0 in range(0, n, 8000):
        mm[s0:s0 + 8000] = rng.random((8000, c)).astype(np.float16) / c
    mm.flush()
    del mm
    x = np.load(path, mmap_mode="r")
    monkeypatch.setenv("PCORESET_PROJECTION", "1")
    monkeypatch.setenv("PCORESET_CELL_VISIT", "0")
    s = _C.KCenterState(x, "float16", False, 1.0, True, 1, release_pages=True)
    try:
        with open("/proc/self/clear_refs", "w") as f:  # VmHWM back to the current RSS
            f.write("5")
    except OSError as exc:
        pytest.skip(f"cannot reset the peak RSS here: {exc}")
    before = _status_kib("VmRSS")
    s.run(3)
    assert s.stats()["proj_builds"] == 1
    peak_mib = (_status_kib("VmHWM") - before) / 1024
    assert peak_mib < 64, f"peak {peak_mib:.0f} MiB over a 96 MB file"


def test_the_memory_estimate_follows_the_kernels_projection_rule(monkeypatch):
    # the rule (from which C the cost model considers the bound, how many
    # directions) is the kernel's, exported by build_info: the estimate
    # counts the projected rows exactly where the kernel may build them
    from pcoreset.backends import cpu

    info = _C.build_info()
    min_c, (small, large) = info["projection_min_c"], info["projection_dims"]
    part = "projection bound (rows projected, error bounds)"
    monkeypatch.delenv("PCORESET_PROJECTION", raising=False)
    assert part not in cpu.BACKEND.memory_parts(1000, min_c - 1, "float32", 10, 10, False)
    assert cpu.BACKEND.memory_parts(1000, min_c, "float32", 10, 10, False)[part] == 1000 * 4 * (large + 3)
    monkeypatch.setenv("PCORESET_PROJECTION", "1")  # forced: any C
    assert cpu.BACKEND.memory_parts(1000, 100, "float32", 10, 10, False)[part] == 1000 * 4 * (small + 3)
    monkeypatch.setenv("PCORESET_PROJECTION", "0")
    assert part not in cpu.BACKEND.memory_parts(1000, min_c, "float32", 10, 10, False)
    # below min_c the cost model never builds it, however long the run
    monkeypatch.delenv("PCORESET_PROJECTION")
    x64, lab = pool("clustered", 3000, min_c - 1, seed=5)
    s = _C.KCenterState(x64, "float64", False, 1.0, True, 1)
    s.seed_rows(lab)
    s.run(400)
    assert s.stats()["proj_builds"] == 0 and s.stats()["proj_checked"] == 0

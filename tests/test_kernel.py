"""The C++ state (pcoreset._C.KCenterState) method by method, against NumPy.

CI also runs this file against a build with AddressSanitizer and
UndefinedBehaviorSanitizer (.ci/run), so it exercises every entry point,
every dtype and the edge sizes (C from 1 to past the 32-lane blocks)."""
import numpy as np
import pytest

from pcoreset import _C

DTYPES = ["float16", "bfloat16", "float32", "float64"]


def stored(x64, dtype):
    """(array to hand the kernel, float64 view of what it stores)."""
    if dtype == "bfloat16":
        bits = (x64.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
        return bits, (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    a = x64.astype(dtype)
    return a, a.astype(np.float64)


def numpy_greedy(x, labeled, budget):
    n = len(x)
    mind = np.full(n, np.inf)
    taken = np.zeros(n, bool)
    for i in labeled:
        mind = np.minimum(mind, ((x - x[i]) ** 2).sum(1))
        taken[i] = True
    picks = []
    if budget and not len(labeled):
        d = ((x - x.mean(0)) ** 2).sum(1)
        p = int(np.argmax(d))
        picks.append(p)
        taken[p] = True
        mind = np.minimum(mind, ((x - x[p]) ** 2).sum(1))
    while len(picks) < budget:
        p = int(np.argmax(np.where(taken, -1, mind)))
        picks.append(p)
        taken[p] = True
        mind = np.minimum(mind, ((x - x[p]) ** 2).sum(1))
    return np.array(picks)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [1, 3, 31, 32, 33, 100, 257])
@pytest.mark.parametrize("prune", [True, False])
def test_run_matches_numpy(dtype, c, prune):
    rng = np.random.default_rng(c)
    x64 = rng.dirichlet(np.ones(c), size=150) if c > 1 else rng.random((150, 1))
    arr, xs = stored(x64, dtype)
    for labeled in (np.zeros(0, np.int64), np.array([4, 77], np.int64)):
        s = _C.KCenterState(arr, dtype, False, 1.0, prune, 0)
        if labeled.size:
            s.seed_rows(labeled)
        budget = 40 if c > 1 else 10
        picks, radii2 = s.run(budget)
        want = numpy_greedy(xs, labeled, budget)
        if dtype == "float64":
            np.testing.assert_array_equal(picks, want)
        else:  # float32 accumulation: compare distances, not identities
            assert len(set(picks.tolist())) == budget
        assert np.all(np.diff(radii2[1:]) <= 0)


@pytest.fixture
def cell_steps_only(monkeypatch):
    """Cell steps whatever the cost model says (read when a state is made)."""
    monkeypatch.setenv("PCORESET_CELL_VISIT", "1")


@pytest.mark.parametrize("dtype", DTYPES)
def test_methods_against_numpy(dtype, cell_steps_only):
    rng = np.random.default_rng(5)
    x64 = rng.dirichlet(np.ones(40), size=300)
    arr, xs = stored(x64, dtype)
    tol = 1e-12 if dtype == "float64" else 1e-6
    s = _C.KCenterState(arr, dtype, False, 1.0, True, 2)
    assert (s.n, s.c) == (300, 40)
    np.testing.assert_allclose(s.row_vector(7), xs[7], rtol=0, atol=tol)
    np.testing.assert_allclose(s.mean_vector(), xs.mean(0), rtol=1e-6)
    row, d2 = s.farthest_from(xs.mean(0))
    assert row == int(np.argmax(((xs - xs.mean(0)) ** 2).sum(1)))
    # external centers, then a row center, then a vector center
    ext = xs[[10, 20]]
    s.seed_vectors(ext)
    want = np.minimum(((xs - xs[10]) ** 2).sum(1), ((xs - xs[20]) ** 2).sum(1))
    np.testing.assert_allclose(s.min_dist2(), want, rtol=1e-5, atol=1e-7)
    best, bd2 = s.current_best()
    assert best == int(np.argmax(want)) and abs(bd2 - want.max()) <= 1e-5 * want.max()
    s.take(best)
    best2, _ = s.current_best()
    assert best2 != best
    nb, _ = s.push_row(best2)
    want = np.minimum(want, ((xs - xs[best2]) ** 2).sum(1))
    want[[best, best2]] = -1
    assert nb == int(np.argmax(want))
    vb, _ = s.push_center(xs[nb])
    assert vb != nb
    st = s.stats()
    # cell steps look only at the members of the cells the new center can change
    assert st["steps"] == 2 and st["cell_steps"] == 2 and st["dense_steps"] == 0
    assert 0 < st["rows_visited"] < 600


def test_candidates_and_padding():
    rng = np.random.default_rng(2)
    x = rng.dirichlet(np.ones(12), size=200)
    labeled = np.array([0, 50, 100, 150])
    exact = _C.KCenterState(x, "float64")
    exact.seed_rows(labeled)
    cand = np.full((200, 3), -1, np.int64)
    d = ((x[:, None, :] - x[labeled][None]) ** 2).sum(-1)
    cand[:, :2] = np.argsort(d, axis=1)[:, :2]
    cand[7, 1] = 99  # out of range: ignored
    s = _C.KCenterState(x, "float64")
    s.seed_rows_with_candidates(labeled, cand)
    np.testing.assert_allclose(s.min_dist2(), exact.min_dist2(), rtol=1e-12)
    np.testing.assert_array_equal(s.run(30)[0], exact.run(30)[0])
    with pytest.raises(ValueError, match="candidates must have shape"):
        s.seed_rows_with_candidates(labeled, cand[:5])


@pytest.mark.parametrize("dtype", DTYPES)
def test_logits_softmax_inside_kernel(dtype):
    rng = np.random.default_rng(9)
    z = rng.normal(0, 2, size=(120, 45))
    arr, zs = stored(z, dtype)
    t = 1.7
    p = np.exp((zs - zs.max(1, keepdims=True)) / t)
    p /= p.sum(1, keepdims=True)
    s = _C.KCenterState(arr, dtype, True, t, True, 0)
    np.testing.assert_allclose(s.row_vector(3), p[3], rtol=1e-5, atol=1e-7)
    picks, _ = s.run(25)
    if dtype == "float64":
        np.testing.assert_array_equal(picks, numpy_greedy(p, [], 25))


def test_interrupt_from_progress_callback():
    x = np.random.default_rng(0).dirichlet(np.ones(8), size=5000)
    s = _C.KCenterState(x, "float64", False, 1.0, False, 1)

    def stop(done):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        s.run(4000, stop)


def test_empty_and_single_row_pools():
    s = _C.KCenterState(np.zeros((0, 3), np.float32), "float32")
    assert s.run(0)[0].size == 0
    one = _C.KCenterState(np.array([[1.0]], np.float32), "float32")
    picks, radii2 = one.run(1)
    assert picks.tolist() == [0] and np.isinf(radii2[0])
    with pytest.raises(ValueError, match="budget must be >= 0"):
        one.run(-1)


def test_float16_storage_gives_the_bits_of_float32_storage():
    # float16 rows widen exactly to float32, and both accumulate in float32 in
    # the same lane order: the running minimum must be bit-identical (this
    # covers the explicit F16C loop of the AVX2 build).
    rng = np.random.default_rng(3)
    x16 = rng.dirichlet(np.full(300, 0.1), size=400).astype(np.float16)  # many subnormals
    x32 = x16.astype(np.float32)
    for prune in (True, False):
        a = _C.KCenterState(x16, "float16", False, 1.0, prune, 0)
        b = _C.KCenterState(x32, "float32", False, 1.0, prune, 0)
        a.seed_rows(np.array([1, 2]))
        b.seed_rows(np.array([1, 2]))
        np.testing.assert_array_equal(a.min_dist2(), b.min_dist2())
        pa, ra = a.run(60)
        pb, rb = b.run(60)
        np.testing.assert_array_equal(pa, pb)
        np.testing.assert_array_equal(ra, rb)


_ISA_SCRIPT = """
import numpy as np
from pcoreset import _C
rng = np.random.default_rng(8)
out = {}
for dtype in ("float16", "float32", "float64"):
    x = rng.dirichlet(np.full(77, 0.2), size=500).astype(dtype)
    s = _C.KCenterState(x, dtype, False, 1.0, True, 0)
    s.seed_rows(np.array([0, 9]))
    picks, r = s.run(50)
    out[dtype] = (picks.tolist(), r.tolist(), s.min_dist2().tolist())
print(repr((_C.build_info()["simd"], out)))
"""


def test_baseline_and_simd_builds_agree_bit_for_bit():
    import ast
    import os
    import subprocess
    import sys

    runs = []
    for forced in ("", "baseline"):
        env = dict(os.environ, PCORESET_SIMD=forced)
        proc = subprocess.run([sys.executable, "-c", _ISA_SCRIPT], env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        runs.append(ast.literal_eval(proc.stdout.strip().splitlines()[-1]))
    (simd_a, out_a), (simd_b, out_b) = runs
    assert simd_b in ("sse2", "neon", "scalar")
    assert out_a == out_b, f"{simd_a} and {simd_b} builds differ"


def test_vector_centers_with_candidates_match_exact_seeding():
    from pcoreset import _start
    from pcoreset._problem import make_problem

    rng = np.random.default_rng(4)
    x = rng.dirichlet(np.ones(20), size=500).astype(np.float32)
    vecs = rng.dirichlet(np.ones(20), size=60)  # centers that are not rows (another shard's)
    problem = make_problem(x, [], 0, simplex=True, from_logits=False, temperature=1.0, prune=True,
                           num_threads=0, progress=None)
    exact = _C.KCenterState(x, "float32")
    exact.seed_vectors(vecs)
    cand = _start.nearest_candidates(problem, centers=vecs)
    s = _C.KCenterState(x, "float32")
    s.seed_vectors_with_candidates(vecs, cand)
    np.testing.assert_array_equal(s.min_dist2(), exact.min_dist2())
    np.testing.assert_array_equal(s.run(40)[0], exact.run(40)[0])
    with pytest.raises(ValueError, match="candidates must have shape"):
        s.seed_vectors_with_candidates(vecs, cand[:3])


# --------------------------------------------------------------------------- cells


def quantised_rows(n, c, seed):
    """Rows with few distinct values: many exact ties between distances."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 4, size=(n, c)).astype(np.float64) / 4.0


@pytest.mark.parametrize("mode", ["cells", "pruned-dense", "cost-model", "default"])
@pytest.mark.parametrize("c", [1, 2, 3, 5, 8, 9, 16, 17, 40])
@pytest.mark.parametrize("dtype", DTYPES)
def test_cell_steps_give_the_bits_of_dense_passes(c, dtype, mode, monkeypatch):
    # prune=False runs dense passes over every row; prune=True runs cell steps
    # (unrolled distances for c <= 8, values kept in the cells for c <= 16),
    # pruned dense passes, or both as the cost model switches between them:
    # the same running minimum, picks and radii, ties included.
    if mode == "cells":
        monkeypatch.setenv("PCORESET_CELL_VISIT", "1")
    elif mode == "pruned-dense":
        monkeypatch.setenv("PCORESET_CELL_VISIT", "0")
    elif mode == "cost-model":  # a low switch point, so that small pools switch both ways
        monkeypatch.setenv("PCORESET_CELL_VISIT", "0.15")
    else:  # the measured cost model chooses (whatever it picks, the same bits)
        monkeypatch.delenv("PCORESET_CELL_VISIT", raising=False)
    switched = 0
    for seed, make in ((1, lambda: np.random.default_rng(c).random((700, c))),
                       (2, lambda: quantised_rows(700, c, c))):
        arr, _ = stored(make(), dtype)
        for labeled in ([], [3, 99, 500]):
            dense = _C.KCenterState(arr, dtype, False, 1.0, False, 1)
            cells = _C.KCenterState(arr, dtype, False, 1.0, True, 1)
            if labeled:
                dense.seed_rows(np.array(labeled))
                cells.seed_rows(np.array(labeled))
            pd, rd = dense.run(150)
            pc, rc = cells.run(150)
            np.testing.assert_array_equal(pc, pd)
            np.testing.assert_array_equal(rc, rd)
            np.testing.assert_array_equal(cells.min_dist2(), dense.min_dist2())
            st = cells.stats()
            assert st["steps"] == 149
            if mode == "cells":
                assert st["cell_steps"] >= 148 and st["dense_steps"] <= 1 and st["cell_switches"] == 0
                assert st["rows_visited"] < 149 * 700  # cells, not every row
            elif mode == "pruned-dense":
                assert st["cell_steps"] == 0
            switched += st["cell_switches"]
    if mode == "cost-model":  # both kinds of step ran, and the switch went both ways
        assert switched >= 2


def test_parallel_cell_steps_equal_serial_ones(cell_steps_only):
    # steps whose cells hold more than 32768 rows run on several threads, in
    # work items of 8192 rows; the result must not depend on the threads
    rng = np.random.default_rng(7)
    x = rng.dirichlet(np.ones(6), size=120_000).astype(np.float32)
    one = _C.KCenterState(x, "float32", False, 1.0, True, 1)
    two = _C.KCenterState(x, "float32", False, 1.0, True, 2)
    # enough steps that cells compacted by parallel items are visited again
    p1, r1 = one.run(400)
    p2, r2 = two.run(400)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(r1, r2)
    np.testing.assert_array_equal(one.min_dist2(), two.min_dist2())
    assert two.stats()["parallel_steps"] > 0 and one.stats()["parallel_steps"] == 0


@pytest.mark.parametrize("c", [3, 24])
def test_exclude_and_take_leave_the_cells(c):
    rng = np.random.default_rng(c)
    x = rng.random((900, c))
    s = _C.KCenterState(x, "float64", False, 1.0, True, 1)
    s.seed_rows(np.array([0, 1]))
    first, _ = s.run(20)
    s.push_row(int(first[-1]))
    banned = np.array([int(s.current_best()[0]), 5, 6, 7])
    s.exclude(banned)
    s.take(8)
    rest, _ = s.run(300)
    assert not set(rest.tolist()) & (set(banned.tolist()) | {8})
    # the same as a state that never had those rows: replay in NumPy
    want = numpy_greedy_excluding(x, [0, 1], list(first) , set(banned.tolist()) | {8}, 300)
    np.testing.assert_array_equal(rest, want)


@pytest.mark.parametrize("c", [3, 9, 24])
@pytest.mark.parametrize("quantised", [False, True])
def test_rows_pushed_from_inside_a_cell_leave_it(c, quantised, cell_steps_only):
    # a cell keeps its rows sorted by running minimum and a step reads only
    # the rows in reach (a suffix of each cell): rows pushed by the caller
    # (not the farthest of their cell) and rows excluded from the middle of a
    # cell must leave it without disturbing the order of the others
    rng = np.random.default_rng(c)
    x = quantised_rows(800, c, c) if quantised else rng.random((800, c))
    states = [_C.KCenterState(x, "float64", False, 1.0, prune, 1) for prune in (True, False)]
    for s in states:
        s.seed_rows(np.array([0, 1]))
    results = []
    for s in states:
        out = [s.run(30)[0]]
        for i in (400, 17, 633, 250):  # eligible rows, not the farthest
            s.push_row(i)
        s.exclude(np.array([5, 6, 300, 301]))
        out.append(s.run(200)[0])
        results.append((out, s.min_dist2()))
    (cells, cm), (dense, dm) = results
    for a, b in zip(cells, dense):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(cm, dm)
    assert states[0].stats()["cell_steps"] > 200


@pytest.mark.parametrize("mode", ["cells", "pruned-dense", "default", "projection"])
@pytest.mark.parametrize("dtype,huge", [("bfloat16", 1e25), ("float32", 1e25), ("float64", 1e160)])
@pytest.mark.parametrize("labeled", [[], [0, 1]])
def test_overflowing_distances_keep_the_unpruned_picks(dtype, huge, labeled, mode, monkeypatch):
    # rows this large have squared distances that overflow to +inf in the
    # accumulation type (select rescales such pools first; the kernel itself
    # must still be exact on them): an infinite running minimum is never
    # pruned, a cell or center whose reach is infinite is always visited, and
    # a row whose every distance is +inf still gets a nearest center (the
    # lowest), so the pruned runs give the unpruned picks, radii and minima
    monkeypatch.setenv("PCORESET_CELL_VISIT", {"cells": "1", "pruned-dense": "0"}.get(mode, ""))
    monkeypatch.setenv("PCORESET_PROJECTION", "1" if mode == "projection" else "")
    rng = np.random.default_rng(len(labeled))
    for c in (3, 24):
        x = rng.random((500, c))
        x[rng.random(500) < 0.6] *= huge  # a mix: finite and infinite distances
        x[100:140] = x[100]  # exact duplicates among them
        arr, _ = stored(x, dtype)
        out = []
        for prune in (True, False):
            s = _C.KCenterState(arr, dtype, False, 1.0, prune, 1)
            if labeled:
                s.seed_rows(np.array(labeled))
            p, r = s.run(300)
            out.append((p, r, s.min_dist2()))
        assert np.isinf(out[1][1]).any() and np.isfinite(out[1][1]).any()
        for a, b in zip(*out):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [1, 7, 8, 9, 33])
def test_rows_values_are_the_stored_values(dtype, c):
    # the start's search reads rows through rows_values: exactly the stored
    # values in the accumulation type (float16 through vcvtph2ps in the AVX2
    # build: subnormals, signed zeros and the largest halves included)
    rng = np.random.default_rng(c)
    x = rng.random((50, c)) * rng.choice([1e-7, 1e-5, 1.0, 6e4], size=(50, 1))
    x[rng.random((50, c)) < 0.2] *= -1
    x[3] = -0.0
    arr, want = stored(x, dtype)
    s = _C.KCenterState(arr, dtype, False, 1.0, True, 1)
    rows = np.array([0, 3, 49, 17, 3], dtype=np.int64)
    got = s.rows_values(rows)
    assert got.dtype == (np.float64 if dtype == "float64" else np.float32)
    acc = want[rows].astype(got.dtype)
    np.testing.assert_array_equal(got.view(np.uint64 if dtype == "float64" else np.uint32),
                                  acc.view(np.uint64 if dtype == "float64" else np.uint32))


def same_run_each_way(x, labeled, budget, ways):
    """Run a float32 state seeded with `labeled` for `budget` picks each
    (threads, prune) way; assert that picks, radii and running minimum are
    the same bits every way, and return each way's stats."""
    out = []
    for threads, prune in ways:
        s = _C.KCenterState(x, "float32", False, 1.0, prune, threads)
        s.seed_rows(labeled)
        p, r = s.run(budget)
        out.append((p, r, s.min_dist2(), s.stats()))
    for p, r, m, _ in out[1:]:
        np.testing.assert_array_equal(p, out[0][0])
        np.testing.assert_array_equal(r, out[0][1])
        np.testing.assert_array_equal(m, out[0][2])
    return [st for *_, st in out]


def test_long_row_cell_steps_on_two_threads_equal_one(cell_steps_only):
    # over long rows a step computes its rows and its window's candidate
    # centers on the team from 2^18 values (here: C = 1000, a few hundred
    # rows or centers); the result must not depend on the threads
    rng = np.random.default_rng(3)
    z = rng.normal(0, 1.0, size=(8, 1000))[rng.integers(0, 8, size=3000)] + rng.normal(0, 1.0, size=(3000, 1000))
    x = np.exp(z - z.max(1, keepdims=True))
    x = (x / x.sum(1, keepdims=True)).astype(np.float32)
    one, two = same_run_each_way(x, np.arange(0, 3000, 5), 120, ((1, True), (2, True), (1, False)))[:2]
    assert two["parallel_steps"] > 0 and one["parallel_steps"] == 0
    assert two["cell_steps"] >= 119 and two["center_dists"] == one["center_dists"]
    # no cell holds much of a step's rows here: every step went cell by cell
    assert one["row_sorted_steps"] == 0 and two["row_sorted_steps"] == 0


def test_a_dominant_cell_is_computed_in_row_order_on_two_threads(cell_steps_only):
    # over long rows an in-memory pool's step goes cell by cell, a group of
    # cells per work item, unless one cell holds much of the step's rows
    # (one big cluster beside many small ones, here): then its rows are
    # computed in pool order, spread evenly over the threads. Both passes
    # run in one selection and give the picks of one thread and of the
    # unpruned pass.
    rng = np.random.default_rng(3)
    sizes = [4000] + [20] * 59
    z = rng.normal(0, 1.0, size=(60, 64))[np.repeat(np.arange(60), sizes)] + rng.normal(0, 1.0, size=(sum(sizes), 64))
    x = np.exp(z - z.max(1, keepdims=True))
    x = (x / x.sum(1, keepdims=True)).astype(np.float32)
    two, one = same_run_each_way(x, np.r_[0, np.cumsum(sizes)[:-1]], 150, ((2, True), (1, True), (1, False)))[:2]
    assert two["cell_steps"] >= 149 and two["parallel_steps"] > 0
    assert 0 < two["row_sorted_steps"] < two["cell_steps"]
    assert one["row_sorted_steps"] == 0  # one thread: always cell by cell


def numpy_greedy_excluding(x, labeled, done, banned, budget):
    mind = np.full(len(x), np.inf)
    taken = np.zeros(len(x), bool)
    for i in list(labeled) + [int(p) for p in done]:
        mind = np.minimum(mind, ((x - x[i]) ** 2).sum(1))
        taken[i] = True
    taken[list(banned)] = True
    out = []
    for _ in range(budget):
        p = int(np.argmax(np.where(taken, -1, mind)))
        out.append(p)
        taken[p] = True
        mind = np.minimum(mind, ((x - x[p]) ** 2).sum(1))
    return np.array(out)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_export_and_load_state_continue_exactly(dtype):
    rng = np.random.default_rng(9)
    arr, _ = stored(rng.dirichlet(np.ones(12), size=800), dtype)
    a = _C.KCenterState(arr, dtype, False, 1.0, True, 1)
    a.seed_vectors(rng.dirichlet(np.ones(12), size=3))
    head, _ = a.run(50)
    a.push_row(int(head[-1]))
    mind, nearest, centers = a.export_state()
    assert centers.shape == (a.num_centers, 12) and a.num_centers == 3 + 50
    assert np.all(mind[head] == -1)
    b = _C.KCenterState(arr, dtype, False, 1.0, True, 1)
    b.load_state(mind, nearest, centers)
    np.testing.assert_array_equal(b.min_dist2(), a.min_dist2())
    pa, ra = a.run(60)
    pb, rb = b.run(60)
    np.testing.assert_array_equal(pa, pb)
    np.testing.assert_array_equal(ra, rb)
    with pytest.raises(ValueError, match="nearest\\[0\\]=99 is not a center"):
        b.load_state(mind, np.full(800, 99), centers)


def test_thread_rule_has_one_home():
    # pcoreset._threads asks the kernel's rule; a requested count is kept
    from pcoreset import _threads
    assert _threads._available_threads is _C.available_threads
    assert _threads.available(3) == 3 == _C.available_threads(3)
    cpus = len(__import__("os").sched_getaffinity(0))
    assert 1 <= _threads.available() <= cpus and 1 <= _C.available_threads() <= cpus


def _cgroup_tree(root, files):
    for rel, text in files.items():
        f = root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    return str(root)


@pytest.mark.parametrize("proc, v2, v1, want", [
    # cgroup v2: the tightest cpu.max over the path and its ancestors
    ("0::/a/b\n", {"a/b/cpu.max": "max 100000\n", "a/cpu.max": "250000 100000\n"}, {}, 3),
    ("0::/a/b\n", {"a/b/cpu.max": "50000 100000\n", "a/cpu.max": "250000 100000\n"}, {}, 1),
    ("0::/\n", {"cpu.max": "max 100000\n"}, {}, 0),
    ("0::/\n", {"cpu.max": "400000 100000\n"}, {}, 4),
    # cgroup v1: the cpu controller's hierarchy, quota / period rounded up
    ("4:cpu,cpuacct:/job\n3:memory:/x\n", {}, {"job/cpu.cfs_quota_us": "150000\n", "job/cpu.cfs_period_us": "100000\n"}, 2),
    ("4:cpu,cpuacct:/job\n", {}, {"job/cpu.cfs_quota_us": "-1\n", "job/cpu.cfs_period_us": "100000\n"}, 0),
    # a container whose own cgroup is the mount's root: its path is not under the mount
    ("4:cpu:/docker/abc\n", {}, {"cpu.cfs_quota_us": "200000\n", "cpu.cfs_period_us": "100000\n"}, 2),
    # both hierarchies: the tighter counts; a controller list that only contains "cpu" as a prefix does not
    ("0::/s\n1:cpu:/\n", {"s/cpu.max": "200000 100000\n"}, {"cpu.cfs_quota_us": "600000\n", "cpu.cfs_period_us": "100000\n"}, 2),
    ("1:cpuset:/\n", {}, {"cpu.cfs_quota_us": "100000\n", "cpu.cfs_period_us": "100000\n"}, 0),
    ("garbage\n\n0::\n", {}, {}, 0),
])
def test_cgroup_cpu_quota_limits_the_cores(tmp_path, proc, v2, v1, want):
    """A container's CPU quota caps the cores the thread rule counts: 64
    visible CPUs under a 2-CPU quota run 2 threads at a time."""
    r2 = _cgroup_tree(tmp_path / "v2", v2)
    r1 = _cgroup_tree(tmp_path / "v1", v1)
    (tmp_path / "v2").mkdir(exist_ok=True), (tmp_path / "v1").mkdir(exist_ok=True)
    assert _C.cgroup_cpu_quota(proc, r2, r1) == want


def test_cores_are_the_kernels_and_at_most_the_affinity():
    from pcoreset import _threads
    cpus = len(__import__("os").sched_getaffinity(0))
    assert _threads.cores() == _C.cpu_cores()
    assert 1 <= _C.cpu_cores() <= cpus
    assert _C.available_threads() <= _C.cpu_cores()


@pytest.mark.parametrize("script, want", [
    # the first reading counts as it is; readings are reused for 50 ms
    ([(0, 1), (49, 2)], [(1, True), (1, False)]),
    ([(0, 2), (49, 1)], [(2, True), (2, False)]),
    # a higher reading counts at once
    ([(0, 1), (50, 2)], [(1, True), (2, True)]),
    # a lower one only when a second reading, 3 ms later, agrees
    ([(0, 2), (50, 1), (52, 1), (53, 1), (60, 2)], [(2, True), (2, True), (2, False), (1, True), (1, False)]),
    # a lower reading that the next one contradicts is dismissed
    ([(0, 2), (50, 1), (53, 2), (60, 1), (103, 1), (106, 1)],
     [(2, True), (2, True), (2, True), (2, False), (2, True), (1, True)]),
    # readings are capped by the policy's maximum and floored at one thread
    ([(0, 8), (50, 0), (53, 0)], [(2, True), (2, True), (1, True)]),
])
def test_kernel_thread_rule_confirms_a_lower_count(script, want):
    """The kernel's adaptive thread rule between steps, over a scripted clock
    and readings: (threads it gives, whether it took a reading)."""
    assert _C._thread_rule_script(2, script) == want


@pytest.mark.parametrize("readings, want, calls", [([4], 4, 1), ([1, 4], 4, 2), ([1, 1], 1, 2), ([2, 3], 3, 2)])
def test_a_low_thread_reading_is_taken_again(monkeypatch, readings, want, calls):
    """A reading below the cores is read again and the larger count kept: a
    moment's blip does not put a whole phase on one thread, a busy machine
    (low at both readings) still does."""
    from pcoreset import _threads
    seen = []
    monkeypatch.setattr(_threads, "cores", lambda: 4)
    monkeypatch.setattr(_threads, "CONFIRM", 0.0)
    monkeypatch.setattr(_threads, "_available_threads", lambda req: seen.append(req) or readings[len(seen) - 1])
    assert _threads.available() == want
    assert len(seen) == calls
    assert _threads.available(2) == 2 and len(seen) == calls  # a requested count reads nothing


# ------------------------------------------------------------ degenerate pools


def degenerate_pool(kind, n, c, seed=0):
    """(rows, labeled) of the pools where pruning once fell off a cliff: many
    rows at distance 0 from each other or from a center."""
    rng = np.random.default_rng(seed)
    if kind == "identical":
        return np.full((n, c), 1.0 / c), np.array([2, 5, 9])
    if kind == "few-distinct":  # a handful of rows repeated, no labeled row among them
        base = rng.dirichlet(np.ones(c), size=5)
        return base[rng.integers(0, 5, size=n)], np.zeros(0, np.int64)
    if kind == "one-hot":  # 90% exact one-hot duplicates, the rest spread
        x = rng.dirichlet(np.ones(c), size=n)
        hot = rng.random(n) < 0.9
        x[hot] = np.eye(c)[rng.integers(0, c, size=int(hot.sum()))]
        return x, np.array([0, 1])
    if kind == "copies-of-labeled":  # most rows at distance 0 from a labeled row
        x = rng.dirichlet(np.ones(c), size=n)
        lab = np.array([0, 1, 2])
        copy = rng.random(n) < 0.7
        x[copy] = x[lab[rng.integers(0, 3, size=int(copy.sum()))]]
        x[lab] = x[lab]  # the labeled rows themselves are unchanged
        return x, lab
    raise ValueError(kind)


DEGENERATE = ["identical", "few-distinct", "one-hot", "copies-of-labeled"]


@pytest.mark.parametrize("mode", ["default", "cells", "pruned-dense", "cost-model"])
@pytest.mark.parametrize("c", [3, 12, 16, 17, 40])
@pytest.mark.parametrize("kind", DEGENERATE)
def test_degenerate_pools_give_the_picks_of_the_dense_pass(kind, c, mode, monkeypatch):
    # rows at distance 0 sit apart in their cells: never visited, dropped
    # lazily when picked, taken or excluded; every mode gives the picks,
    # radii and running minimum of prune=False, ties (all of them) included
    limit = {"cells": "1", "pruned-dense": "0", "cost-model": "0.15"}.get(mode)
    if limit is not None:
        monkeypatch.setenv("PCORESET_CELL_VISIT", limit)
    x64, lab = degenerate_pool(kind, 500, c, seed=c)
    for dtype in ("float32", "float64"):
        arr, _ = stored(x64, dtype)
        dense = _C.KCenterState(arr, dtype, False, 1.0, False, 1)
        pruned = _C.KCenterState(arr, dtype, False, 1.0, True, 1)
        for s in (dense, pruned):
            if lab.size:
                s.seed_rows(lab)
        pd, rd = dense.run(120)
        pp, rp = pruned.run(120)
        np.testing.assert_array_equal(pp, pd)
        np.testing.assert_array_equal(rp, rd)
        np.testing.assert_array_equal(pruned.min_dist2(), dense.min_dist2())
        # rows leave by exclude and take too, zero-distance ones included
        zero = np.flatnonzero(dense.min_dist2() == 0)
        zero = zero[~np.isin(zero, np.concatenate([lab, pd]))]
        gone = np.unique(np.concatenate([zero[:3], zero[-2:], [int(dense.current_best()[0])]]))
        for s in (dense, pruned):
            s.exclude(gone)
            s.take(int(zero[5]) if zero.size > 5 and zero[5] not in gone else int(gone[0]))
        np.testing.assert_array_equal(pruned.current_best(), dense.current_best())
        np.testing.assert_array_equal(pruned.run(150)[0], dense.run(150)[0])
        np.testing.assert_array_equal(pruned.min_dist2(), dense.min_dist2())
        st = pruned.stats()
        if kind == "identical" and mode in ("default", "cells"):
            # every cell holds rows at distance 0 only: no step visits one
            assert st["cells_visited"] == 0 and st["rows_visited"] == 0 and st["cell_builds"] == 1
        if mode == "default":
            # the cost model does not churn between the two steps: the kind
            # not running fades back to its prior over tens of steps, and a
            # return to the cells after a short stretch of them doubles the
            # dense steps required before the next (8, 16, 32, ...). The
            # model follows timings, so the bound leaves room for noise: on
            # a quiet machine these 270 steps build the cells 1-3 times,
            # under AddressSanitizer beside two busy processes up to 4
            assert st["cell_builds"] <= 6


def test_zero_distance_rows_in_parallel_cell_steps(cell_steps_only):
    # steps over more than 32768 rows run in parallel work items; rows that
    # move to the new center at distance 0 (its copies) join its zero part
    rng = np.random.default_rng(3)
    base = rng.dirichlet(np.ones(6), size=40).astype(np.float32)
    x = np.ascontiguousarray(base[rng.integers(0, 40, size=80_000)])
    one = _C.KCenterState(x, "float32", False, 1.0, True, 1)
    two = _C.KCenterState(x, "float32", False, 1.0, True, 2)
    dense = _C.KCenterState(x, "float32", False, 1.0, False, 1)
    want = dense.run(60)
    for s in (one, two):
        got = s.run(60)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(s.min_dist2(), dense.min_dist2())
    assert two.stats()["parallel_steps"] > 0


def test_load_state_on_a_pool_of_copies_rebuilds_the_index():
    x = np.repeat(np.random.default_rng(4).dirichlet(np.ones(20), size=4), 200, axis=0)
    a = _C.KCenterState(x, "float64", False, 1.0, True, 1)
    a.seed_rows(np.array([0]))
    a.run(30)
    b = _C.KCenterState(x, "float64", False, 1.0, True, 1)
    b.load_state(*a.export_state())
    b.run(5)  # cells built over the loaded centers
    b.load_state(*a.export_state())  # centers replaced: the anchor index starts over
    np.testing.assert_array_equal(b.run(100)[0], a.run(100)[0])


@pytest.mark.parametrize("limit", ["1", "0", None])
@pytest.mark.parametrize("c", [3, 40])
def test_bound_counters(c, limit, monkeypatch):
    # rows_eligible counts the rows that could still be picked at each step;
    # rows_in_reach those no cell or center bound ruled out whole; the row
    # bound rules out rows_in_reach - rows_computed (the picked row aside)
    if limit is not None:
        monkeypatch.setenv("PCORESET_CELL_VISIT", limit)
    x = np.random.default_rng(c).random((700, c))
    s = _C.KCenterState(x, "float64", False, 1.0, True, 1)
    s.seed_rows(np.array([3, 99, 500]))
    s.run(150)
    st = s.stats()
    assert st["rows_eligible"] == sum(700 - 4 - t for t in range(149))
    # a cell step's reach includes the picked row (it leaves its cell)
    assert st["rows_computed"] <= st["rows_in_reach"] <= st["rows_eligible"] + 149
    d = _C.KCenterState(x, "float64", False, 1.0, False, 1)
    d.seed_rows(np.array([3, 99, 500]))
    d.run(150)
    assert d.stats()["rows_in_reach"] == 149 * 700  # no pruning: every row in reach


def upper_state_clear():
    state = _C._upper_vector_state()
    if state < 0:
        pytest.skip("this CPU cannot report its vector register state (XGETBV ECX=1)")
    return state == 0


@pytest.mark.parametrize("c", [3, 100])
def test_kernel_calls_return_with_the_vector_state_clear(c, cell_steps_only):
    # The caller's SSE code (NumPy, the interpreter) is about 10x slower
    # while the upper halves of the vector registers are dirty: every call
    # into the kernel, and every progress callback it makes, leaves them clear.
    import pcoreset

    x = np.random.default_rng(c).dirichlet(np.ones(c), size=3000).astype(np.float32)
    seen = []
    sel = pcoreset.Selector(x, np.arange(0, 3000, 150), backend="cpu", num_threads=2)
    assert upper_state_clear()
    sel.next(40)
    assert sel._state.stats()["cell_steps"] > 0
    assert upper_state_clear()
    pcoreset.select(x, np.arange(0, 3000, 150), 40, backend="cpu",
                    progress=lambda done: seen.append(_C._upper_vector_state()))
    assert upper_state_clear()
    assert seen and all(s == 0 for s in seen)
    sel.add_centers(np.arange(1, 3000, 97))
    assert upper_state_clear()
    sel.next(5)
    state = sel.state_dict()
    assert upper_state_clear()
    pcoreset.Selector.from_state_dict(x, state).next(5)
    assert upper_state_clear()
    pcoreset.kcenter_greedy(x.astype(np.float64), [0], 60, num_threads=1)
    assert upper_state_clear()


def _pruned_against_dense(arr, dtype, steps, seed=(0,), vectors=None, logits=False, temperature=1.0,
                          basis=None, **kw):
    """A pruned and a dense (prune=False) state from the same start (the
    rows `seed`, or the center `vectors`; the pruned one with the
    projection `basis` if given), run `steps` steps each: asserts the same
    picks, radii and running minimum, and returns the pruned state (for its
    stats) and its picks."""
    dense = _C.KCenterState(arr, dtype, logits, temperature, False, 1, **kw)
    pruned = _C.KCenterState(arr, dtype, logits, temperature, True, 1, **kw)
    if basis is not None:
        pruned.set_projection(basis)
    for s in (dense, pruned):
        if vectors is not None:
            s.seed_vectors(vectors)
        elif len(seed):
            s.seed_rows(np.asarray(seed))
    pd, rd = dense.run(steps)
    pp, rp = pruned.run(steps)
    np.testing.assert_array_equal(pp, pd)
    np.testing.assert_array_equal(rp, rd)
    np.testing.assert_array_equal(pruned.min_dist2(), dense.min_dist2())
    return pruned, pp


@pytest.mark.parametrize("mode", ["cells", "pruned-dense"])
@pytest.mark.parametrize("dtype,scale", [("float32", 1e-20), ("float64", 1e-160)])
@pytest.mark.parametrize("c", [1, 3, 20])
def test_squared_distances_near_the_subnormal_range_prune_exactly(c, dtype, scale, mode, monkeypatch):
    # rows a tiny distance apart (squared distances below the normal range,
    # where every square and sum rounds to a multiple of the smallest
    # subnormal): the relative slack alone skipped rows that move (float32
    # c = 1, float64 c = 1 and 3 differed from the dense pass). Also rows of
    # a confident model: one-hot, apart only in values near 1e-20.
    monkeypatch.setenv("PCORESET_CELL_VISIT", "1" if mode == "cells" else "0")
    rng = np.random.default_rng(40 + c)
    tiny = rng.random((3000, c)) * scale
    hot = np.zeros((3000, c))
    hot[np.arange(3000), rng.integers(0, c, 3000)] = 1.0
    for x in (tiny, hot + tiny):
        pruned, pp = _pruned_against_dense(np.ascontiguousarray(x, dtype=dtype), dtype, 500)
        if x is tiny:  # (c = 1 one-hot rows are all equal: no step to prune)
            st = pruned.stats()
            assert st["cell_steps" if mode == "cells" else "dense_steps"] >= len(pp) - 2


def _few_dims_pool(case, c):
    rng = np.random.default_rng(40 + c)
    if case == "duplicates":  # 60 distinct rows, each repeated
        return rng.random((60, c))[rng.integers(0, 60, 6000)]
    if case == "clustered":  # dense clumps and empty space between them
        return (rng.random((8, c))[rng.integers(0, 8, 6000)] + 1e-3 * rng.standard_normal((6000, c)))
    x = rng.random((6000, c))
    if case == "huge":  # squared distances overflow float32: the grid's reach is infinite
        return x * 1e19
    if case == "tiny":  # squared distances below float32's normal range
        return x * 1e-20
    if case == "outliers":  # a few rows a million times farther out than the rest
        x[1:6] *= 1e6
    return x


@pytest.mark.parametrize("c", [1, 2, 3])
@pytest.mark.parametrize("case", ["uniform", "outside", "duplicates", "clustered", "outliers", "huge", "tiny",
                                  "long-run"])
def test_grid_steps_in_few_dimensions_give_the_bits_of_dense_passes(c, case, cell_steps_only):
    # rows of at most 3 values find the cells a step changes through a grid
    # over the centers: centers outside the rows' range, far outliers, an
    # infinite reach (every center), tiny radii, many centers per bucket,
    # and a run long enough to rebuild the grid finer several times
    x = _few_dims_pool(case, c)
    if case == "long-run":
        x = np.random.default_rng(c).random((30_000, c))
    arr = np.ascontiguousarray(x, dtype=np.float32)
    steps = 4000 if case == "long-run" else 700
    # (outside: centers far from every row, on both sides)
    outside = np.array([[5.0] * c, [-3.0] * c, [0.5] * c]) if case == "outside" else None
    cells, pc = _pruned_against_dense(arr, "float32", steps, vectors=outside)
    st = cells.stats()
    assert st["cell_steps"] >= len(pc) - 2 and st["cell_switches"] == 0
    if case in ("uniform", "outliers", "long-run"):  # the grid measures few centers a step
        assert st["center_dists"] < 200 * st["cell_steps"]


@pytest.mark.parametrize("c", [3, 20])
@pytest.mark.parametrize("quantised", [False, True])
def test_large_new_cells_are_sorted_exactly(c, quantised, cell_steps_only):
    # One labeled row: the first steps gather new cells of thousands of rows
    # (sorted by the wide-digit radix pass), later ones of tens to hundreds
    # (the narrow one); a cell out of order would visit the wrong rows.
    n = 24000
    x = quantised_rows(n, c, 11) if quantised else np.random.default_rng(c).random((n, c))
    cells, _ = _pruned_against_dense(np.ascontiguousarray(x, dtype=np.float32), "float32", 400)
    assert cells.stats()["cell_steps"] >= 398

"""pcoreset.distributed on gloo: 2- and 3-process groups on the CPU.

Each world is started once (process start-up dominates the cost) and runs
every case in sequence; the parent compares each rank's picks with
single-process `pcoreset.select` on the concatenated pool. Failure cases
(a killed rank, a hung rank) get worlds of their own.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import signal
import time
import traceback

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import pcoreset
from pcoreset import InvalidInputError, PoolExhaustedError

pytestmark = [
    pytest.mark.distributed,
    pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                       reason="torch.distributed with gloo is not available"),
]

# name: pool (n, c, dtype, from_logits, temperature), labeled global indices,
# budget, labeled_is_global, and the shard sizes for 2 and 3 ranks.
CASES = {
    # no labeled rows: the mean chain crosses shards and splits 4096-row blocks
    "f32_nolab": dict(n=9000, c=37, dtype="float32", labeled=[], budget=25, sizes={2: [1000, 8000], 3: [3000, 0, 6000]}),
    "f16_lab_local": dict(n=9000, c=10, dtype="float16", labeled="every_rank", budget=25, sizes={2: [6000, 3000], 3: [2000, 5000, 2000]}),
    "f64_lab_global": dict(n=5000, c=20, dtype="float64", labeled="every_rank", budget=20, is_global=True, sizes={2: [0, 5000], 3: [2500, 0, 2500]}),
    "bf16_logits_nolab": dict(n=9000, c=16, dtype="bfloat16", from_logits=True, temperature=2.0, labeled=[], budget=20, sizes={2: [4097, 4903], 3: [4096, 1, 4903]}),
    "f32_logits_lab": dict(n=6000, c=50, dtype="float32", from_logits=True, temperature=0.5, labeled="every_rank", budget=30, is_global=True, sizes={2: [100, 5900], 3: [0, 3000, 3000]}),
    "f64_nolab": dict(n=9000, c=8, dtype="float64", labeled=[], budget=20, sizes={2: [8197, 803], 3: [1, 8191, 808]}),
    # the labeled start through GEMM/FAISS candidates + exact refine (local rows and other ranks' rows)
    "f32_lab_candidates": dict(n=6000, c=24, dtype="float32", labeled="every_rank", budget=25, candidates=True, sizes={2: [2500, 3500], 3: [2000, 2000, 2000]}),
    # initial center vectors (centers=): the same on every rank, or broadcast from one rank
    "f32_centers_every_rank": dict(n=6000, c=24, dtype="float32", labeled=[], centers=40, budget=25, sizes={2: [2500, 3500], 3: [2000, 0, 4000]}),
    "f64_centers_from_rank0": dict(n=5000, c=12, dtype="float64", labeled="every_rank", centers=30, centers_from=0, budget=20, sizes={2: [3000, 2000], 3: [0, 2500, 2500]}),
    "f32_centers_candidates": dict(n=6000, c=24, dtype="float32", labeled="every_rank", centers=50, centers_from=1, budget=25, candidates=True, sizes={2: [2500, 3500], 3: [2000, 2000, 2000]}),
    "exhaust": dict(n=50, c=5, dtype="float32", labeled="every_rank", budget=None, sizes={2: [20, 30], 3: [20, 0, 30]}),
    "budget0": dict(n=100, c=5, dtype="float32", labeled=[], budget=0, sizes={2: [50, 50], 3: [0, 50, 50]}),
}


MEAN_CASES = ["f32_nolab", "bf16_logits_nolab", "f64_nolab"]


def _labeled(case, sizes):
    if case["labeled"] != "every_rank":
        return np.asarray(case["labeled"], dtype=np.int64)
    rng = np.random.default_rng(7)
    out, off = [], 0
    for s in sizes:
        if s:
            out.extend((off + rng.choice(s, size=min(s, 4), replace=False)).tolist())
        off += s
    return np.array(sorted(out), dtype=np.int64)


def _pool(case):
    """A clustered pool with exact duplicates across the shard boundaries
    (equal distances: the tie rule decides across ranks)."""
    rng = np.random.default_rng(case["n"] * 31 + case["c"])
    n, c = case["n"], case["c"]
    centers = rng.normal(0.0, 3.0, (6, c))
    logits = centers[rng.integers(0, 6, n)] + rng.normal(0.0, 1.0, (n, c))
    dup = min(40, n // 4)
    logits[n - dup:] = logits[:dup]
    if case.get("from_logits"):
        x = logits
    else:
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        x = e / e.sum(axis=1, keepdims=True)
    if case["dtype"] == "bfloat16":
        return torch.from_numpy(x).to(torch.bfloat16)
    return x.astype(case["dtype"])


@contextlib.contextmanager
def _start_path(case):
    """Force the candidate path of the labeled start for cases that ask for it."""
    from pcoreset import _start

    with _start.force("certified" if case.get("candidates") else None):
        yield


def _budget(case, labeled):
    return case["n"] - labeled.size if case["budget"] is None else case["budget"]


def _centers(case):
    """Center vectors that are not rows: probability rows near the pool's clusters."""
    if not case.get("centers"):
        return None
    x = _pool(dict(case, n=case["centers"] + 7, from_logits=False))
    return np.asarray(x[:case["centers"]], dtype=np.float64)


def _shard(x, sizes, rank):
    off = sum(sizes[:rank])
    return x[off:off + sizes[rank]]


def _init(rank, world, store):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))


def _record(fn):
    try:
        result = fn()
        if isinstance(result, tuple):
            picks, radii = result
            return {"picks": np.asarray(picks).tolist(), "radii": [float(r) for r in np.asarray(radii)]}
        return {"picks": np.asarray(result).tolist()}
    except Exception as exc:  # recorded for the parent to check
        return {"error": type(exc).__name__, "message": str(exc), "trace": traceback.format_exc()}


# Selector cases run with the same calls on one process and on the ranks
PARITY_CASES = ["f32_nolab", "f32_lab_candidates", "f64_lab_global"]


def _parity_calls(make, case, labeled):
    """next, add_centers (over 32 rows: the start's pass; some already
    centers), next, exclude (two picks: every state is rebuilt), next,
    exclude (rows that are not centers), until a radius, next: every pick,
    radius and count, in order."""
    sel = make()
    out = {"picks": [], "radii": [], "counts": []}

    def note(picks, radii=None):
        out["picks"].extend(np.asarray(picks).tolist())
        out["counts"].append([sel.n_available, sel.n_centers])

    a = sel.next(5)
    note(a)
    n = case["n"]
    add = np.unique(np.r_[np.arange(3, n, max(1, n // 40)), labeled[:2], a[:2]])
    sel.add_centers(add)
    note(sel.next(5))
    sel.exclude([int(a[0]), int(a[1]), int(np.setdiff1d(add, labeled)[-1])])
    note(sel.next(5))
    left = np.setdiff1d(np.arange(n), np.r_[labeled, sel.picks, add])
    sel.exclude(left[:7])
    note(sel.next(4))
    radius = float(np.asarray(sel.radii)[-1]) * 0.95
    picks, radii = sel.until(radius, 40)
    note(picks)
    out["until_radii"] = np.asarray(radii).tolist()
    out["radius"] = sel.radius
    note(sel.next(3))
    out["radii"] = np.asarray(sel.radii).tolist()
    out["excluded"] = np.sort(sel.excluded).tolist()
    return out


def _record_parity(fn):
    try:
        return fn()
    except Exception as exc:  # recorded for the parent to check
        return {"error": type(exc).__name__, "message": str(exc), "trace": traceback.format_exc()}



class _Failing:
    """A state whose steps raise (a failure inside a distributed step)."""

    def __init__(self, state, fail):
        self._state, self._fail = state, fail

    def __getattr__(self, name):
        if name in ("push_row", "push_center"):
            return self._fail
        return getattr(self._state, name)


def _cases_worker(rank, world, store, out_dir):
    _init(rank, world, store)
    from pcoreset import distributed as pd

    res = {}
    last = world - 1
    small = np.full((6, 5), 0.2, dtype=np.float32)
    # Errors first: every rank must raise, and the group must stay usable.
    res["mismatch_budget"] = _record(lambda: pd.select(small, [], 2 + rank, timeout=30))
    res["mismatch_c"] = _record(lambda: pd.select(np.full((6, 4 if rank == last else 5), 0.25 if rank == last else 0.2,
                                                          dtype=np.float32), [], 2, timeout=30))
    res["mismatch_dtype"] = _record(lambda: pd.select(small.astype(np.float64 if rank == last else np.float32), [], 2,
                                                      timeout=30))
    bad = small.copy()
    if rank == last:
        bad[3, 1] = np.nan
    res["bad_input"] = _record(lambda: pd.select(bad, [], 2, timeout=30))
    res["global_labeled_differs"] = _record(
        lambda: pd.select(small, [1, 2] if rank == 0 else [1, 3], 2, labeled_is_global=True, timeout=30))
    res["local_labeled_out_of_range"] = _record(lambda: pd.select(small, [6] if rank == last else [], 2, timeout=30))
    res["pool_exhausted"] = _record(lambda: pd.select(small, [0], 6 * world - world + 1, timeout=30))
    ctr = np.full((2, 5), 0.2) + (0.05 * np.eye(2, 5) - 0.05 * np.eye(2, 5, 1) if rank == last else 0.0)
    res["centers_differ"] = _record(lambda: pd.select(small, [], 2, centers=ctr, timeout=30))
    for name, case in CASES.items():
        sizes = case["sizes"][world]
        x = _pool(case)
        labeled = _labeled(case, sizes)
        off = sum(sizes[:rank])
        if case.get("is_global"):
            lab = labeled
        else:
            lab = labeled[(labeled >= off) & (labeled < off + sizes[rank])] - off
        src = case.get("centers_from")
        ctr = _centers(case) if src is None or rank == src else None
        with _start_path(case):
            res[name] = _record(lambda: pd.select(
                _shard(x, sizes, rank), lab, _budget(case, labeled), labeled_is_global=bool(case.get("is_global")),
                centers=ctr, centers_from=src,
                from_logits=bool(case.get("from_logits")), temperature=case.get("temperature", 1.0),
                return_radii=True, num_threads=1, timeout=60))
    # incremental selection: next(a) then next(b) equals one select of a + b
    for name in ("f32_nolab", "f64_centers_from_rank0", "f32_lab_candidates"):
        case = CASES[name]
        sizes = case["sizes"][world]
        x = _pool(case)
        labeled = _labeled(case, sizes)
        off = sum(sizes[:rank])
        lab = labeled[(labeled >= off) & (labeled < off + sizes[rank])] - off
        src = case.get("centers_from")
        ctr = _centers(case) if src is None or rank == src else None

        def incremental():
            sel = pd.Selector(_shard(x, sizes, rank), lab, centers=ctr, centers_from=src, num_threads=1,
                              timeout=60)
            first = sel.next(7)
            rest = sel.next(_budget(case, labeled) - 7)
            assert sel.n_available == sum(sizes) - labeled.size - _budget(case, labeled)
            return np.concatenate([first, rest]), sel.radii

        with _start_path(case):
            res[f"selector_{name}"] = _record(incremental)
        res[f"selector_k_differs_{name}"] = _record(
            lambda: pd.Selector(_shard(x, sizes, rank), lab, centers=ctr, centers_from=src, num_threads=1,
                                timeout=60).next(3 + rank))
    # Selector parity with pcoreset.Selector: add_centers, exclude, until
    for name in PARITY_CASES:
        case = CASES[name]
        sizes = case["sizes"][world]
        x = _pool(case)
        labeled = _labeled(case, sizes)
        off = sum(sizes[:rank])
        lab = labeled[(labeled >= off) & (labeled < off + sizes[rank])] - off
        with _start_path(case):
            res[f"parity_{name}"] = _record_parity(lambda: _parity_calls(
                lambda: pd.Selector(_shard(x, sizes, rank), lab, num_threads=1, timeout=60), case, labeled))
            sel = pd.Selector(_shard(x, sizes, rank), lab, num_threads=1, timeout=60)
            res[f"parity_rows_differ_{name}"] = _record(lambda: sel.add_centers([rank]))
            res[f"parity_exclude_labeled_{name}"] = _record(
                lambda: sel.exclude(labeled[:1]) if labeled.size else sel.exclude([-1]))
    # interruption: a progress callback that raises at the same step on every
    # rank keeps the finished picks; a failure inside a step breaks the Selector
    case = CASES["f32_lab_candidates"]
    sizes = case["sizes"][world]
    x = _pool(case)
    labeled = _labeled(case, sizes)
    off = sum(sizes[:rank])
    lab = labeled[(labeled >= off) & (labeled < off + sizes[rank])] - off
    stop_at = [4]

    def progress(done):
        if done == stop_at[0]:
            raise KeyboardInterrupt("stop")

    def interrupted():
        sel = pd.Selector(_shard(x, sizes, rank), lab, num_threads=1, timeout=60, progress=progress)
        try:
            sel.next(10)
        except KeyboardInterrupt:
            pass
        kept = np.asarray(sel.picks).tolist()
        stop_at[0] = -1
        rest = sel.next(10 - len(kept))
        return {"kept": kept, "picks": kept + np.asarray(rest).tolist(), "n_centers": sel.n_centers}

    res["interrupted"] = _record_parity(interrupted)

    # the pool mean (first pick without labeled rows) must be bit-identical to
    # the kernel's single-process mean_vector, whatever the shard boundaries
    from pcoreset._problem import make_problem

    from pcoreset.distributed import _agree, _comm, _local

    comm = _comm.Comm(None, datetime.timedelta(seconds=60))
    for name in MEAN_CASES:
        case = CASES[name]
        sizes = case["sizes"][world]
        problem = make_problem(_shard(_pool(case), sizes, rank), None, 0, simplex=True,
                               from_logits=bool(case.get("from_logits")), temperature=case.get("temperature", 1.0),
                               prune=True, num_threads=1, progress=None)
        layout = _agree.Layout(np.array(sizes), np.concatenate([[0], np.cumsum(sizes)[:-1]]), case["n"], case["c"],
                            case["dtype"], 1, np.zeros(world, np.int64), 0)
        state = _local.local_state(problem) if sizes[rank] else None
        res[f"mean_{name}"] = _local.global_mean(comm, state, problem, layout).tobytes().hex()
    if world == 2:
        # the CLI entry point on .npy shards, global labeled indices in a text file
        case = CASES["f16_lab_local"]
        sizes = case["sizes"][2]
        x = _pool(case)
        np.save(os.path.join(out_dir, f"shard{rank}.npy"), _shard(x, sizes, rank))
        if rank == 0:
            with open(os.path.join(out_dir, "labeled.txt"), "w") as f:
                f.write("\n".join(str(i) for i in _labeled(case, sizes)))
        dist.barrier()
        args = argparse.Namespace(
            shards=[os.path.join(out_dir, "shard{rank}.npy")], labeled=os.path.join(out_dir, "labeled.txt"),
            budget=case["budget"], from_logits=False, temperature=1.0, out=os.path.join(out_dir, "cli_picks.npy"),
            radii_out=None, dist_backend="gloo", timeout=60.0, threads=1)
        from pcoreset.cli import main_select_distributed

        res["cli"] = _record(lambda: main_select_distributed(args))
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(res, f)
    dist.destroy_process_group()


def _step_fails(pd, x, rank, world, out_dir):
    """The last rank's kernel update raises inside a step: it reports that
    error, the others time out, and every later call is refused."""
    sel = pd.Selector(x, None, num_threads=1, timeout=5)
    sel.next(3)
    if rank == world - 1:
        def fail(*args):
            raise RuntimeError("the kernel failed")
        sel._stepper.state = _Failing(sel._stepper.state, fail)
    errors = []
    for _ in range(2):
        try:
            sel.next(3)
            errors.append(None)
        except Exception as exc:  # noqa: BLE001  (recorded)
            errors.append([type(exc).__name__, str(exc)])
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump({"errors": errors}, f)
    os._exit(0)  # the group is broken; do not wait on it


def _failure_worker(rank, world, store, out_dir, mode):
    _init(rank, world, store)
    from pcoreset import distributed as pd

    case = dict(n=3000, c=10, dtype="float32")
    x = _shard(_pool(case), [1500, 1500], rank)

    def progress(done):
        if rank == 1 and done == 3:
            if mode == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(120)  # hang

    if mode == "step_fails":
        _step_fails(pd, x, rank, world, out_dir)
    t0 = time.perf_counter()
    res = _record(lambda: pd.select(x, [], 50, timeout=3, num_threads=1, progress=progress))
    res["elapsed"] = time.perf_counter() - t0
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(res, f)
    os._exit(0)  # the group is broken; do not wait on it


def _context():
    """forkserver with torch and pcoreset preloaded: each rank starts by a fork
    of one clean server (no OpenMP pool, no pytest state), so only the first
    world pays for importing torch."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "torch.distributed", "numpy", "pcoreset", "pcoreset.distributed"])
    return ctx


def _launch(target, world, tmp_path, extra=(), wait_ranks=None, limit=120.0):
    """Start `world` spawned processes; wait for `wait_ranks` (default all);
    kill whatever is left; return {rank: result}."""
    ctx = _context()
    store = tmp_path / "store"
    procs = [ctx.Process(target=target, args=(r, world, str(store), str(tmp_path)) + tuple(extra))
             for r in range(world)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + limit
    try:
        for r in (range(world) if wait_ranks is None else wait_ranks):
            procs[r].join(max(0.0, deadline - time.monotonic()))
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
            p.join()
    out = {}
    for r in range(world):
        path = tmp_path / f"rank{r}.json"
        if path.exists():
            out[r] = json.loads(path.read_text())
    return out


@pytest.fixture(scope="module", params=[2, 3], ids=["2ranks", "3ranks"])
def world_results(request, tmp_path_factory):
    world = request.param
    tmp = tmp_path_factory.mktemp(f"world{world}")
    results = _launch(_cases_worker, world, tmp)
    assert sorted(results) == list(range(world)), f"ranks did not finish: got results from {sorted(results)}"
    return world, results, tmp


def _reference(case, world):
    sizes = case["sizes"][world]
    assert sum(sizes) == case["n"]
    x = _pool(case)
    labeled = _labeled(case, sizes)
    with _start_path(case):
        picks, radii = pcoreset.select(x, labeled, _budget(case, labeled), centers=_centers(case),
                                       from_logits=bool(case.get("from_logits")),
                                       temperature=case.get("temperature", 1.0), return_radii=True, backend="cpu",
                                       num_threads=1)
    return np.asarray(picks).tolist(), np.asarray(radii).tolist()


@pytest.mark.parametrize("name", list(CASES))
def test_picks_equal_single_process(world_results, name):
    world, results, _ = world_results
    want_picks, want_radii = _reference(CASES[name], world)
    for rank in range(world):
        got = results[rank][name]
        assert "error" not in got, f"rank {rank}: {got.get('trace')}"
        assert got["picks"] == want_picks, f"rank {rank} of {world}"
        assert got["radii"] == want_radii, f"rank {rank} of {world}"


@pytest.mark.parametrize("name", ["f32_nolab", "f64_centers_from_rank0", "f32_lab_candidates"])
def test_selector_next_equals_one_select(world_results, name):
    world, results, _ = world_results
    want_picks, want_radii = _reference(CASES[name], world)
    for rank in range(world):
        got = results[rank][f"selector_{name}"]
        assert "error" not in got, f"rank {rank}: {got.get('trace')}"
        assert got["picks"] == want_picks, f"rank {rank} of {world}"
        assert got["radii"] == want_radii, f"rank {rank} of {world}"
        bad = results[rank][f"selector_k_differs_{name}"]
        assert bad["error"] == "RankMismatchError" and "k differs across ranks" in bad["message"]


@pytest.mark.parametrize("name", MEAN_CASES)
def test_global_mean_is_bit_identical(world_results, name):
    from pcoreset import _C
    from pcoreset._problem import make_problem

    world, results, _ = world_results
    case = CASES[name]
    problem = make_problem(_pool(case), None, 0, simplex=True, from_logits=bool(case.get("from_logits")),
                           temperature=case.get("temperature", 1.0), prune=True, num_threads=1, progress=None)
    want = _C.KCenterState(problem.numpy_view(), problem.dtype, problem.from_logits, problem.temperature,
                           True, 1).mean_vector().tobytes().hex()
    for rank in range(world):
        assert results[rank][f"mean_{name}"] == want, f"rank {rank} of {world}"


def test_no_labeled_first_pick_is_from_the_mean(world_results):
    world, results, _ = world_results
    radii = results[0]["f32_nolab"]["radii"]
    assert radii[0] == float("inf") and all(np.isfinite(radii[1:]))


def test_mismatched_arguments_name_the_ranks(world_results):
    world, results, _ = world_results
    last = world - 1
    for rank in range(world):
        r = results[rank]
        assert r["mismatch_budget"]["error"] == "RankMismatchError"
        msg = r["mismatch_budget"]["message"]
        assert "budget=2 on rank 0" in msg and f"budget={2 + last} on rank {last}" in msg
        assert r["mismatch_c"]["error"] == "RankMismatchError"
        assert f"C=4 on rank {last}" in r["mismatch_c"]["message"]
        assert r["mismatch_dtype"]["error"] == "RankMismatchError"
        assert f"float64 on rank {last}" in r["mismatch_dtype"]["message"]
        assert r["global_labeled_differs"]["error"] == "RankMismatchError"
        assert r["pool_exhausted"]["error"] == PoolExhaustedError.__name__
        assert r["centers_differ"]["error"] == "RankMismatchError"
        assert "centers differ across ranks" in r["centers_differ"]["message"]
        assert "centers_from" in r["centers_differ"]["message"]


def test_bad_input_on_one_rank_fails_every_rank(world_results):
    world, results, _ = world_results
    last = world - 1
    assert results[last]["bad_input"]["error"] == "InvalidInputError"
    assert "row 3" in results[last]["bad_input"]["message"]
    assert "index out of range: 6" in results[last]["local_labeled_out_of_range"]["message"]
    for rank in range(last):
        for name in ("bad_input", "local_labeled_out_of_range"):
            got = results[rank][name]
            assert got["error"] == InvalidInputError.__name__
            assert f"rank {last} rejected its input" in got["message"]


def test_cli_entry_point(world_results):
    world, results, tmp = world_results
    if world != 2:
        pytest.skip("the CLI runs in the 2-rank world only")
    assert results[0]["cli"]["picks"] == 0, results[0]["cli"].get("trace")
    want, _ = _reference(CASES["f16_lab_local"], 2)
    assert np.load(tmp / "cli_picks.npy").tolist() == want


def test_not_initialised_is_a_clear_error():
    from pcoreset import distributed as pd

    if dist.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    with pytest.raises(RuntimeError, match="init_process_group"):
        pd.select(np.full((3, 2), 0.5), [], 1)


@pytest.mark.parametrize("mode", ["kill", "hang"])
def test_failed_rank_surfaces_as_error(tmp_path, mode):
    results = _launch(_failure_worker, 2, tmp_path, extra=(mode,), wait_ranks=[0], limit=60.0)
    assert 0 in results, "the surviving rank did not report"
    got = results[0]
    assert got.get("error") == "RankFailureError", got
    assert "rank 0 of 2" in got["message"] and "step" in got["message"]
    if mode == "hang":
        assert "timeout=3s" in got["message"]
    assert got["elapsed"] < 30.0  # bounded by the 3 s timeout, never a hang


@pytest.mark.parametrize("name", PARITY_CASES)
def test_selector_methods_equal_single_process_selector(world_results, name):
    world, results, _ = world_results
    case = CASES[name]
    sizes = case["sizes"][world]
    x, labeled = _pool(case), _labeled(case, sizes)
    with _start_path(case):
        want = _parity_calls(lambda: pcoreset.Selector(x, labeled, backend="cpu", num_threads=1), case, labeled)
    assert len(want["until_radii"]) < 40  # the radius ended the call, not max_picks
    for rank in range(world):
        got = results[rank][f"parity_{name}"]
        assert "error" not in got, f"rank {rank}: {got.get('trace')}"
        assert got == want, f"rank {rank} of {world}"
        bad = results[rank][f"parity_rows_differ_{name}"]
        assert bad["error"] == "RankMismatchError" and "rows differs across ranks" in bad["message"]
        lab = results[rank][f"parity_exclude_labeled_{name}"]
        assert lab["error"] == "InvalidInputError"
        assert (f"labeled row: {labeled[0]}" if labeled.size else "out of range") in lab["message"]


def test_interrupted_selector_keeps_the_finished_picks(world_results):
    world, results, _ = world_results
    case = CASES["f32_lab_candidates"]
    x, labeled = _pool(case), _labeled(case, case["sizes"][world])
    with _start_path(case):
        want = np.asarray(pcoreset.select(x, labeled, 10, backend="cpu", num_threads=1)).tolist()
    for rank in range(world):
        got = results[rank]["interrupted"]
        assert "error" not in got, f"rank {rank}: {got.get('trace')}"
        assert len(got["kept"]) == 4 and got["picks"] == want, f"rank {rank} of {world}"
        assert got["n_centers"] == labeled.size + 10


def test_failure_inside_a_step_breaks_the_selector(tmp_path):
    results = _launch(_failure_worker, 2, tmp_path, extra=("step_fails",), limit=60.0)
    assert sorted(results) == [0, 1], f"ranks did not report: {sorted(results)}"
    for rank in range(2):
        first, second = results[rank]["errors"]
        assert first is not None and second is not None, f"rank {rank}: {results[rank]}"
        if rank == 1:
            assert first[0] == "RuntimeError" and "the kernel failed" in first[1]
        else:  # the failed rank never answers: the others time out
            assert first[0] == "RankFailureError"
        assert second[0] == "RankFailureError" and "interrupted" in second[1]

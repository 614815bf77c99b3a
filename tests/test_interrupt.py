"""Interruption is transactional: after an exception inside Selector.next /
until (a progress callback that raises, Ctrl-C, an error inside a step), the
Selector equals an uninterrupted selection of the steps that finished: those
picks are reported (with their radii), state_dict() loads, and continuing
gives the sequence of one uninterrupted call. select / kcenter_greedy keep
nothing and leave their inputs unchanged."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

import pcoreset
from pcoreset import Selector
from pcoreset.backends import base as backend_base

BACKENDS = ["cpu", "torch"] + (["faiss"] if pcoreset.backends.get("faiss").unavailable() is None else [])
K = 30


class Stop(Exception):
    """What the progress callbacks raise (any exception, not only Ctrl-C)."""


def pool(n=400, c=6, seed=0, dtype=np.float32):
    x = np.random.default_rng(seed).dirichlet(np.full(c, 0.4), size=n)
    x[n - 20:] = x[:20]  # exact duplicates: ties
    return x.astype(dtype)


def case(backend, seed=0):
    """(pool, picks per call, Selector kwargs). The cpu kernel calls progress
    at most every 100 ms, so its pool makes a run last longer than that."""
    if backend == "cpu":
        return pool(20000, 16, seed), 1500, {"prune": False}
    return pool(seed=seed), 30, {}


class RaiseAt:
    """A progress callback that raises at its `call`-th call, or once
    `done >= t`; `done` of the last call is the number of finished steps.
    Counting calls on the cpu kernel, it sleeps 110 ms per call so that,
    after the first, every step reports."""

    def __init__(self, backend, t=None, call=None, exc=Stop):
        self.t, self.call, self.exc = t, call, exc
        self.sleep = 0.11 if backend == "cpu" and call is not None else 0.0
        self.calls = 0
        self.done = None

    def __call__(self, done):
        self.calls += 1
        self.done = done
        if self.sleep:
            time.sleep(self.sleep)
        if (self.t is not None and done >= self.t) or (self.call is not None and self.calls >= self.call):
            raise self.exc(f"stop at {done}")


def stops(backend, k):
    """Callbacks that raise at many points of a run of k picks."""
    if backend == "cpu":
        return [RaiseAt(backend, call=j) for j in (1, 2, 4)] + [RaiseAt(backend, t=k)]
    return [RaiseAt(backend, t=t) for t in range(1, k + 1)]


def check_equivalent(x, labeled, backend, sel, whole, whole_r, ref_state, k, **kw):
    """sel was interrupted: it must be a prefix of the uninterrupted
    selection `whole` and continue it, itself and through its state_dict."""
    t = len(sel.picks)
    assert 0 <= t <= k
    np.testing.assert_array_equal(sel.picks, whole[:t])
    np.testing.assert_array_equal(sel.radii, whole_r[:t])
    n_lab = 0 if labeled is None else len(labeled)
    assert sel.n_centers == n_lab + t
    assert sel.n_available == x.shape[0] - n_lab - t
    back = Selector.from_state_dict(x, sel.state_dict(), backend=backend, **kw)
    np.testing.assert_array_equal(back.picks, whole[:t])
    sel._problem.progress = None  # continue without the raising callback
    rest = sel.next(k - t)
    np.testing.assert_array_equal(np.concatenate([sel.picks[:t], rest]), whole)
    np.testing.assert_array_equal(sel.radii, whole_r)
    np.testing.assert_array_equal(back.next(k - t), rest)
    np.testing.assert_array_equal(back.radii, whole_r)
    a = sel.state_dict()  # the continued state equals the uninterrupted one
    for key in ("picks", "radii2", "mind", "nearest", "centers"):
        np.testing.assert_array_equal(a[key], ref_state[key], err_msg=key)
    return t


def reference(x, labeled, backend, k, **kw):
    ref = Selector(x, labeled, backend=backend, **kw)
    whole = ref.next(k)
    return whole, ref.radii, ref.state_dict()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("labeled", [None, [3, 150]])
def test_progress_raising_at_every_step_keeps_the_finished_steps(backend, labeled):
    x, k, kw = case(backend)
    whole, whole_r, ref_state = reference(x, labeled, backend, k, **kw)
    seen = set()
    for stop in stops(backend, k):
        sel = Selector(x, labeled, backend=backend, progress=stop, **kw)
        with pytest.raises(Stop):
            sel.next(k)
        got = check_equivalent(x, labeled, backend, sel, whole, whole_r, ref_state, k, **kw)
        assert got == stop.done  # the steps that finished before the callback raised
        seen.add(got)
    if backend == "cpu":
        # The cpu kernel's first report comes after 100 ms of wall time, so
        # where a call-counting stop lands varies from run to run and two of
        # them can land on the same step; what must hold is that the stops
        # cover the middle of the run as well as its end.
        assert k in seen and any(0 < g < k for g in seen), seen
    else:
        assert len(seen) == len(stops(backend, k))  # distinct points of the run


@pytest.mark.parametrize("backend", BACKENDS)
def test_keyboard_interrupt_after_earlier_calls(backend):
    """Interrupted in the second call: the first call's picks and the
    finished steps of the second are all there."""
    x, k, kw = case(backend, seed=1)
    whole, whole_r, ref_state = reference(x, [0], backend, 2 * k, **kw)
    for stop in stops(backend, k)[:3]:
        stop.exc = KeyboardInterrupt
        sel = Selector(x, [0], backend=backend, **kw)
        sel.next(k)
        sel._problem.progress = stop
        with pytest.raises(KeyboardInterrupt):
            sel.next(k)
        assert len(sel.picks) == k + stop.done
        check_equivalent(x, [0], backend, sel, whole, whole_r, ref_state, 2 * k, **kw)


@pytest.mark.parametrize("backend", BACKENDS)
def test_until_interrupted_and_at_its_radius_stop(backend):
    x, k, kw = case(backend, seed=2)
    ref = Selector(x, [4], backend=backend, **kw)
    ref.next(k + 1)
    r = float(ref.radii[k])  # reached after at most k picks
    ref = Selector(x, [4], backend=backend, **kw)
    whole, whole_r = ref.until(r)
    n = len(whole)
    assert 5 < n <= k
    for stop in stops(backend, n):  # the last one raises at the call after the radius stop
        sel = Selector(x, [4], backend=backend, progress=stop, **kw)
        with pytest.raises(Stop):
            sel.until(r)
        got = len(sel.picks)
        assert got == stop.done
        np.testing.assert_array_equal(sel.picks, whole[:got])
        np.testing.assert_array_equal(sel.radii, whole_r[:got])
        assert Selector.from_state_dict(x, sel.state_dict(), backend=backend, **kw).n_centers == 1 + got
        sel._problem.progress = None
        rest, rest_r = sel.until(r)
        np.testing.assert_array_equal(np.concatenate([whole[:got], rest]), whole)
        np.testing.assert_array_equal(sel.radii, whole_r)
        assert sel.radius <= r


@pytest.mark.parametrize("backend", ["torch"] + (["faiss"] if "faiss" in BACKENDS else []))
def test_exception_inside_a_step_rolls_that_step_back(backend, monkeypatch):
    """An error in the middle of a step (here: the m-th distance pass raises)
    leaves the state of the steps before; the pick whose step failed is kept
    as a pick (its radius was known) and becomes a center on the next call."""
    from pcoreset.backends import torch_backend

    x = pool(seed=3)
    whole, whole_r, ref_state = reference(x, [2, 9], backend, K)
    for m in (1, 2, 5, 17, K - 1):
        sel = Selector(x, [2, 9], backend=backend)
        calls = {"n": 0}
        if backend == "torch":
            real = torch_backend._sq_dist

            def failing(*a, real=real, **k):
                calls["n"] += 1
                if calls["n"] == m:
                    raise KeyboardInterrupt
                return real(*a, **k)
            monkeypatch.setattr(torch_backend, "_sq_dist", failing)
        else:
            dist = sel._state.dist
            real = dist.to_rows

            def failing(*a, real=real, **k):
                calls["n"] += 1
                if calls["n"] == m:
                    raise MemoryError("injected")
                return real(*a, **k)
            monkeypatch.setattr(dist, "to_rows", failing)
        with pytest.raises((KeyboardInterrupt, MemoryError)):
            sel.next(K)
        monkeypatch.undo()
        assert len(sel.picks) == m  # m-1 steps done, the m-th pick known, its step undone
        check_equivalent(x, [2, 9], backend, sel, whole, whole_r, ref_state, K)


# (rows, C, threads, labeled, pool on disk): the cpu kernel's cell step passes
CELL_PASSES = {
    "short-rows": (3000, 3, 1, [2, 9], False),
    "short-rows-on-the-team": (120_000, 6, 2, None, False),
    "long-rows-cell-by-cell": (3000, 24, 1, [2, 9], False),
    "long-rows-on-the-team": (20_000, 24, 2, list(range(0, 20_000, 500)), False),
    "long-rows-file-backed": (3000, 24, 1, [2, 9], True),
}


@pytest.mark.parametrize("path", sorted(CELL_PASSES))
def test_allocation_failing_inside_a_cpu_cell_step(path, tmp_path, monkeypatch):
    """std::bad_alloc half way through a cell step of the cpu kernel
    (injected: the picked row has left its cell, and over short rows some
    cells are already updated) reaches Python as MemoryError. The Selector
    keeps that pick as a center whose step is done, and the kernel finishes
    the step before its state is next read: picks, radii, state_dict and
    the continuation equal an uninterrupted selection."""
    n, c, threads, labeled, on_disk = CELL_PASSES[path]
    x = pool(n, c, seed=5)
    if on_disk:  # a memory-mapped pool: the row-sorted pass, pages handed back
        np.save(tmp_path / "pool.npy", x)
        x = np.load(tmp_path / "pool.npy", mmap_mode="r")
    monkeypatch.setenv("PCORESET_CELL_VISIT", "1")  # cell steps only
    kw = {"num_threads": threads}
    whole, whole_r, ref_state = reference(x, labeled, "cpu", K, **kw)
    ref = Selector(x, labeled, backend="cpu", **kw)
    ref.next(K)
    st = ref._state.stats()
    assert st["cell_steps"] >= K - 2
    if threads > 1:
        assert st["parallel_steps"] > 0
    assert (st["row_sorted_steps"] > 0) == on_disk
    for m in (1, 2, 7, K - 2):
        monkeypatch.setenv("PCORESET_FAIL_CELL_STEP", str(m))  # read when the state is made
        sel = Selector(x, labeled, backend="cpu", **kw)
        monkeypatch.delenv("PCORESET_FAIL_CELL_STEP")
        with pytest.raises(MemoryError):
            sel.next(K)
        # the first pick's step is the first cell step, except without
        # labeled rows, where the first center's step is a dense pass
        assert len(sel.picks) == m + (labeled is None)
        check_equivalent(x, labeled, "cpu", sel, whole, whole_r, ref_state, K, **kw)


@pytest.mark.parametrize("backend", ["torch"] + (["faiss"] if "faiss" in BACKENDS else []))
def test_interrupt_inside_the_commit_of_a_step(backend, monkeypatch):
    """Ctrl-C between the writes that commit a step (injected in the undo
    record's store): the step is undone at the next call."""
    x = pool(seed=4)
    whole = Selector(x, [1], backend=backend).next(K)
    sel = Selector(x, [1], backend=backend)
    sel.next(5)
    state = sel._state
    cls = type(state)
    real_setattr = cls.__setattr__
    hits = {"n": 0}

    def setattr_(self, name, value):
        real_setattr(self, name, value)
        # right after the undo record is stored, before the step's writes
        if name == "_undo" and value is not None:
            hits["n"] += 1
            if hits["n"] == 3:
                raise KeyboardInterrupt
    monkeypatch.setattr(cls, "__setattr__", setattr_)
    with pytest.raises(KeyboardInterrupt):
        sel.next(10)
    monkeypatch.undo()
    t = len(sel.picks)
    assert 5 < t <= 15
    np.testing.assert_array_equal(sel.picks, whole[:t])
    np.testing.assert_array_equal(np.concatenate([sel.picks, sel.next(K - t)]), whole)


@pytest.mark.parametrize("backend", BACKENDS)
def test_state_that_cannot_report_its_picks_is_rolled_back(backend, monkeypatch):
    """The documented fallback (a state without last_run): the interrupted
    call keeps no pick, the state is rebuilt, continuing is still exact."""
    x, k, kw = case(backend, seed=5)
    whole = Selector(x, [7], backend=backend, **kw).next(k)
    sel = Selector(x, [7], backend=backend, **kw)
    sel.next(4)
    monkeypatch.setattr(backend_base.RunLog, "result", lambda self: None)
    sel._problem.progress = RaiseAt(backend, t=3, call=2)
    with pytest.raises(Stop):
        sel.next(k - 4)
    monkeypatch.undo()
    sel._problem.progress = None
    assert len(sel.picks) == 4 and sel.n_centers == 5
    np.testing.assert_array_equal(np.concatenate([sel.picks, sel.next(k - 4)]), whole)
    assert Selector.from_state_dict(x, sel.state_dict(), backend=backend, **kw).n_centers == 1 + k


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("api", ["select", "kcenter_greedy"])
def test_select_interrupted_keeps_nothing_and_changes_nothing(backend, api):
    x, k, kw = case(backend, seed=6)
    x_t = torch.from_numpy(x.copy())
    before = x.copy()
    threads = torch.get_num_threads()
    fn = getattr(pcoreset, api)
    for inp in (x, x_t):
        want = fn(inp, [0], k, backend=backend, **kw)
        with pytest.raises(Stop):
            fn(inp, [0], k, backend=backend, progress=RaiseAt(backend, t=2, call=1), **kw)
        with pytest.raises(KeyboardInterrupt):
            fn(inp, [0], k, backend=backend, progress=RaiseAt(backend, t=k, exc=KeyboardInterrupt), **kw)
        np.testing.assert_array_equal(np.asarray(fn(inp, [0], k, backend=backend, **kw)), np.asarray(want))
    np.testing.assert_array_equal(x, before)
    np.testing.assert_array_equal(x_t.numpy(), before)
    assert torch.get_num_threads() == threads


_CHILD = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    from pcoreset import Selector
    backend, n, c, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    x = np.random.default_rng(7).dirichlet(np.full(c, 0.3), size=n).astype(np.float32)
    lab = np.arange(10)
    said = []

    def progress(done):  # the parent sends SIGINT once the run is under way
        if not said:
            said.append(done)
            print("go", flush=True)

    sel = Selector(x, lab, backend=backend, prune=False)
    sel.next(20)
    sel._problem.progress = progress
    interrupted = False
    try:
        sel.next(k)
    except KeyboardInterrupt:
        interrupted = True
    sel._problem.progress = None
    t = len(sel.picks)
    sd = sel.state_dict()
    back = Selector.from_state_dict(x, sd, backend=backend, prune=False)
    rest = sel.next(20 + k - t)
    rest_back = back.next(20 + k - t)
    whole = Selector(x, lab, backend=backend, prune=False)
    ref = whole.next(20 + k)
    print(json.dumps({
        "interrupted": interrupted, "t": t,
        "prefix": bool((sel.picks[:t] == ref[:t]).all()),
        "radii": bool((sel.radii == whole.radii).all()),
        "continued": bool((np.concatenate([sel.picks[:t], rest]) == ref).all()),
        "from_state": bool((rest_back == rest).all()),
    }), flush=True)
""")


@pytest.mark.parametrize("backend,n,c,k", [("cpu", 20000, 16, 12000), ("torch", 4000, 8, 3000)]
                         + ([("faiss", 8000, 8, 6000)] if "faiss" in BACKENDS else []))
def test_real_sigint_in_the_middle_of_next(backend, n, c, k, tmp_path):
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    env = dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(script), backend, str(n), str(c), str(k)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "go"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    res = json.loads(out.strip().splitlines()[-1])
    assert res["interrupted"], res  # the signal landed inside next(k)
    assert 20 < res["t"] < 20 + k, res
    assert res["prefix"] and res["radii"] and res["continued"] and res["from_state"], res


@pytest.mark.parametrize("backend", BACKENDS)
def test_interrupt_before_the_run_begins_records_nothing(backend, monkeypatch):
    """Ctrl-C after the call started but before the state's run began: the
    state's log still holds the run before, which must not be recorded twice."""
    x, k, kw = case(backend, seed=8)
    whole = Selector(x, [3], backend=backend, **kw).next(2 * k)
    for first in (1, k):
        sel = Selector(x, [3], backend=backend, **kw)
        sel.next(first)
        real = backend_base.run_state

        def interrupted(state, *a, **kw_):
            log = a[-1] if a else kw_.get("log")
            if log is not None:
                log.state = state  # as run_state does, then Ctrl-C
            raise KeyboardInterrupt
        monkeypatch.setattr(sys.modules["pcoreset.selector"], "run_state", interrupted)
        with pytest.raises(KeyboardInterrupt):
            sel.next(k)
        monkeypatch.setattr(sys.modules["pcoreset.selector"], "run_state", real)
        assert len(sel.picks) == first and sel.n_centers == 1 + first
        np.testing.assert_array_equal(np.concatenate([sel.picks, sel.next(2 * k - first)]), whole)

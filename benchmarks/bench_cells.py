"""CPU kernel benchmarks (cell steps, threads under load, the exact start,
Selector.next), side by side in one run.

    python -m benchmarks.bench_cells --targets        # every target below, met or not (about 10 minutes)
    python -m benchmarks.bench_cells --targets --only degenerate,3d
    python -m benchmarks.bench_cells                  # the long rows (about 40 minutes)
    python -m benchmarks.bench_cells --only 3d,threads
    python -m benchmarks.bench_cells --quick          # small sizes, minutes

--targets measures each target of the CPU kernel (quiet and beside one
busy-loop process that this script starts and kills by PID, except the
memory and memmap rows), each figure with /proc/loadavg read just before it,
and ends with one table: target, load, measured ratio, goal, met / not met.
The torch running minimum at 1M x 100 is timed as its start plus
--torch-steps steps and extrapolated to the budget (its step costs the same
at every step); the table says so. Target rows (--only with --targets):

  degenerate  pools with many rows at distance 0 (identical rows, a few rows
              repeated, one-hot duplicates, copies of labeled rows; C below
              and above 16): default select against prune=False, same picks
  1m100       N=1M, C=100, L=10k, B=10k against the torch running minimum
  memmap      1M x 1000 float16 .npy memmap (quiet only): seconds and RSS
              beyond the imports at --mm-budget picks (goal: B=10k in 120 s)
  200k100     N=200k, C=100, L=2k, B=1000 against the torch running minimum
  100k1000    N=100k, C=1000 float16, L=1k, B=300 against it (float32)
  gemm        the exact start at 200k x 100, L=2k against one float32 GEMM +
              row minimum of its size (NumPy's BLAS)
  startmem    select's extra peak memory at 1M x 100, L=10k (and 100k with
              --full, about 4 more minutes) against the pool's size (quiet
              only; VmHWM is reset once the pool is built, so the figure is
              select's own peak)
  3d          200k 3-D points, B=20k against fpsample's QuickFPS (median of 3)
  threads     default threads against one, beside 1, 2 and 4 busy processes
  real        a pool a real model produced (written by benchmarks/real_pool.py:
              an ActiveKD text student's probabilities over all WordNet noun
              glosses, N = 74k, C = 25), B = 1000 against the torch running
              minimum (goal 10x, as at 200k x 100)

--projection 0 / 1 turns the kernel's projection bound off / on for every
step (default: its cost model); the bound counters in each target's detail
say what each bound ruled out (cells and centers whole, the row's own
triangle test, the projection bound) and what was computed.

Rows (each figure is measured in its own child process, so that its peak
memory is its own and no allocator state carries over):

  3d        N=200k 3-D points, B=20k: pcoreset.kcenter_greedy (1 thread and
            the default), fpsample's bucket_fps_kdline_sampling (h=7, QuickFPS)
            and fps_sampling, the torch running minimum (the sub-second ones:
            median of 3 runs). The exact-FPS peers
            start from row 0 (fps_sampling honours start_idx=0; QuickFPS picks
            its own first row), so pcoreset gets row 0 as its labeled row and
            its picks are compared with fps_sampling's; every method's order
            is replayed in float64 (worst shortfall against the farthest row).
  1m100     N=1M, C=100 clustered softmax, float32, L=1%, B=10k: pcoreset
            against the torch running minimum (timed at two smaller budgets and
            extrapolated linearly: its step cost does not change) and the
            paper's algorithm (timed at B=1, extrapolated by sum (L + t)).
  memmap    N=1M, C=1000 float16 .npy memmap (written once under --data-dir),
            pcoreset at --mm-budget picks: time, peak RSS (VmHWM, which counts
            the pool's file pages), RSS after the imports.
  200k100   N=200k, C=100, L=2k, B=1000 float32: pcoreset, torch running
            minimum, paper (extrapolated from B=5).
  threads   N=200k 3-D, B=2000: num_threads=1 against the default, with 0, 1,
            2 and 4 busy-loop processes beside it, alternated 3 times each
            (median).
  start     the labeled start at N=1M, C=100, L=10k and 100k (clustered and
            confident pools): select(..., budget=1), time and peak memory
            above the pool; with --baseline-path, the same child run on
            another checkout (e.g. the commit before the exact start).
  selector  N=1M, C=100, L=10k: Selector.next(1) called 1000 times against
            one next(1000) (the per-step cost of the kernel itself).
  costmodel N=200k, C=100, L=2k, B=1000 (quiet only): each step timed with
            cell steps only, dense steps only and the cost model, at 1 and 2
            threads, from the same start; mean step time by the fraction of
            rows a cell step visits (what the cost model weighs).

Every row except `threads`, `start` and `costmodel` is measured on a quiet machine and
again with one busy-loop process that this script starts and stops itself (by
its PID). Prints a header (date, commit, machine, load, OPENBLAS_CORETYPE) and
one table; --json writes every figure.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------ pools

def points_3d(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 3)).astype(np.float32)


def softmax_pool(n: int, c: int, kind: str = "clustered", seed: int = 0, dtype=np.float32,
                 chunk: int = 65536) -> np.ndarray:
    """clustered: softmax of one of 10 centres (scale 4) plus N(0, 2) noise
    (pcoreset.bench.clustered_pool's recipe, built in chunks); confident:
    softmax of 18 one-hot + N(0, 1) (the confident pool of the start's tests)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4.0, size=(10, c)).astype(np.float32)
    out = np.empty((n, c), dtype=dtype)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        if kind == "clustered":
            z = centres[rng.integers(0, 10, size=m)] + rng.normal(0, 2.0, size=(m, c)).astype(np.float32)
        elif kind == "confident":
            z = rng.normal(0, 1.0, size=(m, c)).astype(np.float32)
            z[np.arange(m), rng.integers(0, c, size=m)] += 18.0
        else:
            raise ValueError(f"kind must be 'clustered' or 'confident', got {kind!r}")
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        out[s:s + m] = z
    return out


def labeled_rows(n: int, count: int, seed: int = 1) -> np.ndarray:
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n, size=count, replace=False)).astype(np.int64)


def memmap_pool(path: str, n: int, c: int) -> str:
    """A float16 .npy of the clustered recipe, written once (chunk by chunk)."""
    if os.path.exists(path):
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".part"
    mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(n, c))
    for s in range(0, n, 65536):
        m = min(65536, n - s)
        mm[s:s + m] = softmax_pool(m, c, seed=s + 7, dtype=np.float16)
    mm.flush()
    del mm
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------ children

def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux: clear_refs 5), so that a peak
    read later is that of what ran after this call; False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t, out


def child(spec: dict) -> dict:
    """One measurement; runs in a fresh process (see run_child)."""
    import torch  # noqa: F401  (imported before the RSS baseline, as a user's process would)

    import pcoreset
    from pcoreset import backends as registry
    from pcoreset import bench

    kind = spec["kind"]
    out: dict = {"pcoreset_path": os.path.dirname(os.path.abspath(pcoreset.__file__))}
    if kind in ("pcs3d", "torch3d", "fps_bucket", "fps_plain"):
        x = points_3d(spec["n"])
        b = spec["budget"]
        if kind == "pcs3d":
            t, picks = _timed(pcoreset.kcenter_greedy, x, [0], b - 1, num_threads=spec.get("threads", 0))
            out["stats"] = registry.get("cpu").last_stats
            picks = np.concatenate([[0], picks])
        elif kind == "torch3d":
            t, picks = _timed(bench.torch_running_min, x, np.array([0]), b - 1)
            picks = np.concatenate([[0], picks])
        else:
            import fpsample
            if kind == "fps_bucket":
                t, picks = _timed(fpsample.bucket_fps_kdline_sampling, x, b, h=7, start_idx=0)
            else:
                t, picks = _timed(fpsample.fps_sampling, x, b, start_idx=0)
        out["seconds"] = t
        out["picks"] = np.asarray(picks, dtype=np.int64).tolist() if spec.get("return_picks") else None
        # greedy validity in a float64 replay: each pick's distance to the
        # picks before it within 1e-5 relative of the farthest row's
        x64 = x.astype(np.float64)
        mind = ((x64 - x64[picks[0]]) ** 2).sum(1)
        worst = 0.0
        for p in picks[1:spec.get("check", 2000)]:
            far = mind.max()
            worst = max(worst, (far - mind[p]) / far if far > 0 else 0.0)
            mind = np.minimum(mind, ((x64 - x64[p]) ** 2).sum(1))
        out["shortfall"] = worst
        return out
    if kind in ("pcs", "torch_rm", "paper", "start"):
        n, c, L = spec["n"], spec["c"], spec["labeled"]
        x = softmax_pool(n, c, spec.get("pool", "clustered"))
        lab = labeled_rows(n, L)
        rss0 = _rss_kib("VmRSS")
        if kind == "pcs":
            t, _ = _timed(pcoreset.select, x, lab, spec["budget"], num_threads=spec.get("threads", 0))
            out["stats"] = registry.get("cpu").last_stats
        elif kind == "start":
            t, _ = _timed(pcoreset.select, x, lab, 1)
        elif kind == "torch_rm":
            b1, b2 = spec["b1"], spec["b2"]
            t1, _ = _timed(bench.torch_running_min, x, lab, b1)
            t2, _ = _timed(bench.torch_running_min, x, lab, b2)
            step = (t2 - t1) / (b2 - b1)
            out["measured"] = {str(b1): t1, str(b2): t2}
            t = t2 + step * (spec["budget"] - b2)
        else:  # paper
            pb = spec["measure_budget"]
            tm, _ = _timed(bench.paper_algorithm, x, lab, pb)
            work_small = sum(max(L + s, 1) for s in range(pb))
            work_full = sum(max(L + s, 1) for s in range(spec["budget"]))
            out["measured"] = {str(pb): tm}
            t = tm * work_full / work_small
        out["seconds"] = t
        out["extra_peak_mib"] = (_rss_kib("VmHWM") - rss0) / 1024.0
        out["pool_mib"] = x.nbytes / 2**20
        return out
    if kind == "memmap":
        rss_imports = _rss_kib("VmRSS")
        x = np.load(spec["path"], mmap_mode="r")
        t, _ = _timed(pcoreset.select, x, None, spec["budget"])
        out["stats"] = registry.get("cpu").last_stats
        out["seconds"] = t
        out["rss_after_imports_mib"] = rss_imports / 1024.0
        out["peak_rss_mib"] = _rss_kib("VmHWM") / 1024.0
        out["beyond_imports_mib"] = out["peak_rss_mib"] - out["rss_after_imports_mib"]
        return out
    if kind == "selector":
        n, c, L, k = spec["n"], spec["c"], spec["labeled"], spec["calls"]
        x = softmax_pool(n, c)
        lab = labeled_rows(n, L)
        s = pcoreset.Selector(x, lab)
        t0, _ = _timed(s.next, 1)  # builds the state: the labeled start
        t1 = time.perf_counter()
        for _ in range(k):
            s.next(1)
        t_calls = time.perf_counter() - t1
        s2 = pcoreset.Selector(x, lab)
        s2.next(1)
        t_batch, _ = _timed(s2.next, k)
        out.update(start_seconds=t0, calls_seconds=t_calls, batch_seconds=t_batch,
                   same_picks=bool(np.array_equal(s.picks[1:], s2.picks[1:])))
        out["seconds"] = t_calls
        return out
    if kind in TARGET_CHILDREN:
        return TARGET_CHILDREN[kind](spec, out)
    raise ValueError(f"unknown kind {kind!r}")


def run_child(spec: dict, pythonpath: str | None = None, timeout: float = 7200) -> dict:
    # run as a script (sys.path[0] is then benchmarks/, not the checkout), so
    # that `import pcoreset` finds the checkout named by PYTHONPATH
    env = dict(os.environ)
    env["PYTHONPATH"] = pythonpath or ROOT
    cmd = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)]
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return {"error": (p.stderr.strip().splitlines() or ["no output"])[-1]}


@contextlib.contextmanager
def busy(count: int):
    """count busy-loop processes beside the measurement, stopped by PID."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        time.sleep(0.5 if count else 0)
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()


# ------------------------------------------------------------------ rows

class Table:
    def __init__(self):
        self.rows = []

    def add(self, target: str, method: str, load: str, res: dict, note: str = ""):
        self.rows.append({"target": target, "method": method, "load": load, "result": res, "note": note})
        sec = res.get("seconds")
        cell = f"{sec:.2f}" if sec is not None else res.get("error", "?")
        print(f"| {target} | {method} | {load} | {cell} | {note} |", flush=True)

    def seconds(self, target, method, load):
        for r in self.rows:
            if (r["target"], r["method"], r["load"]) == (target, method, load):
                return r["result"].get("seconds")
        return None


def loads(args):
    return [0, 1] if not args.quiet_only else [0]


def row_3d(t: Table, args):
    n, b = (20_000, 2_000) if args.quick else (200_000, 20_000)
    target = f"3-D N={n:,} B={b:,}"
    for k in loads(args):
        load = "quiet" if k == 0 else f"{k} busy"
        with busy(k):
            ref = None
            for method, spec in (("fpsample fps_sampling", {"kind": "fps_plain"}),
                                 ("fpsample bucket_fps_kdline (h=7)", {"kind": "fps_bucket"}),
                                 ("pcoreset 1 thread", {"kind": "pcs3d", "threads": 1}),
                                 ("pcoreset default threads", {"kind": "pcs3d", "threads": 0}),
                                 ("torch running min", {"kind": "torch3d"})):
                spec.update(n=n, budget=b, return_picks=True)
                res = run_child(spec)
                if spec["kind"] in ("fps_bucket", "pcs3d") and "seconds" in res:
                    # the fast ones: the median of 3 runs (a single sub-second
                    # figure on a shared machine is noise)
                    runs = [res["seconds"]] + [run_child(dict(spec, return_picks=False)).get("seconds", float("nan"))
                                               for _ in range(2)]
                    res["all"] = runs
                    res["seconds"] = statistics.median(runs)
                picks = res.pop("picks", None)
                note = f"float64 replay: worst shortfall {res.get('shortfall', float('nan')):.1e}"
                if "all" in res:
                    note += f"; median of {', '.join(f'{v:.2f}' for v in res['all'])}"
                if picks is not None:
                    if ref is None:
                        ref = picks
                    elif picks[0] != ref[0]:  # QuickFPS chooses its own first row
                        note += f"; starts at row {picks[0]}, not 0"
                    else:
                        same = sum(int(a == c) for a, c in zip(picks, ref))
                        note += f"; same picks as fps_sampling: {same}/{b}"
                t.add(target, method, load, res, note)
        q = t.seconds(target, "fpsample bucket_fps_kdline (h=7)", load)
        for m in ("pcoreset 1 thread", "pcoreset default threads"):
            s = t.seconds(target, m, load)
            if q and s:
                print(f"  {load}: {m} / QuickFPS = {s / q:.2f}x (target <= 2x)", flush=True)


def row_softmax(t: Table, args, key: str):
    if key == "1m100":
        n, c, L, b = (100_000, 100, 1_000, 1_000) if args.quick else (1_000_000, 100, 10_000, 10_000)
        b1, b2, pb = (100, 300, 1) if args.quick else (200, 600, 1)
    else:
        n, c, L, b = (50_000, 100, 500, 300) if args.quick else (200_000, 100, 2_000, 1_000)
        b1, b2, pb = (50, 150, 2) if args.quick else (300, 1000, 5)
    target = f"N={n:,} C={c} L={L:,} B={b:,} f32"
    for k in loads(args):
        load = "quiet" if k == 0 else f"{k} busy"
        with busy(k):
            res = run_child({"kind": "pcs", "n": n, "c": c, "labeled": L, "budget": b})
            st = res.get("stats") or {}
            t.add(target, "pcoreset cpu", load, res,
                  f"cell steps {st.get('cell_steps')}, dense {st.get('dense_steps')}, "
                  f"rows read {st.get('rows_computed', 0) / max(1, st.get('rows_eligible') or st.get('rows_visited', 1)):.3f} of eligible")
            if b2 >= b:
                res = run_child({"kind": "torch_rm", "n": n, "c": c, "labeled": L, "budget": b, "b1": b1, "b2": b})
                t.add(target, "torch running min", load, res, "measured")
            else:
                res = run_child({"kind": "torch_rm", "n": n, "c": c, "labeled": L, "budget": b, "b1": b1, "b2": b2})
                t.add(target, "torch running min", load, res,
                      f"measured at B={b1} and {b2} ({res.get('measured')}), extrapolated linearly")
            if k == 0 or key != "1m100":
                res = run_child({"kind": "paper", "n": n, "c": c, "labeled": L, "budget": b, "measure_budget": pb})
                t.add(target, "paper's algorithm", load, res, f"measured at B={pb}, extrapolated by sum (L + t)")
        s, r = t.seconds(target, "pcoreset cpu", load), t.seconds(target, "torch running min", load)
        if s and r:
            print(f"  {load}: torch running min / pcoreset = {r / s:.1f}x", flush=True)


def row_memmap(t: Table, args):
    n, c = (100_000, 1000) if args.quick else (1_000_000, 1000)
    path = os.path.join(args.data_dir, f"clustered_{n}_{c}_f16.npy")
    t0 = time.perf_counter()
    memmap_pool(path, n, c)
    print(f"  (pool file {path} ready in {time.perf_counter() - t0:.0f} s)", flush=True)
    b = args.mm_budget
    target = f"memmap .npy N={n:,} C={c} f16 B={b:,}"
    for k in loads(args) if args.mm_busy else [0]:
        load = "quiet" if k == 0 else f"{k} busy"
        with busy(k):
            res = run_child({"kind": "memmap", "path": path, "budget": b})
        st = res.get("stats") or {}
        t.add(target, "pcoreset cpu", load, res,
              f"peak RSS {res.get('peak_rss_mib', 0):.0f} MiB, {res.get('beyond_imports_mib', 0):.0f} MiB beyond "
              f"the imports; rows read {st.get('rows_computed', 0) / max(1, st.get('rows_eligible') or st.get('rows_visited', 1)):.3f} of eligible; "
              f"cell steps {st.get('cell_steps')}, dense {st.get('dense_steps')}")


def row_threads(t: Table, args):
    n, b = (50_000, 1_000) if args.quick else (200_000, 2_000)
    target = f"threads 3-D N={n:,} B={b:,}"
    for k in (0, 1, 2, 4):
        load = "quiet" if k == 0 else f"{k} busy"
        times = {1: [], 0: []}
        with busy(k):
            for _ in range(3):
                for nt in (1, 0):
                    res = run_child({"kind": "pcs3d", "n": n, "budget": b, "threads": nt, "check": 50})
                    if "seconds" in res:
                        times[nt].append(res["seconds"])
        one, dflt = statistics.median(times[1] or [float("nan")]), statistics.median(times[0] or [float("nan")])
        t.add(target, "num_threads=1 (median of 3)", load, {"seconds": one, "all": times[1]})
        t.add(target, "default threads (median of 3)", load, {"seconds": dflt, "all": times[0]},
              f"default / 1 thread = {dflt / one:.2f}")


def row_start(t: Table, args):
    n, c = (100_000, 100) if args.quick else (1_000_000, 100)
    sizes = (1_000, 10_000) if args.quick else (10_000, 100_000)
    for L in sizes:
        for pool in ("clustered", "confident"):
            target = f"labeled start N={n:,} C={c} L={L:,} {pool}"
            spec = {"kind": "start", "n": n, "c": c, "labeled": L, "pool": pool}
            res = run_child(spec)
            t.add(target, "pcoreset (this checkout)", "quiet", res,
                  f"extra peak {res.get('extra_peak_mib', 0):.0f} MiB (pool {res.get('pool_mib', 0):.0f} MiB)")
            if args.baseline_path:
                res = run_child(spec, pythonpath=args.baseline_path)
                t.add(target, f"pcoreset at {args.baseline_path}", "quiet", res,
                      f"extra peak {res.get('extra_peak_mib', 0):.0f} MiB")


def row_selector(t: Table, args):
    n, c, L, k = (100_000, 100, 1_000, 300) if args.quick else (1_000_000, 100, 10_000, 1_000)
    target = f"Selector N={n:,} C={c} L={L:,}"
    for q in loads(args):
        load = "quiet" if q == 0 else f"{q} busy"
        with busy(q):
            res = run_child({"kind": "selector", "n": n, "c": c, "labeled": L, "calls": k})
        if "seconds" in res:
            t.add(target, f"next(1) x {k}", load, res,
                  f"next({k}) once: {res['batch_seconds']:.2f} s; overhead "
                  f"{res['calls_seconds'] / res['batch_seconds']:.2f}x; same picks: {res['same_picks']}; "
                  f"start {res['start_seconds']:.2f} s (once)")
        else:
            t.add(target, f"next(1) x {k}", load, res)


def _child_costmodel(spec, out):
    """Per-step times of cell steps only, dense steps only and the cost
    model, at 1 and 2 threads, from one shared state after the labeled
    start (so every mode steps from the same running minimum)."""
    from pcoreset import _C
    x = _pool_for(spec)
    n = spec["n"]
    s = _C.KCenterState(x, "float32", False, 1.0, True, 0)
    s.seed_rows(labeled_rows(n, spec["labeled"]))
    start = s.export_state()
    out["load"] = _loadavg()
    bins = [0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 1.01]
    for mode, env in (("cells", "1"), ("dense", "0"), ("model", None)):
        for th in (1, 2):
            os.environ.pop("PCORESET_CELL_VISIT", None)
            if env is not None:
                os.environ["PCORESET_CELL_VISIT"] = env
            st = _C.KCenterState(x, "float32", False, 1.0, True, th)
            st.load_state(*start)
            best = st.current_best()
            prev = st.stats()
            rows = []
            t0 = time.perf_counter()
            for _ in range(spec["budget"]):
                t = time.perf_counter()
                best = st.push_row(int(best[0]))
                dt = time.perf_counter() - t
                cur = st.stats()
                rows.append((dt, (cur["rows_in_reach"] - prev["rows_in_reach"]) / n))
                prev = cur
            total = time.perf_counter() - t0
            a = np.array(rows[1:])  # the first step builds the cells
            per_bin = {}
            for lo, hi in zip(bins[:-1], bins[1:]):
                m = (a[:, 1] >= lo) & (a[:, 1] < hi)
                if m.any():
                    per_bin[f"{lo:.2f}-{min(hi, 1):.2f}"] = (int(m.sum()), float(a[m, 0].mean() * 1e3))
            out[f"{mode}/{th}"] = {"seconds": total, "dense_steps": prev["dense_steps"],
                                   "cell_steps": prev["cell_steps"], "ms_by_visited_fraction": per_bin}
    os.environ.pop("PCORESET_CELL_VISIT", None)
    out["load_after"] = _loadavg()
    return out


def row_costmodel(t: Table, args):
    n, c, L, b = (50_000, 100, 500, 300) if args.quick else (200_000, 100, 2_000, 1_000)
    res = run_child({"kind": "costmodel", "n": n, "c": c, "labeled": L, "budget": b})
    for key, r in res.items():
        if not isinstance(r, dict):
            continue
        bins = "; ".join(f"visited {k}: {v[0]} steps, {v[1]:.2f} ms" for k, v in r["ms_by_visited_fraction"].items())
        t.add(f"cost model {n // 1000}k x {c} L={L:,} B={b}", key.replace("/", ", threads "), "no busy process",
              {"seconds": r["seconds"]}, f"cell steps {r['cell_steps']}, dense {r['dense_steps']}; {bins} "
              f"[{res.get('load')} -> {res.get('load_after')}]")
    if "error" in res:
        t.add(f"cost model {n // 1000}k x {c}", "-", "quiet", res)


# ------------------------------------------------------------------ targets

def _loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:4])


def degenerate_pool(kind: str, n: int, c: int, seed: int = 0):
    """(rows float32, labeled) of the pools with many rows at distance 0."""
    rng = np.random.default_rng(seed)
    if kind == "identical":
        return np.full((n, c), 1.0 / c, np.float32), np.arange(10)
    if kind == "few-distinct":
        base = rng.dirichlet(np.ones(c), size=5).astype(np.float32)
        return base[rng.integers(0, 5, size=n)], np.arange(3)
    if kind == "one-hot":
        x = rng.dirichlet(np.ones(c), size=n).astype(np.float32)
        hot = rng.random(n) < 0.9
        x[hot] = np.eye(c, dtype=np.float32)[rng.integers(0, c, size=int(hot.sum()))]
        return x, np.arange(10)
    if kind == "copies-of-labeled":
        x = rng.dirichlet(np.ones(c), size=n).astype(np.float32)
        copy = np.flatnonzero(rng.random(n) < 0.7)
        copy = copy[copy >= 10]
        x[copy] = x[rng.integers(0, 10, size=copy.size)]
        return x, np.arange(10)
    raise ValueError(kind)


DEGENERATE = [("identical", 10_000, 20, 5_000), ("identical", 12_000, 20, 7_000), ("identical", 8_000, 48, 6_000),
              ("identical", 10_000, 8, 5_000), ("few-distinct", 20_000, 20, 3_000),
              ("few-distinct", 20_000, 12, 3_000), ("one-hot", 40_000, 20, 2_000), ("one-hot", 40_000, 100, 1_000),
              ("copies-of-labeled", 20_000, 40, 2_000), ("copies-of-labeled", 20_000, 10, 2_000)]


def _child_degenerate(spec, out):
    import pcoreset
    x, lab = degenerate_pool(spec["pool"], spec["n"], spec["c"])
    out["load"] = _loadavg()
    tp, pp = _timed(pcoreset.select, x, lab, spec["budget"], backend="cpu")
    td, pd = _timed(pcoreset.select, x, lab, spec["budget"], backend="cpu", prune=False)
    out.update(seconds=tp, dense_seconds=td, ratio=tp / td, same_picks=bool(np.array_equal(pp, pd)))
    return out


def _child_median3(spec, out):
    """3-D points, 3 runs of one method in this process (median)."""
    import pcoreset
    x = points_3d(spec["n"])
    b = spec["budget"]
    out["load"] = _loadavg()
    runs = []
    for _ in range(3):
        if spec["method"] == "pcoreset":
            t, _ = _timed(pcoreset.kcenter_greedy, x, [0], b - 1, num_threads=spec.get("threads", 0))
        else:
            import fpsample
            t, _ = _timed(fpsample.bucket_fps_kdline_sampling, x, b, h=7, start_idx=0)
        runs.append(t)
    out.update(seconds=statistics.median(runs), all=runs)
    return out


def _child_threads(spec, out):
    """num_threads=1 and the default, alternated 3 times (medians)."""
    import pcoreset
    x = points_3d(spec["n"])
    out["load"] = _loadavg()
    times = {1: [], 0: []}
    for _ in range(3):
        for nt in (1, 0):
            times[nt].append(_timed(pcoreset.kcenter_greedy, x, [0], spec["budget"], num_threads=nt)[0])
    one, dflt = statistics.median(times[1]), statistics.median(times[0])
    out.update(seconds=dflt, one_thread=one, ratio=dflt / one, all=times)
    return out


def _pool_for(spec):
    if spec.get("pool_file"):  # a saved real pool (benchmarks/real_pool.py)
        return np.load(spec["pool_file"])
    dtype = np.float16 if spec.get("dtype") == "float16" else np.float32
    return softmax_pool(spec["n"], spec["c"], spec.get("pool", "clustered"), dtype=dtype)


def _labeled_for(spec):
    if spec.get("labeled_file"):
        return np.load(spec["labeled_file"])
    return labeled_rows(spec["n"], spec["labeled"])


def _child_select(spec, out):
    import pcoreset
    from pcoreset import backends as registry
    x = _pool_for(spec)
    lab = _labeled_for(spec)
    # the peak counts from here: building the pool's chunks is not select's
    exact_peak = _reset_peak()
    rss0 = _rss_kib("VmRSS")
    out["load"] = _loadavg()
    t, _ = _timed(pcoreset.select, x, lab, spec["budget"], backend="cpu")
    out.update(seconds=t, stats=registry.get("cpu").last_stats, peak_reset=exact_peak,
               extra_peak_mib=(_rss_kib("VmHWM") - rss0) / 1024.0, pool_mib=x.nbytes / 2**20)
    if spec.get("split"):  # where the time goes: the same work as a Selector, start and steps apart
        t0 = time.perf_counter()
        sel = pcoreset.Selector(x, lab, backend="cpu")
        t1 = time.perf_counter()
        sel.next(spec["budget"])
        out.update(split_start=t1 - t0, split_steps=time.perf_counter() - t1)
    return out


def _child_torch_split(spec, out):
    """The torch running minimum (pcoreset.bench.torch_running_min's steps,
    float32) timed as its start plus `steps` steps, extrapolated to the
    budget when steps < budget."""
    import torch
    x = _pool_for(spec)
    lab = _labeled_for(spec)
    out["load"] = _loadavg()
    t0 = time.perf_counter()
    xt = torch.as_tensor(x).float()
    sq = (xt * xt).sum(1)
    mind = torch.full((xt.shape[0],), float("inf"))
    centers = xt[torch.as_tensor(lab)]
    for s0 in range(0, xt.shape[0], 65536):
        mind[s0:s0 + 65536] = torch.cdist(xt[s0:s0 + 65536], centers).min(1).values.square()
    mind[torch.as_tensor(lab)] = -1.0
    t_start = time.perf_counter() - t0
    steps = min(spec["steps"], spec["budget"])
    t1 = time.perf_counter()
    for _ in range(steps):
        p = int(torch.argmax(mind))
        d = sq - 2.0 * (xt @ xt[p]) + sq[p]
        mind = torch.minimum(mind, d)
        mind[p] = -1.0
    t_steps = time.perf_counter() - t1
    out.update(start_seconds=t_start, steps_timed=steps, steps_seconds=t_steps,
               seconds=t_start + t_steps * spec["budget"] / steps, extrapolated=steps < spec["budget"])
    return out


def _child_gemm(spec, out):
    """The exact start (select with budget 1) against one float32 GEMM + row
    minimum of the same size (NumPy's BLAS, 65536-row blocks), alternated
    `repeat` times, the best of each kept (the machine is shared): wall clock
    with the default threads, and process CPU time with one thread for both
    (the figure that other processes' load moves least)."""
    import pcoreset
    from pcoreset import _threads
    x = _pool_for(spec)
    lab = labeled_rows(spec["n"], spec["labeled"])
    out["load"] = _loadavg()
    centers = np.ascontiguousarray(x[lab])

    def gemm_min():
        m = np.empty(len(x), np.float32)
        for s0 in range(0, len(x), 65536):
            m[s0:s0 + 65536] = (x[s0:s0 + 65536] @ centers.T).min(1)
        return m

    def cpu(fn, *args, **kwargs):
        t = time.process_time()
        fn(*args, **kwargs)
        return time.process_time() - t

    wall, wall_gemm, cpu1, cpu1_gemm = [], [], [], []
    for _ in range(spec.get("repeat", 3)):
        wall.append(_timed(pcoreset.select, x, lab, 1, backend="cpu")[0])
        wall_gemm.append(_timed(gemm_min)[0])
        with _threads.blas_threads(1):
            cpu1.append(cpu(pcoreset.select, x, lab, 1, backend="cpu", num_threads=1))
            cpu1_gemm.append(cpu(gemm_min))
    out.update(seconds=min(wall), gemm_seconds=min(wall_gemm), ratio=min(wall) / min(wall_gemm),
               cpu1_seconds=min(cpu1), cpu1_gemm_seconds=min(cpu1_gemm), cpu1_ratio=min(cpu1) / min(cpu1_gemm),
               load_after=_loadavg())
    return out


def _child_memmap(spec, out):
    from pcoreset import backends as registry
    import pcoreset
    rss_imports = _rss_kib("VmRSS")
    x = np.load(spec["path"], mmap_mode="r")
    out["load"] = _loadavg()
    t, _ = _timed(pcoreset.select, x, None, spec["budget"], backend="cpu")
    out.update(seconds=t, stats=registry.get("cpu").last_stats,
               beyond_imports_mib=_rss_kib("VmHWM") / 1024.0 - rss_imports / 1024.0)
    return out


TARGET_CHILDREN = {"degenerate": _child_degenerate, "median3": _child_median3, "threads3": _child_threads,
                   "select": _child_select, "torch_split": _child_torch_split, "gemm": _child_gemm,
                   "memmap_target": _child_memmap, "costmodel": _child_costmodel}


class Goals:
    """One line per (target, load): the measured ratio against the goal."""

    def __init__(self):
        self.lines = []

    def add(self, target, load, value, goal, met, detail, loadavg):
        self.lines.append((target, load, value, goal, met, detail, loadavg))
        verdict = "met" if met else "NOT met"
        print(f"| {target} | {load} | {value} | {goal} | {verdict} | {detail} | {loadavg} |", flush=True)

    def table(self):
        print("\n| target | load | measured | goal | verdict | detail | /proc/loadavg |\n|---|---|---|---|---|---|---|")
        for target, load, value, goal, met, detail, loadavg in self.lines:
            print(f"| {target} | {load} | {value} | {goal} | {'met' if met else 'NOT met'} | {detail} | {loadavg} |")


def _err(res):
    return res.get("error", "no result")


def _bounds(st: dict) -> str:
    """What each bound rejected, from the kernel's counters."""
    elig, reach, comp = st.get("rows_eligible"), st.get("rows_in_reach"), st.get("rows_computed", 0)
    if not elig:
        return "no bound counters"
    checked, rejected = st.get("proj_checked", 0), st.get("proj_rejected", 0)
    proj = (f"the projection bound {rejected / checked:.3f} of the {checked / elig:.3f} it was asked about"
            if checked else "projection bound not used")
    return (f"cells/centers ruled out {1 - reach / elig:.3f} of eligible rows, the row bound "
            f"{(reach - comp - rejected) / max(1, reach):.3f} of the rest, {proj}, {comp / elig:.4f} computed; "
            f"cell steps {st.get('cell_steps')}, dense {st.get('dense_steps')}")


def target_degenerate(g: Goals, args):
    for k in loads(args):
        load = "quiet" if k == 0 else f"{k} busy"
        worst = None
        with busy(k):
            for pool, n, c, b in DEGENERATE:
                res = run_child({"kind": "degenerate", "pool": pool, "n": n, "c": c, "budget": b})
                name = f"{pool} {n // 1000}k x {c} B={b}"
                if "ratio" not in res:
                    g.add(f"degenerate {name}", load, _err(res), "", False, "", "")
                    continue
                print(f"  {load}: {name}: pruned {res['seconds']:.2f} s, dense {res['dense_seconds']:.2f} s, "
                      f"ratio {res['ratio']:.2f}, same picks {res['same_picks']}  [{res['load']}]", flush=True)
                if worst is None or res["ratio"] > worst[0]:
                    worst = (res["ratio"], name, res)
                if not res["same_picks"]:
                    g.add(f"degenerate {name}", load, "picks differ", "same picks", False, "", res["load"])
        if worst:
            r, name, res = worst
            g.add("worst pruned / dense, degenerate pools", load, f"{r:.2f}x", "<= 1.2x", r <= 1.2,
                  f"{name}: {res['seconds']:.2f} s / {res['dense_seconds']:.2f} s", res["load"])


def _vs_torch(g: Goals, args, target, spec, goal, steps):
    for k in loads(args):
        load = "quiet" if k == 0 else f"{k} busy"
        with busy(k):
            ours = run_child(dict(spec, kind="select", split=True))
            ref = run_child(dict(spec, kind="torch_split", steps=steps))
        if "seconds" not in ours or "seconds" not in ref:
            g.add(target, load, f"{_err(ours)} / {_err(ref)}", f">= {goal}x", False, "", "")
            continue
        ratio = ref["seconds"] / ours["seconds"]
        how = (f"torch start {ref['start_seconds']:.1f} s + {ref['steps_timed']} steps in "
               f"{ref['steps_seconds']:.2f} s, extrapolated to B={spec['budget']}" if ref["extrapolated"]
               else "torch measured")
        st = ours.get("stats") or {}
        split = (f" (as a Selector: start {ours['split_start']:.2f} s, {spec['budget']} steps "
                 f"{ours['split_steps']:.2f} s, {ours['split_steps'] / max(1, spec['budget']) * 1e3:.2f} ms a step)"
                 if "split_start" in ours else "")
        g.add(target, load, f"{ratio:.1f}x", f">= {goal}x", ratio >= goal,
              f"pcoreset {ours['seconds']:.2f} s{split}, torch {ref['seconds']:.1f} s ({how}); {_bounds(st)}",
              f"{ours['load']} / {ref['load']}")


def target_1m100(g, args):
    n, L, b = (100_000, 1_000, 1_000) if args.quick else (1_000_000, 10_000, 10_000)
    _vs_torch(g, args, f"N={n:,} C=100 L={L:,} B={b:,} vs torch running min",
              {"n": n, "c": 100, "labeled": L, "budget": b}, 30, args.torch_steps)


def target_200k100(g, args):
    n, L, b = (50_000, 500, 300) if args.quick else (200_000, 2_000, 1_000)
    _vs_torch(g, args, f"N={n:,} C=100 L={L:,} B={b:,} vs torch running min",
              {"n": n, "c": 100, "labeled": L, "budget": b}, 10, b)


def target_100k1000(g, args):
    n, L, b = (20_000, 200, 100) if args.quick else (100_000, 1_000, 300)
    _vs_torch(g, args, f"N={n:,} C=1000 f16 L={L:,} B={b} vs torch running min (f32)",
              {"n": n, "c": 1000, "labeled": L, "budget": b, "dtype": "float16"}, 6, b)


def target_real(g, args):
    """A pool a real model produced (benchmarks/real_pool.py writes it)."""
    d = Path(args.real_pool)
    if not (d / "pool_probs.npy").is_file():
        g.add("real pool", "-", f"no pool in {d}", "", False,
              "build it first: python -m benchmarks.real_pool --out " + str(d), "")
        return
    x = np.load(d / "pool_probs.npy", mmap_mode="r")
    lab = np.load(d / "labeled.npy")
    n, c = x.shape
    b = 1000
    _vs_torch(g, args, f"real pool (ActiveKD text student, WordNet nouns) N={n:,} C={c} L={lab.size:,} B={b:,} "
              "vs torch running min",
              {"n": n, "c": c, "labeled": int(lab.size), "budget": b, "pool_file": str(d / "pool_probs.npy"),
               "labeled_file": str(d / "labeled.npy")}, 10, b)


def target_gemm(g, args):
    n, L = (50_000, 500) if args.quick else (200_000, 2_000)
    for k in loads(args):
        load = "quiet" if k == 0 else f"{k} busy"
        with busy(k):
            res = run_child({"kind": "gemm", "n": n, "c": 100, "labeled": L})
        if "ratio" not in res:
            g.add(f"exact start {n:,} x 100 L={L:,} vs GEMM + min", load, _err(res), "<= 0.5x", False, "", "")
            continue
        loadavg = f"{res['load']} -> {res['load_after']}"
        g.add(f"exact start {n:,} x 100 L={L:,} vs GEMM + min", load, f"{res['ratio']:.2f}x", "<= 0.5x",
              res["ratio"] <= 0.5, f"start {res['seconds']:.2f} s, GEMM + min {res['gemm_seconds']:.2f} s "
              "(wall clock, default threads, best of 3)", loadavg)
        g.add(f"exact start {n:,} x 100 L={L:,} vs GEMM + min, one thread", load, f"{res['cpu1_ratio']:.2f}x",
              "<= 0.5x", res["cpu1_ratio"] <= 0.5,
              f"start {res['cpu1_seconds']:.2f} s, GEMM + min {res['cpu1_gemm_seconds']:.2f} s "
              "(process CPU time, best of 3)", loadavg)


def target_startmem(g, args):
    n = 100_000 if args.quick else 1_000_000
    sizes = [n // 100] + ([n // 10] if args.full else [])
    for L in sizes:
        res = run_child({"kind": "select", "n": n, "c": 100, "labeled": L, "budget": 1})
        if "extra_peak_mib" not in res:
            g.add(f"select extra memory N={n:,} C=100 L={L:,}", "quiet", _err(res), "<= 0.25x pool", False, "", "")
            continue
        r = res["extra_peak_mib"] / res["pool_mib"]
        how = "VmHWM reset after the pool is built" if res.get("peak_reset") else "a lower bound: VmHWM not reset"
        g.add(f"select extra memory N={n:,} C=100 L={L:,}", "quiet", f"{r:.2f}x", "<= 0.25x pool", r <= 0.25,
              f"{res['extra_peak_mib']:.0f} MiB over a {res['pool_mib']:.0f} MiB pool ({how}); "
              f"{res['seconds']:.1f} s", res["load"])


def target_memmap(g, args):
    n, c = (100_000, 1000) if args.quick else (1_000_000, 1000)
    path = os.path.join(args.data_dir, f"clustered_{n}_{c}_f16.npy")
    memmap_pool(path, n, c)
    b = args.mm_budget
    res = run_child({"kind": "memmap_target", "path": path, "budget": b})
    if "seconds" not in res:
        g.add(f"memmap {n:,} x {c} f16", "quiet", _err(res), "B=10k <= 120 s, RSS < 1 GB", False, "", "")
        return
    st = res.get("stats") or {}
    per_step = res["seconds"] / b
    met = b >= 10_000 and res["seconds"] <= 120 and res["beyond_imports_mib"] < 1024
    g.add(f"memmap {n:,} x {c} f16", "quiet",
          f"B={b}: {res['seconds']:.1f} s, {res['beyond_imports_mib']:.0f} MiB", "B=10k <= 120 s, RSS < 1 GB", met,
          f"{per_step * 1000:.1f} ms a pick (B=10k at this rate: {per_step * 10_000:.0f} s, extrapolated); "
          f"{_bounds(st)}", res["load"])


def target_3d(g, args):
    n, b = (20_000, 2_000) if args.quick else (200_000, 20_000)
    for k in loads(args):
        load = "quiet" if k == 0 else f"{k} busy"
        with busy(k):
            ours = run_child({"kind": "median3", "method": "pcoreset", "n": n, "budget": b})
            ref = run_child({"kind": "median3", "method": "quickfps", "n": n, "budget": b})
        if "seconds" not in ours or "seconds" not in ref:
            g.add(f"3-D {n:,} B={b:,} vs QuickFPS", load, f"{_err(ours)} / {_err(ref)}", "<= 1.2x", False, "", "")
            continue
        r = ours["seconds"] / ref["seconds"]
        g.add(f"3-D {n:,} B={b:,} vs QuickFPS", load, f"{r:.2f}x", "<= 1.2x", r <= 1.2,
              f"pcoreset {ours['seconds']:.3f} s, QuickFPS (h=7) {ref['seconds']:.3f} s, medians of 3",
              f"{ours['load']} / {ref['load']}")


def target_threads(g, args):
    n, b = (50_000, 1_000) if args.quick else (200_000, 2_000)
    for k in (1, 2, 4):
        with busy(k):
            res = run_child({"kind": "threads3", "n": n, "budget": b})
        if "ratio" not in res:
            g.add(f"threads 3-D {n:,} B={b:,}", f"{k} busy", _err(res), "<= 1.1x", False, "", "")
            continue
        g.add(f"default threads / 1 thread, 3-D {n:,} B={b:,}", f"{k} busy", f"{res['ratio']:.2f}x", "<= 1.1x",
              res["ratio"] <= 1.1, f"default {res['seconds']:.3f} s, 1 thread {res['one_thread']:.3f} s (medians of 3)",
              res["load"])


TARGETS = {"degenerate": target_degenerate, "3d": target_3d, "threads": target_threads, "gemm": target_gemm,
           "200k100": target_200k100, "100k1000": target_100k1000, "startmem": target_startmem,
           "1m100": target_1m100, "memmap": target_memmap, "real": target_real}


ROWS = {"3d": row_3d, "1m100": lambda t, a: row_softmax(t, a, "1m100"), "memmap": row_memmap,
        "200k100": lambda t, a: row_softmax(t, a, "200k100"), "threads": row_threads,
        "start": row_start, "selector": row_selector, "costmodel": row_costmodel}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=None,
                   help=f"comma-separated rows: {','.join(ROWS)}; with --targets: {','.join(TARGETS)}")
    p.add_argument("--targets", action="store_true", help="measure the kernel's targets, print met / not met")
    p.add_argument("--torch-steps", type=int, default=30,
                   help="--targets: steps of the torch running minimum timed at 1M x 100 (then extrapolated)")
    p.add_argument("--full", action="store_true", help="--targets: also the start's memory at L = N / 10")
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    p.add_argument("--quiet-only", action="store_true", help="skip the runs beside a busy process")
    p.add_argument("--mm-budget", type=int, default=1000, help="picks for the memmap row (default 1000)")
    p.add_argument("--mm-busy", action="store_true", help="also run the memmap row beside a busy process")
    p.add_argument("--data-dir", default=os.path.expanduser("~/.cache/pcoreset-bench"),
                   help="where the memmap pool file is written once")
    p.add_argument("--baseline-path", default=None,
                   help="another checkout (with its extension built) to run the start rows on too")
    p.add_argument("--projection", choices=["auto", "0", "1"], default="auto",
                   help="the kernel's projection bound: its cost model (auto), never (0) or always (1)")
    p.add_argument("--real-pool", default=str(Path(__file__).resolve().parents[1] / "_build" / "real_pool"),
                   help="--targets real: the folder benchmarks/real_pool.py wrote")
    p.add_argument("--json", default=None, help="write every figure here")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    if args.projection != "auto":  # read by the kernel in the child processes
        os.environ["PCORESET_PROJECTION"] = args.projection
    table = TARGETS if args.targets else ROWS
    args.only = args.only or ",".join(table)
    unknown = set(args.only.split(",")) - set(table)
    if unknown:
        p.error(f"--only: unknown rows {sorted(unknown)} (known: {','.join(table)})")
    from pcoreset.bench import git_commit, machine_line
    print(f"bench_cells  commit {git_commit()}  {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}")
    print(machine_line())
    if args.targets:
        g = Goals()
        t0 = time.perf_counter()
        print("| target | load | measured | goal | verdict | detail | /proc/loadavg |\n|---|---|---|---|---|---|---|",
              flush=True)
        for key in args.only.split(","):
            TARGETS[key](g, args)
        g.table()
        print(f"({time.perf_counter() - t0:.0f} s)")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"commit": git_commit(), "machine": machine_line(), "targets": g.lines}, f, indent=1)
        return 0
    print("| target | method | load | seconds | notes |\n|---|---|---|---:|---|", flush=True)
    t = Table()
    for key in args.only.split(","):
        ROWS[key](t, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"commit": git_commit(), "machine": machine_line(), "rows": t.rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""FAISS and scale: the three scale targets, side by side in one run.

    python -m benchmarks.bench_scale                 # the issue's sizes
    python -m benchmarks.bench_scale --quick         # minutes-sized smoke run

1. labeled start (nearest labeled row of every pool row, N x L): the
   package's certified candidates + exact refine (or the kernel's direct
   pass, --start-methods exact), and the baseline: chunked torch.cdist + min
   with the same chunk size; time and peak memory above the pool (each
   method in its own process).
2. backend="faiss" end to end against the vectorised PyTorch running minimum
   (backend="torch"; its per-step cost is constant, so it is timed on
   --torch-steps steps and scaled to the budget, labeled as such).
3. a memmapped float16 .npy pool, budget picks with the cpu backend, peak
   RSS (VmHWM, which counts file-backed pages) in a fresh process.

Each figure runs in a child process so that peak memory is its own. Prints a
header (date, commit, machine, load, OPENBLAS_CORETYPE) and a table.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time

import numpy as np

from pcoreset.bench import git_commit, machine_line

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def clustered(n, c, k=16, noise=1.0, seed=0, dtype=np.float32, chunk=50_000):
    """Softmax of one of k random cluster centres plus noise, built in chunks."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4.0, size=(k, c)).astype(np.float32)
    out = np.empty((n, c), dtype=dtype)
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        z = centres[rng.integers(0, k, size=m)] + rng.normal(0, noise, size=(m, c)).astype(np.float32)
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        out[s:s + m] = z
    return out


def _status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak():
    """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


# ---------------------------------------------------------------- workers


def work_start(a):
    import torch

    from pcoreset import _C, _start
    from pcoreset._problem import make_problem

    x = clustered(a.n, a.c, seed=1)
    labeled = np.sort(np.random.default_rng(2).choice(a.n, a.l, replace=False))
    problem = make_problem(x, labeled, 0, simplex=True, from_logits=False, temperature=1.0,
                           prune=True, num_threads=0, progress=None)
    chunk = _start.chunk_rows(a.n, a.c, a.l)
    _reset_peak()  # the peak of the start alone, not of building and validating the pool
    base = _status("VmRSS:")
    t0 = time.perf_counter()
    if a.method == "certified":
        state = _C.KCenterState(x, "float32")
        cand = _start.nearest_candidates(problem)
        state.seed_rows_with_candidates(labeled, cand)
        mind = state.min_dist2()
    elif a.method == "exact":
        state = _C.KCenterState(x, "float32")
        state.seed_rows(labeled)
        mind = state.min_dist2()
    else:  # chunked torch.cdist + min, the same chunk rows as the GEMM path
        xt = torch.from_numpy(x)
        centers = xt[torch.from_numpy(labeled)]
        mind = np.empty(a.n, dtype=np.float64)
        for s in range(0, a.n, chunk):
            mind[s:s + chunk] = torch.cdist(xt[s:s + chunk], centers).min(1).values.double().pow(2).numpy()
    dt = time.perf_counter() - t0
    return {"time_s": dt, "extra_bytes": _status("VmHWM:") - base, "pool_bytes": x.nbytes,
            "chunk_rows": chunk, "checksum": float(np.sum(np.sqrt(np.maximum(mind, 0))))}


def work_faiss(a):
    import pcoreset

    x = clustered(a.n, a.c, seed=3)
    t0 = time.perf_counter()
    if a.method == "torch":
        pcoreset.select(x, None, a.steps, backend="torch")
        per = (time.perf_counter() - t0) / a.steps
        return {"time_s": per * a.budget, "per_step_ms": per * 1e3, "steps_timed": a.steps}
    idx = pcoreset.select(x, None, a.budget, backend=a.method)
    dt = time.perf_counter() - t0
    return {"time_s": dt, "per_step_ms": dt / a.budget * 1e3, "steps_timed": a.budget,
            "first": [int(i) for i in idx[:5]]}


def work_make_memmap(a):
    from numpy.lib.format import open_memmap

    from pcoreset import _memory

    m = open_memmap(a.path + ".tmp", mode="w+", dtype=np.float16, shape=(a.n, a.c))
    step = 20_000
    for s in range(0, a.n, step):
        stop = min(a.n, s + step)
        m[s:stop] = clustered(stop - s, a.c, seed=100 + s // step, chunk=step).astype(np.float16)
        m.flush()
        _memory.release_rows(m, s, stop)
    del m
    os.replace(a.path + ".tmp", a.path)
    return {}


def work_memmap(a):
    import pcoreset

    base = _status("VmRSS:")
    t0 = time.perf_counter()
    pcoreset.select(a.path, None, a.budget, backend="cpu")
    dt = time.perf_counter() - t0
    return {"time_s": dt, "peak_rss_bytes": _status("VmHWM:"), "base_rss_bytes": base,
            "file_bytes": os.path.getsize(a.path)}


WORKERS = {"start": work_start, "faiss": work_faiss, "make_memmap": work_make_memmap,
           "memmap": work_memmap}


def child(kind, **kw):
    args = [sys.executable, "-m", "benchmarks.bench_scale", "--worker", kind]
    for k, v in kw.items():
        args += [f"--w-{k}", str(v)]
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"rc={out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def header():
    import faiss

    return (f"date {datetime.date.today()}, commit {git_commit()}, {machine_line()}, "
            f"faiss {faiss.__version__}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    p.add_argument("--only", default="start,faiss,memmap")
    p.add_argument("--start-n", type=int, default=1_000_000)
    p.add_argument("--start-l", type=int, default=100_000)
    p.add_argument("--start-c", type=int, default=100)
    p.add_argument("--start-methods", default="certified,cdist",
                   help="certified (the package's start), exact (the direct pass: slow at this size), cdist")
    p.add_argument("--faiss-n", type=int, default=200_000)
    p.add_argument("--faiss-c", type=int, default=100)
    p.add_argument("--budget", type=int, default=1000)
    p.add_argument("--torch-steps", type=int, default=20)
    p.add_argument("--mm-n", type=int, default=1_000_000)
    p.add_argument("--mm-c", type=int, default=1000)
    p.add_argument("--mm-budget", type=int, default=1000)
    p.add_argument("--mm-path", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "pcoreset_bench_pool.npy"))
    # worker mode (internal)
    p.add_argument("--worker", help=argparse.SUPPRESS)
    for k in ("n", "c", "l", "budget", "steps"):
        p.add_argument(f"--w-{k}", type=int, help=argparse.SUPPRESS)
    for k in ("method", "path"):
        p.add_argument(f"--w-{k}", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        w = argparse.Namespace(**{k[2:]: v for k, v in vars(a).items() if k.startswith("w_")})
        print(json.dumps(WORKERS[a.worker](w)))
        return
    if a.quick:
        a.start_n, a.start_l, a.faiss_n, a.budget, a.mm_n, a.mm_budget = 100_000, 5_000, 50_000, 200, 100_000, 200
    only = set(a.only.split(","))
    print(header())
    rows = []
    if "start" in only:
        pool = a.start_n * a.start_c * 4
        for m in a.start_methods.split(","):
            r = child("start", n=a.start_n, c=a.start_c, l=a.start_l, method=m)
            rows.append((f"labeled start N={a.start_n:,} C={a.start_c} L={a.start_l:,} f32", m, r,
                         f"extra peak {r.get('extra_bytes', 0) / pool:.2f}x pool, chunk {r.get('chunk_rows')} rows"))
    if "faiss" in only:
        for m in ("faiss", "cpu", "torch"):
            r = child("faiss", n=a.faiss_n, c=a.faiss_c, budget=a.budget, method=m, steps=a.torch_steps)
            note = f"{r.get('per_step_ms', 0):.1f} ms/step"
            if m == "torch":
                note += f", timed on {r.get('steps_timed')} steps, scaled to {a.budget}"
            rows.append((f"select N={a.faiss_n:,} C={a.faiss_c} budget={a.budget} f32", m, r, note))
    if "memmap" in only:
        if not os.path.exists(a.mm_path) or os.path.getsize(a.mm_path) < a.mm_n * a.mm_c * 2:
            t0 = time.perf_counter()
            child("make_memmap", n=a.mm_n, c=a.mm_c, path=a.mm_path)
            print(f"(wrote {a.mm_path} in {time.perf_counter() - t0:.0f} s)")
        r = child("memmap", budget=a.mm_budget, path=a.mm_path)
        rows.append((f"memmap .npy {a.mm_n:,} x {a.mm_c} f16 budget={a.mm_budget}", "cpu", r,
                     f"peak RSS {r.get('peak_rss_bytes', 0) / 2**20:.0f} MiB "
                     f"(after imports {r.get('base_rss_bytes', 0) / 2**20:.0f} MiB), "
                     f"file {r.get('file_bytes', 0) / 2**20:.0f} MiB"))
    print()
    print("| target | method | time (s) | notes |")
    print("|---|---|---:|---|")
    for what, m, r, note in rows:
        t = f"{r['time_s']:.2f}" if "time_s" in r else "error"
        print(f"| {what} | {m} | {t} | {note if 'error' not in r else r['error']} |")


if __name__ == "__main__":
    main()

"""`pcoreset bench`: time every backend against the paper's algorithm and a
vectorised PyTorch running minimum on clustered pools, side by side in one run.

Baselines:
  paper      the reference algorithm of the paper's code: each step recomputes
             the distance of every unlabeled row to *every* center (cdist),
             takes the min and the argmax. Cost grows with (L + t) N C at step
             t, so it is timed at a small budget and extrapolated (stated).
  torch-rm   vectorised PyTorch running minimum in float32: one GEMV
             (||x||^2 - 2 x.c + ||c||^2), a min and an argmax per step.
  numpy-rm   the same in NumPy.
and each pcoreset backend that can run here.

"dense GB/s" is the dense-pass traffic (N * C * bytes per value per step)
divided by the time: what a kernel that reads every row every step would
need. "% read bw" puts that figure against a measured read bandwidth (torch
sum over a 512 MiB array). With pruning the kernel reads only the rows in the
"rows read" column (from the kernel's own counters), so the pruned rows can
exceed 100%: that is the saving, not a measurement; the prune=False row is
the real streaming rate.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from typing import Dict, List, Optional

import numpy as np

# ------------------------------------------------------------------ pools


def clustered_pool(n: int, c: int, k: int = 10, noise: float = 2.0, seed: int = 0,
                   dtype: str = "float32", out: Optional[np.ndarray] = None) -> np.ndarray:
    """Softmax of one of k random cluster centres (scale 4) plus Gaussian
    noise: teacher-like predictions that cluster in the simplex. Generated in
    row blocks so that a million rows need no float64 N x C temporary.
    `out`: an (n, c) array of `dtype` to fill (e.g. np.lib.format.open_memmap
    for a pool larger than memory); the same values either way."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 4.0, size=(k, c)).astype(np.float32)
    if out is None:
        out = np.empty((n, c), dtype=dtype)
    block = max(1, (64 << 20) // (4 * c))
    for s in range(0, n, block):
        e = min(n, s + block)
        z = centres[rng.integers(0, k, size=e - s)] + rng.normal(0.0, noise, size=(e - s, c)).astype(np.float32)
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=1, keepdims=True)
        out[s:e] = z.astype(out.dtype, copy=False)
    return out


# ------------------------------------------------------------------ baselines


def torch_running_min(x, labeled: np.ndarray, budget: int, chunk: int = 65536):
    """float32 running min with one GEMV per step (the usual fast PyTorch way)."""
    import torch

    xt = torch.as_tensor(x).float() if not isinstance(x, torch.Tensor) else x.float()
    n = xt.shape[0]
    sq = (xt * xt).sum(1)
    mind = torch.full((n,), float("inf"), dtype=torch.float32, device=xt.device)
    if labeled.size:
        lab = torch.as_tensor(labeled, device=xt.device)
        centers = xt[lab]
        for s in range(0, n, chunk):
            mind[s:s + chunk] = torch.cdist(xt[s:s + chunk], centers).min(1).values.square()
        mind[lab] = -1.0
    picks = []
    for t in range(budget):
        if t == 0 and not labeled.size:
            p = int(torch.argmax(((xt - xt.mean(0)) ** 2).sum(1)))
        else:
            p = int(torch.argmax(mind))
        picks.append(p)
        d = sq - 2.0 * (xt @ xt[p]) + sq[p]
        mind = torch.minimum(mind, d)
        mind[p] = -1.0
    return np.array(picks)


def numpy_running_min(x, labeled: np.ndarray, budget: int, chunk: int = 65536):
    xf = np.asarray(x, dtype=np.float32)
    n = xf.shape[0]
    sq = np.einsum("ij,ij->i", xf, xf)
    mind = np.full(n, np.inf, dtype=np.float32)
    if labeled.size:
        centers = xf[labeled]
        csq = np.einsum("ij,ij->i", centers, centers)
        for s in range(0, n, chunk):
            d = sq[s:s + chunk, None] - 2.0 * xf[s:s + chunk] @ centers.T + csq[None, :]
            mind[s:s + chunk] = d.min(1)
        mind[labeled] = -1.0
    picks = []
    for t in range(budget):
        if t == 0 and not labeled.size:
            p = int(np.argmax(((xf - xf.mean(0)) ** 2).sum(1)))
        else:
            p = int(np.argmax(mind))
        picks.append(p)
        mind = np.minimum(mind, sq - 2.0 * (xf @ xf[p]) + sq[p])
        mind[p] = -1.0
    return np.array(picks)


def paper_algorithm(x, labeled: np.ndarray, budget: int):
    """The paper code's k-center greedy: every step recomputes distances from
    each unlabeled row to all centers (labeled + picked) and takes the min.
    (The paper's code makes one cdist over all unlabeled rows; here it runs
    in row chunks of 65536 so that a million-row pool does not need an N x L
    matrix in memory: the same arithmetic and cost.)"""
    import torch

    xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
    n = xt.shape[0]
    centers = list(labeled.tolist())
    unlabeled = np.setdiff1d(np.arange(n), labeled)
    picks = []
    for _ in range(budget):
        u = torch.as_tensor(unlabeled)
        ctrs = xt[torch.as_tensor(centers)] if centers else xt.mean(0, keepdim=True)
        d = torch.cat([torch.cdist(xt[u[s:s + 65536]], ctrs).min(1).values for s in range(0, u.numel(), 65536)])
        j = int(torch.argmax(d))
        p = int(unlabeled[j])
        picks.append(p)
        centers.append(p)
        unlabeled = np.delete(unlabeled, j)
    return np.array(picks)


# ------------------------------------------------------------------ measuring


def read_bandwidth_gbs() -> float:
    """Measured read bandwidth: torch sum over a 512 MiB float32 array (best of 3)."""
    import torch

    a = torch.ones(128 << 20, dtype=torch.float32)
    a.sum()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        a.sum()
        best = min(best, time.perf_counter() - t0)
    return a.numel() * 4 / best / 1e9


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line() -> str:
    """The machine and settings a figure was measured with (for RESULTS.md)."""
    return (f"{cpu_model()}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}, "
            f"NumPy {np.__version__}, OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}, "
            f"load average {os.getloadavg()[0]:.1f}")


def git_commit() -> str:
    """Short commit of the checkout this file is in, "+dirty" with local changes, "?" outside git."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=here, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=here, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return (head + ("+dirty" if dirty else "")) if head else "?"


def version_line() -> str:
    """"pcoreset 0.1.0, commit abc1234" inside the git checkout the package
    runs from, "pcoreset 0.1.0" for an installed copy (whose commit is not
    known: a venv inside some other checkout must not borrow its commit)."""
    import pcoreset

    line = f"pcoreset {pcoreset.__version__}"
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True,
                             cwd=here, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        top = ""
    if top and os.path.realpath(os.path.join(top, "pcoreset")) == os.path.realpath(here):
        commit = git_commit()
        if commit != "?":
            line += f", commit {commit}"
    return line


def format_ratio(r: float) -> str:
    """A speedup that reads well from 1/10000 to 10000: three significant
    figures at most, never "0.0x"."""
    if not np.isfinite(r) or r <= 0:
        return "-"
    if r >= 100:
        return f"{r:,.0f}x"
    if r >= 10:
        return f"{r:.1f}x"
    if r >= 1:
        return f"{r:.2f}x"
    return f"{r:.2g}x"


def run_case(n: int, c: int, budget: int, labeled_frac: float = 0.01, dtype: str = "float32",
             paper_budget: Optional[int] = 20, backends: Optional[List[str]] = None, seed: int = 0,
             numpy_baseline: bool = True, bandwidth: Optional[float] = None) -> Dict:
    """Time one pool; returns a dict of rows (method -> seconds and derived figures)."""
    import torch

    import pcoreset
    from pcoreset import backends as registry

    x = clustered_pool(n, c, seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed + 1)
    labeled = np.sort(rng.choice(n, size=int(round(labeled_frac * n)), replace=False)).astype(np.int64)
    x32 = x.astype(np.float32) if dtype != "float32" else x
    rows = {}
    t, ref_picks = _timed(torch_running_min, x32, labeled, budget)
    rows["torch-rm (float32)"] = {"seconds": t}
    if numpy_baseline:
        t, _ = _timed(numpy_running_min, x32, labeled, budget)
        rows["numpy-rm (float32)"] = {"seconds": t}
    if paper_budget:
        pb = min(paper_budget, budget)
        t, _ = _timed(paper_algorithm, x32, labeled, pb)
        # step t costs ~ (L + t) * N * C: extrapolate by the ratio of the sums
        L = labeled.size
        work_small = sum(max(L + s, 1) for s in range(pb))
        work_full = sum(max(L + s, 1) for s in range(budget))
        rows[f"paper (measured B={pb}, extrapolated)"] = {"seconds": t * work_full / work_small,
                                                          "measured_seconds": t}
    names = backends or [b for b in registry.names() if b in ("cpu", "faiss", "torch")]
    for name in names:
        if name == "torch" and n * budget > 50_000_000:
            continue  # the readable reference is too slow for the big cases
        try:
            t, picks = _timed(pcoreset.select, x, labeled, budget, backend=name)
        except pcoreset.BackendUnavailableError as exc:
            rows[f"pcoreset {name}"] = {"error": str(exc).splitlines()[-1]}
            continue
        row = {"seconds": t, "same_picks_as_torch_rm": int(np.sum(np.asarray(picks) == ref_picks))}
        row.update(_rows_read(registry.get(name)))
        rows[f"pcoreset {name} ({dtype})"] = row
        if name == "cpu":  # the dense pass alone: what pruning saves, and how close it runs to the bandwidth
            t, _ = _timed(pcoreset.select, x, labeled, budget, backend=name, prune=False)
            row = {"seconds": t}
            row.update(_rows_read(registry.get(name)))
            rows[f"pcoreset {name} ({dtype}, prune=False)"] = row
    base = rows["torch-rm (float32)"]["seconds"]
    item = np.dtype(dtype if dtype != "bfloat16" else "float16").itemsize
    dense_bytes = float(n) * c * item * budget
    bw = bandwidth
    for name, row in rows.items():
        if "seconds" not in row:
            continue
        row["speedup_vs_torch_rm"] = base / row["seconds"]
        if name.startswith("pcoreset"):
            row["dense_GBps"] = dense_bytes / row["seconds"] / 1e9
            if bw:
                row["pct_read_bw"] = 100.0 * row["dense_GBps"] / bw
    del torch
    return {"n": n, "c": c, "budget": budget, "labeled": int(labeled.size), "dtype": dtype, "rows": rows}


def _rows_read(backend) -> Dict:
    """The fraction of (row, step) pairs whose C values the kernel read, from
    the backend's counters of its last run (cpu and cuda keep them)."""
    stats = getattr(backend, "last_stats", None) or {}
    # eligible (row, step) pairs where the kernel counts them (cpu), else the
    # rows its steps visited
    visited = stats.get("rows_eligible") or stats.get("rows_visited")
    if not visited:
        return {}
    return {"rows_read_frac": float(stats.get("rows_computed", 0)) / float(visited)}


def format_case(case: Dict) -> str:
    head = (f"N={case['n']:,} C={case['c']} labeled={case['labeled']:,} budget={case['budget']:,} "
            f"dtype={case['dtype']}")
    lines = [head, f"{'method':40s} {'seconds':>10s} {'speedup':>9s} {'dense GB/s':>11s} {'% read bw':>10s} "
                   f"{'rows read':>10s}"]
    for name, row in case["rows"].items():
        if "error" in row:
            lines.append(f"{name:40s} unavailable: {row['error']}")
            continue
        gbs = f"{row['dense_GBps']:.1f}" if "dense_GBps" in row else ""
        pct = f"{row['pct_read_bw']:.0f}%" if "pct_read_bw" in row else ""
        if "rows_read_frac" in row:
            f = 100.0 * row["rows_read_frac"]
            read = f"{f:.0f}%" if f >= 10 else f"{f:.2g}%"
        else:
            read = ""
        lines.append(f"{name:40s} {row['seconds']:10.3f} {format_ratio(row['speedup_vs_torch_rm']):>9s} "
                     f"{gbs:>11s} {pct:>10s} {read:>10s}")
    paper = next((r for n, r in case["rows"].items() if n.startswith("paper") and "seconds" in r), None)
    if paper:
        for name, row in case["rows"].items():
            if name.startswith("pcoreset") and "seconds" in row and "prune=False" not in name:
                lines.append(f"  {name} is {format_ratio(paper['seconds'] / row['seconds'])} faster than the "
                             f"paper's algorithm (extrapolated from {paper['measured_seconds']:.1f} s measured)")
    return "\n".join(lines)


def legend(bandwidth: float) -> str:
    """What the columns mean, printed under the tables."""
    return (
        "speedup: against torch-rm; below 1x (e.g. 0.0082x) is slower. The paper's algorithm recomputes\n"
        "  every center's distance each step, so it is timed at a small budget and extrapolated.\n"
        "dense GB/s: N x C x bytes x budget / seconds, the traffic a kernel that reads every row every\n"
        f"  step would need; % read bw: that against this machine's measured read bandwidth ({bandwidth:.1f} GB/s).\n"
        "rows read: the share of rows whose values the kernel actually read per step (its counters).\n"
        "  Pruning (triangle inequality, exact) skips the rest, so a pruned row's dense GB/s can exceed\n"
        "  100% of the read bandwidth: that is the work saved, not memory traffic. The prune=False row\n"
        "  reads every row and shows the real streaming rate.")


PRESETS = {
    # the default: one embedded million-row clustered pool
    "default": [dict(n=1_000_000, c=100, budget=500, labeled_frac=0.001, paper_budget=2,
                     numpy_baseline=False)],
    "quick": [dict(n=50_000, c=100, budget=200, paper_budget=10)],
    # the performance targets (200k and 1M rows, C = 100), side by side
    "targets": [
        dict(n=200_000, c=100, budget=1000, dtype="float32", paper_budget=None),
        dict(n=100_000, c=1000, budget=300, dtype="float16", paper_budget=None, numpy_baseline=False),
        dict(n=100_000, c=100, budget=1000, dtype="float32", paper_budget=10, numpy_baseline=False),
    ],
}


DESCRIPTION = (
    "Time pcoreset's backends against a vectorised PyTorch running minimum (torch-rm), the same in "
    "NumPy, and the paper's algorithm (recompute every center each step; timed at a small budget and "
    "extrapolated), on clustered softmax pools generated in memory. Prints a table per pool with "
    "seconds, speedups and the fraction of memory bandwidth reached. "
    "Runtime, measured 2026-12-01 on a 2-core machine whose cores other jobs kept busy (load "
    "average 2-8): the default preset (1M x 100 pool, budget 500; 1.6 GB of memory) took 12 "
    "minutes, --preset quick (50k x 100) 30 s to 100 s; a quiet machine is faster. "
    "--backends cpu skips the faiss and torch backends.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=sorted(PRESETS), default="default",
                   help="which pools to time (default: a 1M x 100 clustered pool, 1,000 labeled, budget 500)")
    p.add_argument("--n", type=int, help="rows (overrides the preset with one custom case)")
    p.add_argument("--c", type=int, default=100, help="classes, with --n")
    p.add_argument("--budget", type=int, default=200, help="picks, with --n")
    p.add_argument("--dtype", default="float32", choices=["float16", "float32", "float64"], help="with --n")
    p.add_argument("--labeled-frac", type=float, default=0.01, help="fraction labeled, with --n")
    p.add_argument("--paper-budget", type=int, default=10,
                   help="budget at which the paper's algorithm is timed and extrapolated (0: skip)")
    p.add_argument("--backends", help="comma-separated pcoreset backends (default: cpu,faiss,torch)")
    from ._paths import add_output

    add_output(p, "--json", help="also write the results to this JSON file (checked before the run)")


def main(args) -> int:
    from ._paths import check_path_args

    check_path_args(args)  # --json, before minutes of timing (also for benchmarks/select_cpu.py)
    cases = PRESETS[args.preset]
    if args.n:
        cases = [dict(n=args.n, c=args.c, budget=args.budget, dtype=args.dtype,
                      labeled_frac=args.labeled_frac, paper_budget=args.paper_budget or None)]
    backends = args.backends.split(",") if args.backends else None
    bw = read_bandwidth_gbs()
    print(f"pcoreset bench  {version_line()}  {time.strftime('%Y-%m-%d')}")
    print(f"machine: {machine_line()}; measured read bandwidth {bw:.1f} GB/s")
    results = []
    for case in cases:
        r = run_case(backends=backends, bandwidth=bw, **case)
        results.append(r)
        print()
        print(format_case(r), flush=True)
    print()
    print(legend(bw))
    if args.json:
        import pcoreset

        tmp = f"{args.json}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump({"machine": machine_line(), "read_GBps": bw, "commit": git_commit(),
                       "version": pcoreset.__version__, "date": time.strftime("%Y-%m-%d"),
                       "cases": results}, f, indent=2)
        os.replace(tmp, args.json)
    return 0

"""Per-step communication overhead of pcoreset.distributed.select (gloo, CPU).

Starts `--ranks` processes (default 2) on this machine, each holding an equal
shard of a clustered softmax pool, and reports per greedy step:
  - update: the local fused update + argmax pass on the shard,
  - reduce: the all_reduce(MAX) of the 8-byte key (including waiting for the
    slowest rank's update: the load imbalance shows up here),
  - broadcast: the owner's broadcast of the C-value center row,
and, for comparison, the step time of single-process `pcoreset.select` on
the whole pool and bare gloo latencies (all_reduce of 8 bytes, broadcast of
C float32 values) measured in a loop.

    python -m benchmarks.bench_distributed --n 400000 --c 100 --budget 300
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import tempfile
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def make_pool(n: int, c: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, 3.0, (32, c))
    logits = centers[rng.integers(0, 32, n)] + rng.normal(0.0, 1.5, (n, c))
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def _latency(fn, repeats: int) -> float:
    for _ in range(10):
        fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def _worker(rank, world, store, out, args):
    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=600))
    from pcoreset import distributed as pd

    x = make_pool(args.n, args.c)
    per = args.n // world
    shard = x[rank * per:(rank + 1) * per if rank < world - 1 else args.n]
    labeled = np.arange(0, args.n, max(1, args.n // args.labeled), dtype=np.int64)[:args.labeled]
    result = {}
    for prune in (True, False):
        dist.barrier()
        pd.select(shard, labeled, args.budget, labeled_is_global=True, prune=prune,
                  num_threads=args.threads, timeout=600)
        s = dict(pd.last_stats)
        steps = max(1, s["steps"])
        result["pruned" if prune else "dense"] = {
            "update_ms": 1e3 * s["update_s"] / steps,
            "reduce_ms": 1e3 * s["reduce_s"] / steps,
            "broadcast_ms": 1e3 * s["broadcast_s"] / steps,
            "step_ms": 1e3 * (s["update_s"] + s["reduce_s"] + s["broadcast_s"]) / steps,
            "start_s": s["start_s"],
        }
    key = torch.zeros(1, dtype=torch.int64)
    row = torch.zeros(args.c, dtype=torch.float32)
    dist.barrier()
    result["allreduce_8B_us"] = 1e6 * _latency(lambda: dist.all_reduce(key, op=dist.ReduceOp.MAX), 300)
    result["broadcast_row_us"] = 1e6 * _latency(lambda: dist.broadcast(row, src=0), 300)
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)
    dist.destroy_process_group()


def single_process(args) -> dict:
    import pcoreset

    x = make_pool(args.n, args.c)
    labeled = np.arange(0, args.n, max(1, args.n // args.labeled), dtype=np.int64)[:args.labeled]
    out = {}
    for prune in (True, False):
        t0 = time.perf_counter()
        pcoreset.select(x, labeled, 1, prune=prune, num_threads=args.threads, backend="cpu")
        setup = time.perf_counter() - t0
        t0 = time.perf_counter()
        pcoreset.select(x, labeled, args.budget, prune=prune, num_threads=args.threads, backend="cpu")
        total = time.perf_counter() - t0
        out["pruned" if prune else "dense"] = {"step_ms": 1e3 * (total - setup) / max(1, args.budget - 1)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=400_000)
    p.add_argument("--c", type=int, default=100)
    p.add_argument("--budget", type=int, default=300)
    p.add_argument("--labeled", type=int, default=100)
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="CPU threads per rank (and for the single process)")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()

    tmp = tempfile.mkdtemp(prefix="bench_dist_")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(r, args.ranks, os.path.join(tmp, "store"), tmp, args))
             for r in range(args.ranks)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    ranks = [json.load(open(os.path.join(tmp, f"rank{r}.json"))) for r in range(args.ranks)]
    single = single_process(args)
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except OSError:
        commit = "?"
    report = {
        "date": datetime.date.today().isoformat(), "commit": commit, "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(), "torch": torch.__version__, "args": vars(args), "ranks": ranks, "single": single,
    }
    print(f"pcoreset.distributed on gloo: {args.ranks} ranks x {args.threads} thread(s), N={args.n}, C={args.c}, "
          f"float32, {args.labeled} labeled, budget={args.budget}; commit {commit}, {report['date']}")
    print(f"bare gloo: all_reduce(8 B) {ranks[0]['allreduce_8B_us']:.0f} us, "
          f"broadcast({args.c} x float32) {ranks[0]['broadcast_row_us']:.0f} us")
    print(f"{'mode':8} {'1-proc step':>12} {'update':>9} {'reduce':>9} {'bcast':>9} {'dist step':>10} {'comm %':>7}")
    for mode in ("pruned", "dense"):
        r0 = ranks[0][mode]
        comm = max(r[mode]["reduce_ms"] + r[mode]["broadcast_ms"] for r in ranks)
        print(f"{mode:8} {single[mode]['step_ms']:10.3f}ms {r0['update_ms']:7.3f}ms {r0['reduce_ms']:7.3f}ms "
              f"{r0['broadcast_ms']:7.3f}ms {r0['step_ms']:8.3f}ms {100 * comm / r0['step_ms']:6.1f}%")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()

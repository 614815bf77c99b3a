"""GPU benchmark of the CUDA k-center kernel (issue 3).

Cases (clustered pools: softmax of cluster centres plus noise):
  N=1M,  C=1000, 1% labeled, budget 10,000, float16 and float32
  N=10M, C=100,  1,000 labeled, budget 1,000, float16
  N=10k, C=100,  1% labeled, budget 1,000 (launch-overhead bound)
each against a vectorised PyTorch running minimum on the same GPU (one GEMV
+ min + argmax per step, on the same start), with the dense-pass bandwidth
(prune=False) as a fraction of the measured device-to-device copy bandwidth.

    python benchmarks/gpu_bench.py [--json OUT] [--quick]
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time

import numpy as np
import torch

import pcoreset
from pcoreset.backends import get


def clustered(n, c, dtype, seed=0, k=16, noise=2.0, device="cuda"):
    g = torch.Generator(device=device).manual_seed(seed)
    centres = torch.randn(k, c, generator=g, device=device) * 4.0
    out = torch.empty(n, c, dtype=dtype, device=device)
    step = max(1, (256 << 20) // (4 * c))
    for s in range(0, n, step):
        e = min(n, s + step)
        lab = torch.randint(0, k, (e - s,), generator=g, device=device)
        z = centres[lab] + noise * torch.randn(e - s, c, generator=g, device=device)
        out[s:e] = torch.softmax(z, dim=1).to(dtype)
    return out


def copy_bandwidth(nbytes=2 << 30):
    a = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    b.copy_(a)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    reps = 10
    for _ in range(reps):
        b.copy_(a)
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / reps
    del a, b
    return 2 * nbytes / dt / 1e9  # read + write


def timed(fn):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def torch_running_min(x, labeled, budget, mind0):
    """Per step: one GEMV (x @ c), ||x||^2 + ||c||^2 - 2 x.c, min, argmax."""
    xf = x if x.dtype in (torch.float16, torch.bfloat16, torch.float32) else x.float()
    norms = (x.float() ** 2).sum(1)
    mind = mind0.clone()
    mind[labeled] = -1.0
    picks = torch.empty(budget, dtype=torch.int64, device=x.device)
    for t in range(budget):
        p = torch.argmax(mind)
        picks[t] = p
        mind[p] = -1.0
        ctr = xf[p]
        d = norms + (ctr.float() ** 2).sum() - 2.0 * (xf @ ctr).float()
        mind = torch.minimum(mind, d)
    return picks


def start_mind(x, labeled):
    """Squared distance of every row to its nearest labeled row (GEMM, chunked)."""
    ctrs = x[labeled].float()
    cn = (ctrs ** 2).sum(1)
    out = torch.empty(x.shape[0], device=x.device)
    step = max(1, (512 << 20) // (4 * max(len(labeled), 1)))
    for s in range(0, x.shape[0], step):
        r = x[s:s + step].float()
        d = (r ** 2).sum(1, keepdim=True) + cn[None] - 2.0 * r @ ctrs.T
        out[s:s + step] = d.min(1).values
    return out


def run_case(name, n, c, dtype, n_labeled, budget, baseline_steps):
    x = clustered(n, c, dtype)
    gen = np.random.default_rng(0)
    labeled = np.sort(gen.choice(n, n_labeled, replace=False)) if n_labeled else np.zeros(0, np.int64)
    res = {"case": name, "n": n, "c": c, "dtype": str(dtype).replace("torch.", ""), "labeled": n_labeled,
           "budget": budget}
    bytes_per_pass = n * c * x.element_size()
    pcoreset.select(x, labeled, min(budget, 4), backend="cuda")  # warm-up (module, graphs)
    for prune in (True, False):
        (picks, radii), dt = timed(lambda: pcoreset.select(x, labeled, budget, backend="cuda", prune=prune,
                                                          return_radii=True))
        st = get("cuda").last_stats
        # Time of the start alone (budget 1: no update pass) to isolate the steps.
        _, dt0 = timed(lambda: pcoreset.select(x, labeled, 1, backend="cuda", prune=prune))
        steps = max(budget - 1, 1)
        per_step = max(dt - dt0, 1e-9) / steps
        key = "pruned" if prune else "dense"
        res[key] = {"total_s": dt, "start_s": dt0, "per_step_us": per_step * 1e6,
                    "rows_computed_frac": st["rows_computed"] / max(st["rows_visited"], 1),
                    "GBps": bytes_per_pass / per_step / 1e9}
        if prune:
            res["picks_head"] = picks[:5].tolist()
    lab_t = torch.from_numpy(labeled).to(x.device)
    mind0 = start_mind(x, lab_t) if n_labeled else torch.full((n,), float("inf"), device=x.device)
    nb = min(baseline_steps, budget)
    _, dtb = timed(lambda: torch_running_min(x, lab_t, nb, mind0))
    res["torch_running_min"] = {"steps_timed": nb, "per_step_us": dtb / nb * 1e6,
                                "est_total_s": dtb / nb * budget}
    res["speedup_vs_torch"] = res["torch_running_min"]["per_step_us"] / res["pruned"]["per_step_us"]
    x = None  # free the pool before the next case
    torch.cuda.empty_cache()
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("gpu_bench: no CUDA device")
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = None
    out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "python": platform.python_version(),
           "pcoreset": pcoreset.__version__, "commit": commit, "info": pcoreset.info().get("cuda_module"),
           "copy_GBps": copy_bandwidth(), "cases": []}
    print(f"device {out['device']}, copy bandwidth {out['copy_GBps']:.0f} GB/s", flush=True)
    s = 10 if args.quick else 1
    cases = [
        ("1M x 1000 fp16", 1_000_000 // s, 1000, torch.float16, 10_000 // s, 10_000 // s, 200 // s),
        ("1M x 1000 fp32", 1_000_000 // s, 1000, torch.float32, 10_000 // s, 10_000 // s, 200 // s),
        ("10M x 100 fp16", 10_000_000 // s, 100, torch.float16, 1_000, 1_000, 200 // s),
        ("10k x 100 fp32", 10_000, 100, torch.float32, 100, 1_000, 1_000),
    ]
    for case in cases:
        r = run_case(*case)
        out["cases"].append(r)
        r["dense_frac_of_copy_bw"] = r["dense"]["GBps"] / out["copy_GBps"]
        print(f"{r['case']:>16}: pruned {r['pruned']['per_step_us']:9.1f} us/step "
              f"({r['pruned']['rows_computed_frac']:.1%} rows), dense {r['dense']['per_step_us']:9.1f} us/step "
              f"= {r['dense']['GBps']:6.0f} GB/s ({r['dense_frac_of_copy_bw']:.0%} of copy), "
              f"torch {r['torch_running_min']['per_step_us']:9.1f} us/step, "
              f"speedup {r['speedup_vs_torch']:.1f}x, start {r['pruned']['start_s']:.2f}s", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()

"""GPU benchmark of the CUDA k-center kernel.

Cases (clustered pools: softmax of cluster centres plus noise):
  N=1M,  C=1000, 1% labeled, budget 10,000, float16 and float32
  N=10M, C=100,  1,000 labeled, budget 1,000, float16
  N=10k, C=100,  1% labeled, budget 1,000 (launch- and latency-bound)

Each case runs the start once (timed), its state exported, and
every variant continues from a copy of that state (load_state), so only the
greedy steps are timed:
  old      pass v1 (the first kernel's pass), steps as a captured CUDA graph
  v2-graph pass v2, steps as a captured CUDA graph
  v2       pass v2, steps in the persistent cooperative kernel (the default)
each pruned (the real selection) and dense (prune=False: every row read
every step; its bandwidth N * C * bytes / step time against the H200's
nominal 4.3 TB/s and the measured device-to-device copy). A vectorised
PyTorch running minimum on the same GPU (GEMV + min + argmax per step) is
the baseline.

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
from pcoreset import _start
from pcoreset._problem import make_problem
from pcoreset.backends import cuda as cuda_backend

NOMINAL_GBPS = 4300.0  # H200 HBM3e
VARIANTS = (("old", "v1", "graph"), ("v2-graph", "v2", "graph"), ("v2", "v2", "persistent"))


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


def problem_for(x, labeled, budget, prune):
    return make_problem(x, labeled, budget, simplex=False, from_logits=False, temperature=1.0, prune=prune,
                        num_threads=0, progress=None, check_finite=False)


def time_steps(x, labeled, saved, budget, prune, variant, steps):
    """Seconds per greedy step of `budget` picks continuing from the saved
    state after the start, and the state's stats."""
    st = cuda_backend.CudaState(problem_for(x, labeled, budget, prune), steps=steps, pass_variant=variant)
    st.load_state(*saved)
    # Warm-up: kernels loaded, buffers grown and the graph captured at this
    # budget (up to 1,000 steps: a longer run pays a capture of ~1 ms, noise
    # there), then the same start again.
    st.run(min(budget, 1000))
    st.load_state(*saved)
    (picks, _), dt = timed(lambda: st.run(budget))
    return dt / max(budget - 1, 1), st.stats(), picks


def run_case(name, n, c, dtype, n_labeled, budget, dense_budget, baseline_steps, copy_gbps):
    x = clustered(n, c, dtype)
    gen = np.random.default_rng(0)
    labeled = np.sort(gen.choice(n, n_labeled, replace=False)) if n_labeled else np.zeros(0, np.int64)
    res = {"case": name, "n": n, "c": c, "dtype": str(dtype).replace("torch.", ""), "labeled": n_labeled,
           "budget": budget, "dense_budget": dense_budget, "variants": {}}
    bytes_per_pass = n * c * x.element_size()
    started = problem_for(x, labeled, budget, True)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    base = cuda_backend.CudaState(started)
    _start.start_state(cuda_backend.BACKEND, base, started)
    torch.cuda.synchronize()
    res["start_s"] = time.perf_counter() - t0
    saved = base.export_state()
    base = None  # frees its device memory before the variants run
    ref_picks = None
    for label, variant, steps in VARIANTS:
        out = {}
        for prune, b in ((True, budget), (False, dense_budget)):
            per_step, st, picks = time_steps(x, labeled, saved, b, prune, variant, steps)
            key = "pruned" if prune else "dense"
            out[key] = {"per_step_us": per_step * 1e6, "GBps": bytes_per_pass / per_step / 1e9,
                        "rows_computed_frac": st["rows_computed"] / max(st["rows_visited"], 1),
                        "step_mode": st["step_mode"], "cuda_graph": st["cuda_graph"], "pass": st["pass"],
                        "grid_blocks": st["grid_blocks"], "note": st["note"]}
            if prune:
                picks = np.asarray(picks)
                if ref_picks is None:
                    ref_picks = picks
                out["same_picks_as_old"] = bool(np.array_equal(picks, ref_picks))
        out["dense_frac_of_nominal"] = out["dense"]["GBps"] / NOMINAL_GBPS
        out["dense_frac_of_copy"] = out["dense"]["GBps"] / copy_gbps
        res["variants"][label] = out
        print(f"{name:>16} {label:>8}: pruned {out['pruned']['per_step_us']:9.1f} us/step "
              f"({out['pruned']['rows_computed_frac']:.1%} rows, {out['pruned']['step_mode']}), "
              f"dense {out['dense']['per_step_us']:9.1f} us/step = {out['dense']['GBps']:6.0f} GB/s "
              f"({out['dense_frac_of_nominal']:.0%} of 4.3 TB/s, {out['dense_frac_of_copy']:.0%} of copy)",
              flush=True)
    lab_t = torch.from_numpy(labeled).to(x.device)
    mind0 = start_mind(x, lab_t) if n_labeled else torch.full((n,), float("inf"), device=x.device)
    nb = min(baseline_steps, budget)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    torch_running_min(x, lab_t, nb, mind0)
    torch.cuda.synchronize()
    dtb = time.perf_counter() - t0
    res["torch_running_min"] = {"steps_timed": nb, "per_step_us": dtb / nb * 1e6}
    res["speedup_vs_torch"] = res["torch_running_min"]["per_step_us"] / res["variants"]["v2"]["pruned"]["per_step_us"]
    res["speedup_vs_old"] = {k: res["variants"]["old"][k]["per_step_us"] / res["variants"]["v2"][k]["per_step_us"]
                             for k in ("pruned", "dense")}
    print(f"{name:>16}    torch: {res['torch_running_min']['per_step_us']:9.1f} us/step; v2 speedup "
          f"{res['speedup_vs_torch']:.1f}x over torch, {res['speedup_vs_old']['pruned']:.2f}x (pruned) / "
          f"{res['speedup_vs_old']['dense']:.2f}x (dense) over old; start {res['start_s']:.2f} s", flush=True)
    x = mind0 = None  # free the pool before the next case
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
           "pcoreset": pcoreset.__version__, "commit": commit, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
           "info": pcoreset.info().get("cuda_module"), "copy_GBps": copy_bandwidth(), "cases": []}
    print(f"device {out['device']}, copy bandwidth {out['copy_GBps']:.0f} GB/s", flush=True)
    s = 10 if args.quick else 1
    cases = [  # name, n, c, dtype, labeled, budget, dense budget, torch baseline steps
        ("1M x 1000 fp16", 1_000_000 // s, 1000, torch.float16, 10_000 // s, 10_000 // s, 300 // s, 50 // s),
        ("1M x 1000 fp32", 1_000_000 // s, 1000, torch.float32, 10_000 // s, 10_000 // s, 200 // s, 50 // s),
        ("10M x 100 fp16", 10_000_000 // s, 100, torch.float16, 1_000, 1_000, 200 // s, 50 // s),
        ("10k x 100 fp32", 10_000, 100, torch.float32, 100, 1_000, 1_000, 200),
    ]
    for case in cases:
        out["cases"].append(run_case(*case, copy_gbps=out["copy_GBps"]))
        if args.json:  # after every case: a later failure keeps what was measured
            with open(args.json, "w") as f:
                json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()

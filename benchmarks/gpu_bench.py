"""GPU benchmark of the CUDA k-center kernel (run by benchmarks/gpu_check.sh).

First the device-to-device copy bandwidth is measured; every bandwidth is
then reported as a fraction of it and of the card's nominal HBM bandwidth,
looked up by the device's name (NOMINAL_GBPS; null for a card not listed).

Cases, in this order (clustered pools: softmax of cluster centres plus
noise), each skipped when the time left (--seconds) is too short:
  1M  x 1000 float16, 1% labeled, budget 10,000   (the headline pool)
  1M  x 100  float32, 1% labeled, budget 10,000
  10k x 100  float32, 1% labeled, budget 1,000    (per-step time: launch- and latency-bound)
  10M x 100  float16, 1,000 labeled, budget 1,000

Each case runs the start once (timed), its state exported, and every variant
continues from a copy of that state (load_state), so only the greedy steps
are timed:
  plain-persistent     the pass without loads ahead across chunks (the
                       previous kernel), persistent cooperative kernel
  prefetch-persistent  the default: the next chunk's loads before this
                       chunk's math, persistent kernel
  prefetch-graph       the default pass, steps replayed from a CUDA graph
each pruned (the real selection) and dense (prune=False: every row read
every step; bandwidth N * C * bytes / step time). All variants must give the
same picks (same_picks). A PyTorch running minimum on the same GPU (GEMV +
min + argmax per step) is the baseline.

    python benchmarks/gpu_bench.py [--json OUT] [--seconds S] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time

import numpy as np
import torch

import pcoreset
from pcoreset import _start
from pcoreset._problem import make_problem
from pcoreset.backends import cuda as cuda_backend

# Nominal HBM bandwidth (GB/s, NVIDIA datasheets) by a substring of
# torch.cuda.get_device_name(); the first match wins.
NOMINAL_GBPS = (
    ("H200", 4800.0),
    ("H100 NVL", 3900.0),
    ("H100 PCIe", 2000.0),
    ("H100", 3350.0),  # SXM5 80 GB ("NVIDIA H100 80GB HBM3")
    ("A100-SXM4-80GB", 2039.0),
    ("A100 80GB PCIe", 1935.0),
    ("A100", 1555.0),
    ("L40S", 864.0),
)
VARIANTS = (("plain-persistent", "plain", "persistent"), ("prefetch-persistent", "prefetch", "persistent"),
            ("prefetch-graph", "prefetch", "graph"))


def nominal_gbps(name: str):
    for key, gbps in NOMINAL_GBPS:
        if key in name:
            return key, gbps
    return None, None


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
    torch.cuda.empty_cache()
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
    state after the start, the state's stats and the picks."""
    st = cuda_backend.CudaState(problem_for(x, labeled, budget, prune), steps=steps, pass_variant=variant)
    st.load_state(*saved)
    # Warm-up: kernels loaded, buffers grown and the graph captured (up to
    # 1,000 steps), then the same start again.
    st.run(min(budget, 1000))
    st.load_state(*saved)
    (picks, _), dt = timed(lambda: st.run(budget))
    return dt / max(budget - 1, 1), st.stats(), np.asarray(picks)


def run_case(name, n, c, dtype, n_labeled, budget, dense_budget, baseline_steps, copy_gbps, nominal):
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
    ref = {}
    same = True
    for label, variant, steps in VARIANTS:
        out = {}
        for prune, b in ((True, budget), (False, dense_budget)):
            per_step, st, picks = time_steps(x, labeled, saved, b, prune, variant, steps)
            key = "pruned" if prune else "dense"
            gbps = bytes_per_pass / per_step / 1e9
            out[key] = {"per_step_us": per_step * 1e6, "GBps": gbps, "frac_of_copy": gbps / copy_gbps,
                        "frac_of_nominal": gbps / nominal if nominal else None,
                        "rows_computed_frac": st["rows_computed"] / max(st["rows_visited"], 1),
                        "step_mode": st["step_mode"], "cuda_graph": st["cuda_graph"], "pass": st["pass"],
                        "grid_blocks": st["grid_blocks"], "note": st["note"]}
            ref.setdefault(key, picks)
            out[key]["same_picks_as_first_variant"] = bool(np.array_equal(picks, ref[key]))
            same = same and out[key]["same_picks_as_first_variant"]
        res["variants"][label] = out
        nom = f", {out['dense']['frac_of_nominal']:.0%} of nominal" if nominal else ""
        print(f"{name:>16} {label:>19}: pruned {out['pruned']['per_step_us']:9.1f} us/step "
              f"({out['pruned']['rows_computed_frac']:.1%} rows, {out['pruned']['step_mode']}), "
              f"dense {out['dense']['per_step_us']:9.1f} us/step = {out['dense']['GBps']:6.0f} GB/s "
              f"({out['dense']['frac_of_copy']:.0%} of copy{nom})", flush=True)
    res["same_picks"] = same
    lab_t = torch.from_numpy(labeled).to(x.device)
    mind0 = start_mind(x, lab_t) if n_labeled else torch.full((n,), float("inf"), device=x.device)
    nb = min(baseline_steps, budget)
    _, dtb = timed(lambda: torch_running_min(x, lab_t, nb, mind0))
    res["torch_running_min"] = {"steps_timed": nb, "per_step_us": dtb / nb * 1e6}
    new, old = res["variants"]["prefetch-persistent"], res["variants"]["plain-persistent"]
    res["speedup_vs_torch"] = res["torch_running_min"]["per_step_us"] / new["pruned"]["per_step_us"]
    res["prefetch_over_plain"] = {k: old[k]["per_step_us"] / new[k]["per_step_us"] for k in ("pruned", "dense")}
    print(f"{name:>16}    torch: {res['torch_running_min']['per_step_us']:9.1f} us/step; prefetch "
          f"{res['speedup_vs_torch']:.1f}x over torch, {res['prefetch_over_plain']['pruned']:.2f}x (pruned) / "
          f"{res['prefetch_over_plain']['dense']:.2f}x (dense) over plain; same picks {same}; "
          f"start {res['start_s']:.2f} s", flush=True)
    x = mind0 = None  # free the pool before the next case
    torch.cuda.empty_cache()
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write the results here (after every case)")
    ap.add_argument("--seconds", type=float, default=600.0, help="skip the cases that would start after this")
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("gpu_bench: no CUDA device")
    t_start = time.perf_counter()
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = None
    name = torch.cuda.get_device_name()
    key, nominal = nominal_gbps(name)
    out = {"device": name, "nominal_GBps": nominal, "nominal_matched": key, "torch": torch.__version__,
           "python": platform.python_version(), "pcoreset": pcoreset.__version__, "commit": commit,
           "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "loadavg": os.getloadavg(),
           "info": pcoreset.info().get("cuda_module"), "copy_GBps": copy_bandwidth(), "cases": [], "skipped": []}
    out["copy_frac_of_nominal"] = out["copy_GBps"] / nominal if nominal else None
    print(f"device {name}: copy {out['copy_GBps']:.0f} GB/s"
          + (f" = {out['copy_frac_of_nominal']:.0%} of the nominal {nominal:.0f} GB/s ({key})" if nominal
             else " (no nominal bandwidth listed for this card)"), flush=True)
    s = 10 if args.quick else 1
    cases = [  # name, n, c, dtype, labeled, budget, dense budget, torch baseline steps, rough seconds
        ("1M x 1000 fp16", 1_000_000 // s, 1000, torch.float16, 10_000 // s, 10_000 // s, 300 // s, 50 // s, 40),
        ("1M x 100 fp32", 1_000_000 // s, 100, torch.float32, 10_000 // s, 10_000 // s, 500 // s, 50 // s, 25),
        ("10k x 100 fp32", 10_000, 100, torch.float32, 100, 1_000, 1_000, 200, 10),
        ("10M x 100 fp16", 10_000_000 // s, 100, torch.float16, 1_000, 1_000, 200 // s, 50 // s, 40),
    ]
    for case in cases:
        *spec, rough = case
        if time.perf_counter() - t_start + rough > args.seconds:
            out["skipped"].append(spec[0])
            print(f"{spec[0]:>16}: skipped (about {rough} s, {args.seconds - (time.perf_counter() - t_start):.0f} s "
                  "left)", flush=True)
            continue
        out["cases"].append(run_case(*spec, copy_gbps=out["copy_GBps"], nominal=nominal))
        if args.json:  # after every case: a later failure keeps what was measured
            with open(args.json, "w") as f:
                json.dump(out, f, indent=2)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()

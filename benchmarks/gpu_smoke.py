"""GPU smoke check: the CUDA backend against backend="cpu", bit for bit.

float16 / float32 / float64 pools of a few shapes (one of 200,000 x 100),
with and without labeled rows, under every step mode (persistent, graph,
launches): picks and radii must equal the CPU kernel's exactly. Prints one
line per case and exits 1 on the first mismatch's summary (all cases run).

    python benchmarks/gpu_smoke.py             # the smoke cases
    python benchmarks/gpu_smoke.py --sanitize  # one small persistent-mode run
                                               # (for compute-sanitizer)
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

SHAPES = ((1037, 7), (3001, 40), (2000, 300))
BIG = (200_000, 100)
MODES = ("persistent", "graph", "launches")
TORCH = {"float16": torch.float16, "float32": torch.float32, "float64": torch.float64}


def pool(n, c, dtype, seed):
    """Clustered rows in the simplex (many near-ties between clusters'
    members), stored in `dtype`."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(16, c, generator=g, dtype=torch.float64) * 4.0
    lab = torch.randint(0, 16, (n,), generator=g)
    z = centres[lab] + 2.0 * torch.randn(n, c, generator=g, dtype=torch.float64)
    return torch.softmax(z, dim=1).to(TORCH[dtype])


def compare(x, labeled, budget, steps):
    import pcoreset

    os.environ["PCORESET_CUDA_STEPS"] = steps
    try:
        pc, rc = pcoreset.select(x.cuda(), labeled, budget, backend="cuda", return_radii=True)
    finally:
        os.environ.pop("PCORESET_CUDA_STEPS", None)
    pp, rp = pcoreset.select(x, labeled, budget, backend="cpu", return_radii=True)
    pc, rc = pc.cpu().numpy(), rc.cpu().numpy()
    pp, rp = np.asarray(pp), np.asarray(rp)
    from pcoreset.backends import get

    mode = get("cuda").last_stats["step_mode"]
    same = np.array_equal(pc, pp) and np.array_equal(rc.view(np.int64), rp.view(np.int64))
    first = int(np.nonzero(pc != pp)[0][0]) if pc.shape == pp.shape and not np.array_equal(pc, pp) else -1
    return same, mode, first


def smoke() -> int:
    cases = [(n, c, dt) for dt in TORCH for (n, c) in SHAPES] + [(*BIG, "float16")]
    bad = 0
    for n, c, dt in cases:
        x = pool(n, c, dt, seed=n + c)
        for labeled in (None, np.unique(np.linspace(0, n - 1, 50 if n <= 10_000 else 200).astype(np.int64))):
            for steps in MODES:
                t0 = time.perf_counter()
                same, mode, first = compare(x, labeled, 100, steps)
                tag = "labeled" if labeled is not None else "mean-start"
                ok = same and mode == steps
                bad += not ok
                print(f"{'ok  ' if ok else 'FAIL'} {n}x{c} {dt} {tag} steps={steps} (ran {mode})"
                      + ("" if same else f" picks differ from step {first}")
                      + f" {time.perf_counter() - t0:.1f}s", flush=True)
    print(f"smoke: {bad} of {len(cases) * 2 * len(MODES)} cases differ from the CPU kernel", flush=True)
    return 1 if bad else 0


def sanitize() -> int:
    """One small seeded run per accumulation type in the persistent mode,
    through the module directly (few torch kernels for the sanitizer to
    instrument), checked against the CPU state."""
    from pcoreset import _C, _C_cuda

    bad = 0
    for dt in ("float32", "float64"):
        x = pool(3000, 40, dt, seed=7)
        xd = x.cuda()
        torch.cuda.synchronize()
        labeled = np.arange(0, 3000, 97)
        dev = _C_cuda.KCenterState(xd.data_ptr(), dt, 3000, 40, False, 1.0, True, xd.device.index or 0, 0,
                                   "persistent", "prefetch")
        host = _C.KCenterState(x.numpy(), dt, False, 1.0, True, 1)
        dev.seed_rows(labeled)
        host.seed_rows(labeled)
        p, r = dev.run(12)
        q, s = host.run(12)
        ok = np.array_equal(p, q) and np.array_equal(r, s) and dev.stats()["step_mode"] == "persistent"
        bad += not ok
        print(f"{'ok  ' if ok else 'FAIL'} sanitizer run {dt}: {dev.stats()['step_mode']}", flush=True)
    return 1 if bad else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sanitize", action="store_true", help="one small persistent-mode run")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_smoke: no CUDA device", file=sys.stderr)
        return 2
    return sanitize() if args.sanitize else smoke()


if __name__ == "__main__":
    sys.exit(main())

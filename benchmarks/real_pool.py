"""Save a real selection pool: the probabilities a trained ActiveKD student
gives every WordNet noun gloss, for the kernel benchmarks.

The synthetic pools of bench_cells (clustered or confident softmax rows) are
shaped after what students output; this pool is what one did output. The
script

1. builds a CSV of all WordNet 3.0 noun glosses of the 25 noun supersenses
   (82k synsets, 10% held out; Debian's wordnet-base, through
   scripts/build_wordnet_dataset.py),
2. runs ActiveKD on it (bundled MiniLM zero-shot teacher, bag-of-words
   student, PCoreSet picks) for a few rounds,
3. trains the student on the last round's labeled set and writes the rows the
   next PCoreSet round would select in (the student's mixed-head probability
   rows over the whole pool) and the positions of the labeled rows:

    python -m benchmarks.real_pool --out _build/real_pool
    python -m benchmarks.bench_cells --targets --only real

Files written under --out: ``wordnet_all.csv.gz``, ``run/`` (the ActiveKD run
folder; rerunning the command resumes it), ``pool_probs.npy`` (N, 25) float32,
``labeled.npy`` (row positions into pool_probs), ``pool.json`` (what made
them). The teacher's embeddings of 82k glosses take a few minutes on two
cores; they are cached under ``--out/cache``. Nothing here is committed: the
pool is about 7 MiB.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def build_csv(out: Path) -> Path:
    csv_path = out / "wordnet_all.csv.gz"
    if not csv_path.is_file():
        # every synset of every class (per-class above the largest class), 10% held out
        subprocess.run([sys.executable, str(REPO / "scripts" / "build_wordnet_dataset.py"), "--all",
                        "--per-class", "1000000", "--test-per-class", "100000", "--out", str(csv_path)],
                       check=True)
    return csv_path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(REPO / "_build" / "real_pool"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--budget", type=int, default=500)
    p.add_argument("--initial-per-class", type=int, default=4)
    p.add_argument("--epochs", type=int, default=10)
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from pcoreset.activekd import _io, loop
    from pcoreset.activekd.config import RunConfig

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = build_csv(out)
    cfg = RunConfig(dataset=str(csv_path), strategy="pcoreset", rounds=args.rounds, budget=args.budget,
                    initial_per_class=args.initial_per_class, epochs=args.epochs, cache_dir=str(out / "cache"))
    t0 = time.perf_counter()
    result = loop.run(cfg, out / "run", progress=False, plot=False)
    if result.status != "finished":
        raise SystemExit(f"the ActiveKD run stopped: {result.status}")
    # The pool the next round would select in: reopen the finished run (every
    # round is reused, nothing is retrained), train on its final labeled set.
    with _io.run_lock(out / "run"):
        run = loop._Run.start(cfg, out / "run", progress=False, echo=lambda s: None)
        run.go(plot=False)
        run.train(args.rounds + 1)
        state, _ = loop._pool_state(run.student, run.ds, run.pool, run.labeled_rows, run.labeled_y)
    space, selector = run.strategy.selector(state)
    space = np.ascontiguousarray(space, dtype=np.float32)
    labeled = np.flatnonzero(state.labeled_mask).astype(np.int64)
    np.save(out / "pool_probs.npy", space)
    np.save(out / "labeled.npy", labeled)
    top = np.sort(space, axis=1)[:, ::-1]
    info = {"rows": int(space.shape[0]), "classes": int(space.shape[1]), "labeled": int(labeled.size),
            "rounds": args.rounds, "budget": args.budget, "epochs": args.epochs,
            "student": run.cfg.student, "teacher": run.cfg.teacher,
            "test_accuracy_by_round": [m.get("test_acc") for m in result.metrics],
            "median_top_probability": float(np.median(top[:, 0])),
            "rows_with_top_above_0.99": float((top[:, 0] > 0.99).mean()),
            "distinct_rows": int(np.unique(space, axis=0).shape[0]),
            "seconds": round(time.perf_counter() - t0, 1)}
    (out / "pool.json").write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info, indent=1))
    print(f"wrote {out / 'pool_probs.npy'} and {out / 'labeled.npy'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

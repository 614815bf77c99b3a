"""The `pcoreset` command line: info, bench, select, and (from the ActiveKD
driver) run, demo, report, export-picks."""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def _cmd_info(args) -> int:
    import json

    from .info import format_info, info

    d = info()
    print(json.dumps(d, indent=2, default=str) if args.json else format_info(d))
    return 0


def _cmd_bench(args) -> int:
    from .bench import main as bench_main

    return bench_main(args)


def _cmd_select(args) -> int:
    import numpy as np

    from .errors import InvalidInputError
    from .select import select

    if args.distributed:
        if not args.shards or not args.out:
            raise InvalidInputError("select --distributed needs --shards and --out")
        from .distributed import main_select_distributed

        return main_select_distributed(args)
    if not args.probs:
        raise InvalidInputError("select needs a .npy pool file (or --distributed with --shards)")
    labeled = np.zeros(0, dtype=np.int64)
    if args.labeled:
        from .distributed import _read_labeled

        labeled = _read_labeled(args.labeled)
    picks, radii = select(args.probs, labeled, args.budget, from_logits=args.from_logits,
                          temperature=args.temperature, backend=args.backend, progress=True,
                          num_threads=args.threads, return_radii=True)
    if args.radii_out:
        np.save(args.radii_out, radii, allow_pickle=False)
    if args.out:
        np.save(args.out, picks, allow_pickle=False)
        print(f"wrote {len(picks)} picks to {args.out}")
    else:
        print("\n".join(str(int(i)) for i in picks))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pcoreset",
        description="PCoreSet: k-center greedy selection in probability space, and ActiveKD runs.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("info", help="print how pcoreset was built and which backends run here")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("bench", help="time the backends against PyTorch and the paper's algorithm")
    from .bench import add_arguments

    add_arguments(p)
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser(
        "select", help="select rows from a .npy file of probabilities or logits",
        description="Select rows by PCoreSet from a .npy pool. With --distributed, run under "
                    "torchrun with one shard per rank: torchrun --standalone --nproc_per_node=2 "
                    "-m pcoreset select --distributed --shards 'pool.{rank}.npy' --budget 1000 --out picks.npy")
    p.add_argument("probs", nargs="?", help=".npy file, (N, C) probabilities (or logits with --from-logits)")
    p.add_argument("--labeled", help=".npy file (or text file, one per line) of labeled row indices")
    p.add_argument("--budget", type=int, required=True, help="rows to pick")
    p.add_argument("--from-logits", action="store_true", help="rows are logits")
    p.add_argument("--temperature", type=float, default=1.0, help="softmax temperature for logits")
    p.add_argument("--backend", default="auto", help="auto, cpu, cuda, faiss or torch")
    p.add_argument("--out", help="write the picks to this .npy file instead of printing them")
    p.add_argument("--radii-out", help="also write the coverage radii to this .npy file")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all)")
    p.add_argument("--distributed", action="store_true",
                   help="run under torchrun: every rank reads its own shard (see --shards)")
    p.add_argument("--shards", nargs="+",
                   help="with --distributed: one .npy shard per rank in rank order, or a pattern with {rank}")
    p.add_argument("--dist-backend", default="gloo", help="with --distributed: gloo (CPU) or nccl (GPU)")
    p.add_argument("--timeout", type=float, default=1800.0,
                   help="with --distributed: seconds a collective may wait for the other ranks")
    p.set_defaults(func=_cmd_select)

    try:
        from .activekd.cli import register
    except ImportError:
        register = None
    if register is not None:
        register(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .errors import PcoresetError

    try:
        return int(args.func(args) or 0)
    except PcoresetError as exc:
        print(f"pcoreset: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pcoreset: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

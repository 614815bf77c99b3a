"""The `pcoreset` command line: info, bench, select, and (from the ActiveKD
driver) run, demo, report, export-picks."""
from __future__ import annotations

import argparse
import os
import re
import sys
from typing import List, Optional

from . import _paths
from ._paths import add_input, add_output
from .errors import InvalidInputError, PcoresetError


def _cmd_info(args) -> int:
    import json

    from .info import format_info, info

    d = info()
    print(json.dumps(d, indent=2, default=str) if args.json else format_info(d))
    return 0


def _cmd_bench(args) -> int:
    from .bench import main as bench_main

    return bench_main(args)


# API argument names in select's messages -> the options a CLI user typed
_API_TO_OPTION = [
    (re.compile(r", or use kcenter_greedy for arbitrary vectors"), ""),  # not a CLI command
    (re.compile(r"\bfrom_logits=True\b"), "--from-logits"),
    (re.compile(r"\blabeled_idx\b"), "--labeled"),
    (re.compile(r"\bbudget="), "--budget="),
    (re.compile(r"\btemperature="), "--temperature="),
]


def _in_cli_words(exc: Exception) -> str:
    """The message of a selection error with the Python argument names
    (from_logits=True, labeled_idx) replaced by the CLI options."""
    msg = str(exc)
    for pattern, option in _API_TO_OPTION:
        msg = pattern.sub(option, msg)
    return msg


def _rank_and_world():
    """This process's rank and the world size: from the process group when
    the caller started one, else from the torchrun environment."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise InvalidInputError("select --distributed runs under torchrun, which sets RANK and WORLD_SIZE: "
                                "torchrun --standalone --nproc_per_node=2 -m pcoreset select --distributed ...")
    try:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    except ValueError:
        raise InvalidInputError(f"RANK={os.environ.get('RANK')!r} / WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} "
                                "are not integers; run under torchrun") from None


def _check_own_shard(args) -> None:
    """--shards: this rank's file, checked before joining the process group
    (every rank checks its own shard: on several nodes the shards may be local)."""
    rank, world = _rank_and_world()
    shards = list(args.shards)
    if len(shards) == 1 and "{rank}" in shards[0]:
        path = shards[0].replace("{rank}", str(rank))
    elif len(shards) == world:
        path = shards[rank]
    else:
        raise InvalidInputError(f"--shards has {len(shards)} files for {world} ranks; pass one per "
                                "rank or one pattern with {rank}")
    _paths.read_npy_header(path, f"--shards (rank {rank})")


def _writes_outputs(args) -> bool:
    """Whether this process writes the output files (with --distributed only rank 0 does)."""
    if not getattr(args, "distributed", False):
        return True
    if not getattr(args, "shards", None) or not getattr(args, "out", None):
        raise InvalidInputError("select --distributed needs --shards and --out")
    return _rank_and_world()[0] == 0


def _cmd_select(args) -> int:
    from . import _problem

    hint = getattr(_problem, "LOGITS_HINT", None)  # the selection core's wording hook, where present
    token = hint.set("pass --from-logits") if hint is not None else None
    try:
        return _select(args)
    finally:
        if token is not None:
            hint.reset(token)


def _select(args) -> int:
    import numpy as np

    from .select import select

    if args.distributed:
        if not args.shards or not args.out:
            raise InvalidInputError("select --distributed needs --shards and --out")
        if args.probs:
            raise InvalidInputError(f"select --distributed reads --shards, not a pool file ({args.probs})")
        _check_own_shard(args)
        _paths.read_index_file(args.labeled)  # a bad file fails here, before the process group starts
        from .distributed import main_select_distributed

        try:
            return main_select_distributed(args)
        except InvalidInputError as exc:
            raise InvalidInputError(_in_cli_words(exc)) from None
    if not args.probs:
        raise InvalidInputError("select needs a .npy pool file (or --distributed with --shards)")
    if args.shards:
        raise InvalidInputError("--shards needs --distributed")
    _paths.read_npy_header(args.probs, "probs")
    labeled = _paths.read_index_file(args.labeled, "--labeled")
    try:
        picks, radii = select(args.probs, labeled, args.budget, from_logits=args.from_logits,
                              temperature=args.temperature, backend=args.backend, progress=True,
                              num_threads=args.threads, return_radii=True)
    except InvalidInputError as exc:
        raise InvalidInputError(_in_cli_words(exc)) from None
    if args.radii_out:
        _paths.save_npy_atomic(args.radii_out, np.asarray(radii))
    if args.out:
        _paths.save_npy_atomic(args.out, np.asarray(picks))
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

    from .bench import DESCRIPTION as bench_description, add_arguments

    p = sub.add_parser("bench", help="time the backends against PyTorch and the paper's algorithm "
                                     "(the default preset takes minutes: see bench --help)",
                       description=bench_description)

    add_arguments(p)
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser(
        "select", help="select rows from a .npy file of probabilities or logits",
        description="Select rows by PCoreSet from a .npy pool. With --distributed, run under "
                    "torchrun with one shard per rank: torchrun --standalone --nproc_per_node=2 "
                    "-m pcoreset select --distributed --shards 'pool.{rank}.npy' --budget 1000 --out picks.npy")
    add_input(p, "probs", nargs="?", suffixes=(".npy",),
              help=".npy file, (N, C) probabilities (or logits with --from-logits)")
    add_input(p, "--labeled", help=".npy file of integers, or a text file with one row index per line")
    p.add_argument("--budget", type=int, required=True, help="rows to pick")
    p.add_argument("--from-logits", action="store_true", help="rows are logits")
    p.add_argument("--temperature", type=float, default=1.0, help="softmax temperature for logits")
    p.add_argument("--backend", default="auto", help="auto, cpu, cuda, faiss or torch")
    add_output(p, "--out", suffixes=(".npy",), help="write the picks to this .npy file instead of printing them")
    add_output(p, "--radii-out", suffixes=(".npy",), help="also write the coverage radii to this .npy file")
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
    try:
        # every file option declared with add_input/add_output, before any work
        _paths.check_path_args(args, outputs=_writes_outputs(args))
        return int(args.func(args) or 0)
    except PcoresetError as exc:
        print(f"pcoreset: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. the disk filled up while writing a result
        where = f" {exc.filename}" if exc.filename else ""
        print(f"pcoreset: error:{where} {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pcoreset: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

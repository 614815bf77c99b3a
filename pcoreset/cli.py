"""The `pcoreset` command line: info, bench, select, coverage, and (from the
ActiveKD driver) run, demo, report, export-picks."""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import List, Optional

from . import _paths
from ._paths import add_input, add_output
from .errors import InvalidInputError, MissingDependencyError, PcoresetError


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
    _paths.load_npy(path, f"--shards (rank {rank})", mmap=True)  # header and size: a truncated shard fails here


def _writes_outputs(args) -> bool:
    """Whether this process writes the output files (with --distributed only rank 0 does)."""
    if not getattr(args, "distributed", False):
        return True
    if not getattr(args, "shards", None) or not getattr(args, "out", None):
        raise InvalidInputError("select --distributed needs --shards and --out")
    return _rank_and_world()[0] == 0


def main_select_distributed(args) -> int:
    """`pcoreset select --distributed`: run under torchrun, one shard per rank.

    Initialises the default process group from the torchrun environment if
    it is not yet initialised, selects with global labeled indices, and has
    rank 0 write the picks (and radii) atomically. Returns the exit code.
    """
    import datetime

    import numpy as np
    import torch.distributed as dist

    from .distributed import last_stats, select

    created = False
    if not dist.is_initialized():
        dist.init_process_group(args.dist_backend, timeout=datetime.timedelta(seconds=args.timeout))
        created = True
    try:
        rank, world = dist.get_rank(), dist.get_world_size()
        shards = list(args.shards)
        if len(shards) == 1 and "{rank}" in shards[0]:
            path = shards[0].format(rank=rank)
        elif len(shards) == world:
            path = shards[rank]
        else:
            raise InvalidInputError(f"--shards has {len(shards)} files for {world} ranks; pass one per "
                                    "rank or one pattern with {rank}")
        want_radii = args.radii_out is not None
        centers = None
        if getattr(args, "centers", None):
            centers = _read_centers(args.centers)  # every rank reads it
        if getattr(args, "stop_radius", None) is not None:
            raise InvalidInputError("--stop-radius is not available with --distributed; pass --budget")
        result = select(path, _paths.read_index_file(args.labeled), args.budget, labeled_is_global=True,
                        centers=centers, from_logits=args.from_logits, temperature=args.temperature,
                        timeout=args.timeout, return_radii=want_radii, num_threads=args.threads)
        picks, radii = result if want_radii else (result, None)
        if rank == 0:
            _paths.save_npy_atomic(args.out, np.asarray(picks))
            if want_radii:
                _paths.save_npy_atomic(args.radii_out, np.asarray(radii))
            print(f"picked {len(picks)} rows of {last_stats.get('n')} on {world} ranks "
                  f"in {last_stats.get('total_s', 0.0):.2f}s -> {args.out}")
        return 0
    finally:
        if created:
            dist.destroy_process_group()


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

    _check_budget_options(args)
    if args.distributed:
        if args.stop_radius is not None:
            raise InvalidInputError("--stop-radius is not available with --distributed; pass --budget")
        if not args.shards or not args.out:
            raise InvalidInputError("select --distributed needs --shards and --out")
        if args.probs:
            raise InvalidInputError(f"select --distributed reads --shards, not a pool file ({args.probs})")
        _check_own_shard(args)
        _paths.read_index_file(args.labeled)  # a bad file fails here, before the process group starts
        try:
            return main_select_distributed(args)
        except InvalidInputError as exc:
            raise InvalidInputError(_in_cli_words(exc)) from None
    if not args.probs:
        raise InvalidInputError("select needs a .npy pool file (or --distributed with --shards)")
    if args.shards:
        raise InvalidInputError("--shards needs --distributed")
    _paths.load_npy(args.probs, "probs", mmap=True)  # a damaged or truncated file fails here, in one line
    labeled = _paths.read_index_file(args.labeled, "--labeled")
    centers = _read_centers(args.centers)
    try:
        picks, radii = select(args.probs, labeled, args.budget, centers=centers, stop_radius=args.stop_radius,
                              max_budget=args.max_budget, from_logits=args.from_logits,
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


def _read_centers(path):
    """--centers: an (M, C) .npy of center vectors (memory-mapped, never unpickled)."""
    if not path:
        return None
    return _paths.load_npy(path, "--centers", mmap=True)


def _check_budget_options(args) -> None:
    if args.stop_radius is None:
        if args.budget is None:
            raise InvalidInputError("select needs --budget N, or --stop-radius R (with --max-budget M as a cap)")
        if args.max_budget is not None:
            raise InvalidInputError("--max-budget applies with --stop-radius; pass --budget alone otherwise")
    elif args.budget is not None and args.max_budget is not None:
        raise InvalidInputError("pass --budget or --max-budget with --stop-radius, not both")


def _cmd_coverage(args) -> int:
    """Radius against picks: how far the farthest remaining row is from its
    nearest center after each pick, up to --max-budget picks (or until the
    pool is covered to --stop-radius)."""
    import csv
    import io

    import numpy as np

    from . import _problem
    from .selector import Selector

    _paths.load_npy(args.probs, "probs", mmap=True)  # a damaged or truncated file fails here, in one line
    labeled = _paths.read_index_file(args.labeled, "--labeled")
    centers = _read_centers(args.centers)
    if args.max_budget is None and args.stop_radius is None:
        raise InvalidInputError("coverage needs --max-budget M (picks to trace) or --stop-radius R")
    token = _problem.LOGITS_HINT.set("pass --from-logits")
    try:
        sel = Selector(args.probs, labeled, centers=centers, from_logits=args.from_logits,
                       temperature=args.temperature, backend=args.backend, num_threads=args.threads,
                       progress=True)
        picks, radii = sel.until(args.stop_radius or 0.0, args.max_budget)
    except InvalidInputError as exc:
        raise InvalidInputError(_in_cli_words(exc)) from None
    finally:
        _problem.LOGITS_HINT.reset(token)
    picks, radii = np.asarray(picks), np.asarray(radii)
    after = np.append(radii[1:], sel.radius) if picks.size else np.array([])
    text = io.StringIO()
    w = csv.writer(text, lineterminator="\n")
    w.writerow(["picks", "row", "radius_before", "radius_after"])
    for k in range(picks.size):
        w.writerow([k + 1, int(picks[k]), repr(float(radii[k])), repr(float(after[k]))])
    csv_path = args.csv or (str(Path(args.plot).with_suffix(".csv")) if args.plot else None)
    if csv_path:
        _paths.save_text_atomic(csv_path, text.getvalue())
        print(f"wrote the coverage of {picks.size} picks to {csv_path}")
    else:
        sys.stdout.write(text.getvalue())
    if args.plot:
        _plot_coverage(args.plot, after, labeled.size + (0 if centers is None else len(centers)),
                       Path(args.probs).name)
        print(f"wrote {args.plot}")
    return 0


def _plot_coverage(path: str, radius_after, n_initial: int, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    ax.plot(np.arange(1, len(radius_after) + 1), radius_after, color="#1f77b4", lw=1.6)
    ax.set_xlabel("picks")
    ax.set_ylabel("coverage radius (L2 in probability space)")
    ax.set_title(f"{title}: {n_initial} initial centers", fontsize=10)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = str(Path(path).with_name(f".{Path(path).name}.tmp{os.getpid()}{Path(path).suffix}"))
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pcoreset",
        description="PCoreSet: k-center greedy selection in probability space, and ActiveKD runs.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"pcoreset {__version__}")
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
    add_input(p, "--centers", suffixes=(".npy",),
              help=".npy file of (M, C) initial center vectors that are not rows of the pool "
                   "(e.g. the labeled set's probabilities)")
    p.add_argument("--budget", type=int, help="rows to pick (or --stop-radius)")
    p.add_argument("--stop-radius", type=float,
                   help="pick until every remaining row is within this distance of a center")
    p.add_argument("--max-budget", type=int, help="with --stop-radius: at most this many picks")
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

    p = sub.add_parser(
        "coverage", help="trace the coverage radius against the number of picks (CSV and a plot)",
        description="The coverage curve of a pool: after each pick, the distance of the farthest "
                    "remaining row to its nearest center. Use it to choose a budget. Writes a CSV "
                    "(picks, row, radius_before, radius_after) and, with --plot, a PNG.")
    add_input(p, "probs", suffixes=(".npy",), help=".npy file, (N, C) probabilities (or logits with --from-logits)")
    add_input(p, "--labeled", help=".npy file of integers, or a text file with one row index per line")
    add_input(p, "--centers", suffixes=(".npy",), help=".npy file of (M, C) initial center vectors")
    p.add_argument("--max-budget", type=int, help="picks to trace")
    p.add_argument("--stop-radius", type=float, help="stop once the pool is covered to this radius")
    add_output(p, "--plot", suffixes=(".png", ".pdf", ".svg"), help="write the curve to this image")
    add_output(p, "--csv", suffixes=(".csv",), help="the CSV (default: beside --plot; else standard output)")
    p.add_argument("--from-logits", action="store_true", help="rows are logits")
    p.add_argument("--temperature", type=float, default=1.0, help="softmax temperature for logits")
    p.add_argument("--backend", default="auto", help="auto, cpu, cuda, faiss or torch")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = all)")
    p.set_defaults(func=_cmd_coverage)

    try:
        from .activekd.cli import register
    except MissingDependencyError as exc:  # the NumPy-only install: the commands say what to install
        register = _needs_torch(exc)
    except ImportError:
        register = None
    if register is not None:
        register(sub)
    return parser


# the ActiveKD driver's subcommands (pcoreset.activekd.cli)
_ACTIVEKD_COMMANDS = {
    "run": "run or resume an ActiveKD active-learning run",
    "demo": "all six strategies x {ActiveKD, No Distill} on embedded WordNet data, paired over seeds",
    "report": "tables, paired comparisons and curves across run directories",
    "export-picks": "write a round's picks to CSV for a person to label",
}


def _needs_torch(exc: Exception):
    """register(sub) for an install without torch: the ActiveKD commands stay
    listed and fail with the message of `exc` (which names the extra)."""

    def fail(args) -> int:
        raise MissingDependencyError(str(exc))

    class TakeAll(argparse.ArgumentParser):
        # whatever options follow (`pcoreset demo --quick`), the command fails the same way
        def parse_known_args(self, args=None, namespace=None):
            namespace = namespace if namespace is not None else argparse.Namespace()
            namespace.func = fail
            return namespace, []

    def register(sub) -> None:
        saved, sub._parser_class = sub._parser_class, TakeAll
        try:
            for name, help_text in _ACTIVEKD_COMMANDS.items():
                sub.add_parser(name, help=f"{help_text} (needs torch: pip install \"pcoreset[torch]\")")
        finally:
            sub._parser_class = saved

    return register


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

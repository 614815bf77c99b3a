"""Subcommands of the ActiveKD driver: run, demo, report, export-picks
(registered into ``pcoreset``'s parser by :func:`register`)."""
from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

from .. import _paths
from ..errors import InvalidInputError, PcoresetError
from . import _io
from .config import RunConfig, read_config_file, read_saved_config

# flag -> (RunConfig field, type, help). Defaults are None so that only flags the
# user typed override the config file / the saved run.
_RUN_FLAGS = [
    ("--dataset", "dataset", str, "CSV (.csv/.csv.gz: text[,id,label,split]), 'embedded:wordnet' (default, 6 "
     "classes), 'embedded:wordnet25' (25 classes), fashion-mnist[:DIR], imagefolder:DIR or torchvision:NAME:ROOT"),
    ("--classes", "classes", None, "class names in label order (default: the sorted labels)"),
    ("--max-pool", "max_pool", int, "use at most this many pool rows (0 = all)"),
    ("--max-test", "max_test", int, "use at most this many test rows (0 = all)"),
    ("--teacher", "teacher", str, "zeroshot-text (default), precomputed, clip (zero-shot CLIP) or fewshot (CLAP-style probe)"),
    ("--teacher-model", "teacher_model", str, "text: sentence-transformers dir/name (default: bundled MiniLM); "
     "clip/fewshot: ARCH[:PRETRAINED tag or checkpoint file] (default ViT-B-32:openai)"),
    ("--teacher-logits", "teacher_logits", str, "(N, C) .npy/.pt logits file for --teacher precomputed"),
    ("--prompt", "prompt", str, "class prompt template(s), '|'-separated (default: the teacher's: text "
     "'a kind of {}.'; clip: the dataset's or 'a photo of a {}.')"),
    ("--teacher-scale", "teacher_scale", float, "zero-shot logits = scale * cosine (default: the teacher's: "
     "text 50, clip 100)"),
    ("--student", "student", str, "bow (text), smallcnn, resnet18, mobilenet_v2, resnet18-imagenet, "
     "mobilenet_v2-imagenet (default: bow for text, resnet18 for images)"),
    ("--strategy", "strategy", str, "random, entropy, coreset, badge, class_balanced or pcoreset (default)"),
    ("--rounds", "rounds", int, "selection rounds after round 0 (default 5)"),
    ("--budget", "budget", int, "samples labeled per round (default 30)"),
    ("--initial-per-class", "initial_per_class", int, "round-0 labels per class (default 1)"),
    ("--initial-labeled", "initial_labeled", str, "file of sample ids for round 0 instead"),
    ("--oracle", "oracle", str, "where people's labels come from: a CSV id,label file (see export-picks) or "
     "label-studio://HOST:PORT/PROJECT_ID"),
    ("--oracle-wait", "oracle_wait", float, "seconds to wait for the round's labels before stopping (default 0)"),
    ("--seed", "seed", int, "random seed (default 0)"),
    ("--epochs", "epochs", int, "training epochs over the pool per round (default 30)"),
    ("--lr", "lr", float, "Adam learning rate (default 0.03)"),
    ("--batch-size", "batch_size", int, "batch size (default 512)"),
    ("--temperature", "temperature", float, "distillation temperature (default 2)"),
    ("--cache-dir", "cache_dir", str, "teacher-output cache (default ~/.cache/pcoreset or $PCORESET_CACHE)"),
]


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    for flag, dest, typ, help_ in _RUN_FLAGS:
        if dest == "classes":
            p.add_argument(flag, dest=dest, nargs="+", default=None, help=help_)
        else:
            p.add_argument(flag, dest=dest, type=typ, default=None, help=help_)
    p.add_argument("--no-distill", dest="distill", action="store_false", default=None,
                   help="train the CE head only (the paper's 'No Distill' baseline)")
    p.add_argument("--strategy-kwargs", default=None, help="JSON object of strategy options")


def _explicit(args) -> dict:
    out = {dest: getattr(args, dest) for _, dest, _, _ in _RUN_FLAGS if getattr(args, dest) is not None}
    if args.distill is not None:
        out["distill"] = args.distill
    if args.strategy_kwargs is not None:
        try:
            out["strategy_kwargs"] = json.loads(args.strategy_kwargs)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"--strategy-kwargs {args.strategy_kwargs!r} is not JSON: {exc}") from exc
    return out


def config_from_args(args) -> RunConfig:
    """defaults <- saved run config (when resuming) or --config file <- typed flags."""
    base = {}
    if args.config:
        base.update(read_config_file(args.config))
    elif (Path(args.out) / "config.json").is_file():
        base.update(read_saved_config(args.out).to_dict())
    base.update(_explicit(args))
    source = f"--config {args.config!r}" if args.config else "settings"
    return RunConfig.from_dict(base, source=source).validate(source)


def _one_line(func):
    """Run a subcommand with its file arguments checked first, and an OSError met
    while writing (a full disk, a permission changed meanwhile) reported in one
    line rather than as a traceback."""
    def wrapped(args) -> int:
        _paths.check_path_args(args)
        try:
            return func(args)
        except OSError as exc:
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            raise PcoresetError(f"{where}{exc.strerror or exc}") from None

    wrapped.__name__ = func.__name__
    return wrapped


@_one_line
def _cmd_run(args) -> int:
    from .loop import run

    _paths.check_output_dir(Path(args.out).expanduser(), "--out")
    with _io.run_lock(args.out):  # held from the first read of the run folder
        cfg = config_from_args(args)
        res = run(cfg, args.out, progress=not args.quiet, echo=(lambda s: None) if args.quiet else print)
    if res.status == "finished":
        print(f"finished: {len(res.metrics)} rounds in {res.run_dir} (summary.csv, curves.png)")
    elif args.quiet:
        print(f"round {res.pending_round}: picks await labels (pcoreset export-picks {res.run_dir})")
    return 0


@_one_line
def _cmd_demo(args) -> int:
    from .demo import demo
    from .teachers import default_cache_dir

    _paths.check_output_dir(Path(args.out).expanduser(), "--out")
    _paths.check_output_dir(Path(args.cache_dir or default_cache_dir()).expanduser(), "--cache-dir")
    demo(out=args.out, quick=args.quick, seeds=args.seeds, strategies=args.strategies, cache_dir=args.cache_dir,
         jobs=args.jobs, dataset=args.dataset)
    return 0


@_one_line
def _cmd_report(args) -> int:
    from .report import find_runs, report

    find_runs(args.run_dirs)
    out = args.out if args.out is not None else (args.run_dirs[0] if len(args.run_dirs) == 1 else ".")
    _paths.check_output_dir(Path(out).expanduser(), "--out")
    if (Path(out) / "config.json").is_file():  # writing into a run folder: only while no run works there
        with _io.run_lock(out):
            report(args.run_dirs, out_dir=out, reference=args.against)
    else:
        report(args.run_dirs, out_dir=out, reference=args.against)
    return 0


@_one_line
def _cmd_export(args) -> int:
    text = export_picks(args.run_dir, args.round)
    if args.out in (None, "-"):
        print(text, end="")
    else:
        _io.write_text(args.out, text)
        print(f"wrote {text.count(chr(10)) - 1} picks to {args.out}; fill in the 'label' column and rerun "
              f"`pcoreset run --out {args.run_dir} --oracle {args.out}`")
    return 0


def export_picks(run_dir, round_k=None) -> str:
    """CSV text (round,row,id,text,label) of round `round_k`'s picks (default: the
    latest round with picks); 'label' is blank where no label was given yet."""
    from .datasets import load_dataset
    from .report import find_runs

    run_dir = Path(run_dir)
    find_runs([run_dir])
    cfg = read_saved_config(run_dir)
    rounds = sorted(int(p.name) for p in (run_dir / "rounds").iterdir()
                    if p.name.isdigit() and (p / "picks.npy").is_file())
    if not rounds:
        raise InvalidInputError(f"run directory {str(run_dir)!r} has no picks yet")
    k = rounds[-1] if round_k is None else round_k
    if k not in rounds:
        raise InvalidInputError(f"--round={k}: run {str(run_dir)!r} has picks for rounds {rounds}")
    rd = run_dir / "rounds" / str(k)
    # labels.npy first: a run writes picks.npy before it, so labels read here
    # always belong to the picks read next (export-picks takes no lock: it
    # may run while a run waits for labels)
    labels = _io.load_array(rd / "labels.npy", "labels.npy").astype(int) if (rd / "labels.npy").is_file() else None
    picks = _io.load_array(rd / "picks.npy", "picks.npy").astype(int)
    if labels is not None and len(labels) != len(picks):
        raise PcoresetError(f"{rd}: picks.npy and labels.npy do not match; the run directory is damaged")
    ds = load_dataset(cfg)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["round", "row", "id", "text", "label"])
    for j, r in enumerate(picks):
        content = ds.texts[r] if ds.texts is not None else (ds.items[r] if ds.items is not None else "")
        w.writerow([k, int(r), ds.ids[r], content, "" if labels is None else ds.class_names[labels[j]]])
    return buf.getvalue()


def register(sub) -> None:
    """Add run, demo, report and export-picks to `pcoreset`'s subparsers."""
    from .demo import DEFAULT_SEEDS, PRESETS

    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "run", help="run or resume an ActiveKD active-learning run", formatter_class=fmt,
        description="Train a dual-head student with knowledge distillation from a frozen teacher,\n"
                    "select --budget samples per round with --strategy, and write RUN_DIR.\n"
                    "Rerun the same command to resume after the last finished round.\n"
                    "Every file argument is checked before any work starts.\n\n"
                    "examples:\n"
                    "  pcoreset run --out runs/pc --strategy pcoreset            # embedded WordNet data\n"
                    "  pcoreset run --out runs/pc25 --dataset embedded:wordnet25 --budget 50\n"
                    "  pcoreset run --out runs/mine --dataset my.csv --teacher precomputed \\\n"
                    "      --teacher-logits logits.npy --strategy badge --no-distill\n"
                    "  pcoreset run --out runs/human --dataset my.csv --initial-labeled seed_ids.txt \\\n"
                    "      --oracle labels.csv   # stops for labels; see export-picks")
    p.add_argument("--out", "-o", required=True, metavar="RUN_DIR", help="run directory (created or resumed)")
    _paths.add_input(p, "--config", suffixes=(".toml", ".yaml", ".yml"),
                     help="TOML/YAML file of settings (keys as the flags, with _ or -)")
    _add_run_flags(p)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "demo", help="all six strategies x {ActiveKD, No Distill} on embedded WordNet data, paired over seeds",
        formatter_class=fmt,
        description="Classify WordNet noun glosses into supersenses with a zero-shot MiniLM teacher\n"
                    "distilled into a bag-of-words student. Every strategy runs with the same seeds\n"
                    "(same initial labels, student initialisation and data order), so the report\n"
                    "compares each strategy with PCoreSet seed by seed. Writes OUT/table.md,\n"
                    "OUT/report.csv, OUT/paired.csv, OUT/curves.png and the runs under OUT/runs/;\n"
                    "teacher outputs are cached in ~/.cache/pcoreset (or $PCORESET_CACHE).\n"
                    "The default 6 seeds took 8.5 minutes on a 2-core machine from an empty cache\n"
                    "(longer when other jobs hold the cores); --quick 45 seconds.")
    p.add_argument("--out", "-o", default="pcoreset_demo", help="output directory (default ./pcoreset_demo)")
    p.add_argument("--dataset", default="embedded:wordnet", choices=sorted(PRESETS),
                   help="embedded:wordnet (6 classes, default) or embedded:wordnet25 (25 classes)")
    p.add_argument("--quick", action="store_true", help="small slice, few rounds, one seed")
    p.add_argument("--seeds", type=int, default=None,
                   help=f"seeds per setting (default {DEFAULT_SEEDS}, --quick 1)")
    p.add_argument("--strategies", nargs="+", default=None, help="subset of strategies (default: all six)")
    p.add_argument("--cache-dir", default=None, help="teacher-output cache directory")
    p.add_argument("--jobs", "-j", type=int, default=None, help="parallel runs (default: up to 2 CPU cores)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser(
        "report", help="tables, paired comparisons and curves across run directories", formatter_class=fmt,
        description="Accuracy per label count (mean and 95% CI over seeds), the area under the\n"
                    "accuracy curve and the rank by it; then every strategy against --against on\n"
                    "the same seeds: mean paired difference, 95% CI and Wilcoxon signed-rank p.\n"
                    "Writes report.csv, paired.csv and curves.png to --out.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories (or folders holding them)")
    p.add_argument("--out", default=None,
                   help="where report.csv, paired.csv and curves.png go (default: the one RUN_DIR, else .)")
    p.add_argument("--against", default="pcoreset", help="reference strategy of the paired table (default pcoreset)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("export-picks", help="write a round's picks to CSV for a person to label")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--round", type=int, default=None, help="round (default: the latest with picks)")
    _paths.add_output(p, "--out", "-o", default=None, help="CSV file (default: stdout)")
    p.set_defaults(func=_cmd_export)

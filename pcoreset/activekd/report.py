"""Tables, paired comparisons and plots across ActiveKD runs.

Runs are grouped into experiments (same dataset, teacher, student, budget and
every other setting except the strategy, the seed and the distillation switch).
Within an experiment:

- the accuracy table: one row per strategy x distillation setting, test accuracy
  per label count (mean ± 95% CI over seeds), the area under the accuracy curve
  (:func:`~pcoreset.activekd.stats.curve_area`: the mean accuracy over the label
  range) and the rank by that area;
- the paired table: every strategy against the reference (PCoreSet) on the same
  seeds, so with the same initial labels, student initialisation and data
  order: the mean difference with its 95% interval and the Wilcoxon
  signed-rank p-value, at each label count and for the area."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Tuple

from ..errors import InvalidInputError, PcoresetError
from . import _io
from .config import read_saved_config
from .plot import plot_curves
from .stats import curve_area, format_p, mean_ci, paired

REFERENCE = "pcoreset"
# Settings that may differ between the runs of one experiment.
VARYING = ("strategy", "strategy_kwargs", "seed", "distill", "rounds", "oracle", "cache_dir")
REPORT_FIELDS = ["strategy", "distill", "num_labeled", "test_acc_mean", "test_acc_ci95", "seeds"]
PAIRED_FIELDS = ["experiment", "distill", "strategy", "reference", "num_labeled", "seeds", "mean_diff", "ci95",
                 "wins", "ties", "losses", "p_sign", "p_wilcoxon"]


def find_runs(paths) -> List[Path]:
    """Run directories (holding config.json and rounds/) at or below `paths`."""
    found = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise InvalidInputError(f"run directory {str(p)!r} does not exist")
        if (p / "config.json").is_file() and (p / "rounds").is_dir():
            found.append(p)
        else:
            found.extend(sorted(c.parent for c in p.rglob("config.json") if (c.parent / "rounds").is_dir()))
    if not found:
        raise InvalidInputError(f"no run directories (config.json + rounds/) under {[str(p) for p in paths]}")
    return found


def _experiment(cfg: dict) -> str:
    """A short readable name of what the runs of one experiment share."""
    fixed = {k: v for k, v in sorted(cfg.items()) if k not in VARYING}
    return json.dumps(fixed, sort_keys=True, default=str)


def setting_name(cfg: dict) -> str:
    kw = cfg.get("strategy_kwargs") or {}
    return cfg["strategy"] + (f" {json.dumps(kw, sort_keys=True)}" if kw else "")


def collect(paths) -> List[dict]:
    """One record per run: its config, its experiment and its finished rounds' metrics."""
    records = []
    for run_dir in find_runs(paths):
        cfg = read_saved_config(run_dir).to_dict()
        rounds = []
        for rd in (run_dir / "rounds").iterdir():
            if rd.name.isdigit() and (rd / "metrics.json").is_file():
                m = _io.read_json(rd / "metrics.json", "metrics.json")
                if not isinstance(m, dict) or not all(k in m for k in ("round", "num_labeled", "test_acc")):
                    raise PcoresetError(f"metrics.json: {str(rd / 'metrics.json')!r} is damaged (it lacks round, "
                                        "num_labeled or test_acc)")
                rounds.append(m)
        rounds.sort(key=lambda m: m["round"])
        records.append({"run_dir": str(run_dir), "strategy": setting_name(cfg), "distill": bool(cfg["distill"]),
                        "seed": cfg["seed"], "experiment": _experiment(cfg), "dataset": cfg.get("dataset"),
                        "metrics": rounds})
    return records


def setting_label(strategy: str, distill: bool) -> str:
    return f"{strategy} ({'ActiveKD' if distill else 'No Distill'})"


def _curve(record) -> Dict[int, float]:
    return {m["num_labeled"]: m["test_acc"] for m in record["metrics"]}


def common_labels(records: List[dict]) -> List[int]:
    """Label counts that every run of `records` has finished."""
    sets = [set(_curve(r)) for r in records if r["metrics"]]
    return sorted(set.intersection(*sets)) if sets else []


def run_area(record, grid: List[int]) -> float:
    curve = _curve(record)
    return curve_area(grid, [curve[n] for n in grid])


def aggregate(records: List[dict]) -> Dict[Tuple[str, bool], Dict[int, dict]]:
    """(strategy, distill) -> num_labeled -> {mean, ci, n}."""
    acc = defaultdict(lambda: defaultdict(list))
    for r in records:
        for m in r["metrics"]:
            acc[(r["strategy"], r["distill"])][m["num_labeled"]].append(m["test_acc"])
    out = {}
    for key, by_n in acc.items():
        out[key] = {}
        for n, vals in sorted(by_n.items()):
            mean, ci = mean_ci(vals)
            out[key][n] = {"mean": mean, "ci": ci, "n": len(vals)}
    return out


def areas(records: List[dict]) -> Dict[Tuple[str, bool], dict]:
    """(strategy, distill) -> {mean, ci, n} of the per-run curve areas, on the label
    counts that every run has finished."""
    grid = common_labels(records)
    by_key = defaultdict(list)
    if grid:
        for r in records:
            by_key[(r["strategy"], r["distill"])].append(run_area(r, grid))
    out = {}
    for key, vals in by_key.items():
        mean, ci = mean_ci(vals)
        out[key] = {"mean": mean, "ci": ci, "n": len(vals)}
    return out


def summary_table_rows(agg) -> List[dict]:
    rows = []
    for (strategy, distill), by_n in sorted(agg.items()):
        for n, s in by_n.items():
            rows.append({"strategy": strategy, "distill": distill, "num_labeled": n,
                         "test_acc_mean": round(s["mean"], 5), "test_acc_ci95": round(s["ci"], 5),
                         "seeds": s["n"]})
    return rows


def _cell(s: dict) -> str:
    return f"{100 * s['mean']:.1f} ± {100 * s['ci']:.1f}" if s["n"] > 1 else f"{100 * s['mean']:.1f}"


def format_table(agg, teacher_acc=None, area=None, area_labels=None) -> str:
    """Markdown table: one row per setting, accuracy (%) per label count, the area
    under the accuracy curve, and the rank by that area."""
    ns = sorted({n for by_n in agg.values() for n in by_n})
    area = area or {}
    order = sorted(agg, key=lambda k: -area[k]["mean"] if k in area else 0.0)
    rank = {k: i + 1 for i, k in enumerate(order)}
    head = ["setting"] + [f"{n} labels" for n in ns] + ["area", "rank"]
    seeds = sorted({s["n"] for by_n in agg.values() for s in by_n.values()})
    lines = []
    if teacher_acc is not None:
        lines.append(f"Teacher zero-shot test accuracy: {100 * teacher_acc:.1f}%\n")
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in sorted(agg, key=lambda k: (k[0], not k[1])):
        by_n = agg[key]
        cells = [_cell(by_n[n]) if n in by_n else "" for n in ns]
        a = _cell(area[key]) if key in area else ""
        lines.append("| " + " | ".join([setting_label(*key)] + cells + [a, str(rank[key]) if area else ""]) + " |")
    span = f" from {area_labels[0]} to {area_labels[-1]} labels" if area_labels else ""
    lines.append(f"\nTest accuracy (%), mean ± 95% CI (Student t) over {'/'.join(map(str, seeds))} seed(s). "
                 f"area: area under the accuracy-vs-labels curve{span} divided by the label range (the mean "
                 "accuracy over the range); rank: by area.")
    return "\n".join(lines)


def paired_comparisons(records: List[dict], reference: str = REFERENCE) -> List[dict]:
    """Every strategy against `reference` on the seeds both ran, per distillation
    setting: one row per label count and one for the area ("area")."""
    rows = []
    grid = common_labels(records)
    for distill in (True, False):
        runs = defaultdict(dict)  # strategy -> seed -> record
        for r in records:
            if r["distill"] == distill:
                runs[r["strategy"]].setdefault(r["seed"], r)
        if reference not in runs:
            continue
        ref = runs[reference]
        for strategy in sorted(s for s in runs if s != reference):
            seeds = sorted(set(runs[strategy]) & set(ref))
            if not seeds:
                continue
            points = [(n, [_curve(runs[strategy][s])[n] - _curve(ref[s])[n] for s in seeds]) for n in grid]
            if grid:
                points.append(("area", [run_area(runs[strategy][s], grid) - run_area(ref[s], grid) for s in seeds]))
            for n, diffs in points:
                rows.append({"distill": distill, "strategy": strategy, "reference": reference, "num_labeled": n,
                             "seeds": len(seeds), **paired(diffs)})
    return rows


def format_paired(rows: List[dict]) -> str:
    """Markdown: one table per distillation setting, a row per strategy, cells
    "mean difference ± 95% CI (p)" in points, with the Wilcoxon p-value (the sign
    test's when scipy is missing); the last columns give the area's wins/ties/losses
    and sign-test p."""
    out = []
    for distill in (True, False):
        sel = [r for r in rows if r["distill"] == distill]
        if not sel:
            continue
        ref = sel[0]["reference"]
        cols = [n for n in dict.fromkeys(r["num_labeled"] for r in sel)]
        use_w = all(r["p_wilcoxon"] is not None for r in sel)
        test = "Wilcoxon signed-rank" if use_w else "sign test (install scipy for Wilcoxon)"
        seeds = sorted({r["seeds"] for r in sel})
        if seeds == [1]:
            out.append(f"Against {setting_label(ref, distill)}, 1 seed: strategy − {ref} in accuracy points "
                       "(run more seeds for intervals and tests).\n")
        else:
            out.append(f"Paired against {setting_label(ref, distill)}, {'/'.join(map(str, seeds))} seeds: "
                       f"strategy − {ref} in accuracy points, mean ± 95% CI (p, two-sided {test}).\n")
        head = ["strategy"] + [f"{c} labels" if c != "area" else "area" for c in cols] + \
               ["area W/T/L", "area sign p"]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for strategy in dict.fromkeys(r["strategy"] for r in sel):
            by_col = {r["num_labeled"]: r for r in sel if r["strategy"] == strategy}
            cells = []
            for c in cols:
                r = by_col.get(c)
                if r is None:
                    cells.append("")
                    continue
                p = r["p_wilcoxon"] if use_w else r["p_sign"]
                cells.append(f"{100 * r['mean']:+.1f} ± {100 * r['ci']:.1f} ({format_p(p)})" if r["seeds"] > 1
                             else f"{100 * r['mean']:+.1f}")
            a = by_col.get("area")
            tail = [f"{a['wins']}/{a['ties']}/{a['losses']}", format_p(a["p_sign"])] if a else ["", ""]
            out.append("| " + " | ".join([setting_label(strategy, distill)] + cells + tail) + " |")
        out.append("")
    return "\n".join(out).rstrip()


def teacher_accuracy(records) -> float | None:
    for r in records:
        for m in r["metrics"]:
            if m.get("teacher_test_acc") is not None:
                return m["teacher_test_acc"]
    return None


def experiments(records: List[dict]) -> Dict[str, List[dict]]:
    groups = defaultdict(list)
    for r in records:
        groups[r["experiment"]].append(r)
    return dict(groups)


def report(paths, out_dir=None, echo=print, reference: str = REFERENCE) -> dict:
    """Print the tables across `paths` and write report.csv, paired.csv and
    curves.png to `out_dir` (default: the single run directory given, else the
    current one). With runs of several experiments (e.g. two datasets), each
    gets its own tables and curves-<k>.png."""
    records = collect(paths)
    if out_dir is None:
        out_dir = Path(paths[0]) if len(paths) == 1 else Path(".")
    out_dir = Path(out_dir)
    groups = experiments(records)
    texts, csv_rows, paired_rows, plots = [], [], [], []
    for k, (exp, recs) in enumerate(sorted(groups.items(), key=lambda kv: kv[1][0]["run_dir"])):
        agg = aggregate(recs)
        teacher = teacher_accuracy(recs)
        pairs = paired_comparisons(recs, reference)
        text = format_table(agg, teacher, areas(recs), common_labels(recs))
        if pairs:
            text += "\n\n" + format_paired(pairs)
        if len(groups) > 1:
            text = f"## experiment {k + 1}: dataset {recs[0]['dataset']} ({len(recs)} runs)\n\n" + text
        texts.append(text)
        for row in summary_table_rows(agg):
            csv_rows.append(row)
        for row in pairs:
            paired_rows.append({**row, "experiment": k + 1, "mean_diff": round(row["mean"], 6),
                                "ci95": round(row["ci"], 6)})
        png = out_dir / ("curves.png" if len(groups) == 1 else f"curves-{k + 1}.png")
        if plot_curves(agg, png, teacher):
            plots.append(png)
    _io.write_csv(out_dir / "report.csv", csv_rows, REPORT_FIELDS)
    if paired_rows:
        _io.write_csv(out_dir / "paired.csv", paired_rows, PAIRED_FIELDS)
    table = "\n\n".join(texts)
    echo(table)
    written = [out_dir / "report.csv"] + ([out_dir / "paired.csv"] if paired_rows else []) + plots
    echo("\nwrote " + ", ".join(map(str, written)) + ("" if plots else " (install matplotlib for curves.png)"))
    return {"records": records, "aggregate": aggregate(records), "table": table, "paired": paired_rows}

"""Tables and plots across ActiveKD runs: accuracy against the number of labels,
one line per strategy x distillation setting, mean and 95% confidence interval
(Student t) over seeds."""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Tuple

from ..errors import InvalidInputError
from . import _io

# Two-sided 95% Student t quantiles by degrees of freedom (1..30); 1.96 beyond.
_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042]


def mean_ci(values: List[float]) -> Tuple[float, float]:
    """(mean, half-width of the 95% CI); half-width 0 for a single value."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    t = _T95[n - 2] if n - 1 <= len(_T95) else 1.96
    return mean, t * sd / math.sqrt(n)


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


def collect(paths) -> List[dict]:
    """One record per run: its config and its finished rounds' metrics, by round."""
    records = []
    for run_dir in find_runs(paths):
        cfg = _io.read_json(run_dir / "config.json")
        rounds = []
        for rd in (run_dir / "rounds").iterdir():
            if rd.name.isdigit() and (rd / "metrics.json").is_file():
                rounds.append(_io.read_json(rd / "metrics.json"))
        rounds.sort(key=lambda m: m["round"])
        records.append({"run_dir": str(run_dir), "strategy": cfg["strategy"], "distill": bool(cfg["distill"]),
                        "seed": cfg["seed"], "metrics": rounds})
    return records


def setting_label(strategy: str, distill: bool) -> str:
    return f"{strategy} ({'ActiveKD' if distill else 'No Distill'})"


def aggregate(records: List[dict]) -> Dict[Tuple[str, bool], Dict[int, dict]]:
    """(strategy, distill) -> num_labeled -> {mean, ci, n, teacher}."""
    acc = defaultdict(lambda: defaultdict(list))
    teacher = {}
    for r in records:
        for m in r["metrics"]:
            acc[(r["strategy"], r["distill"])][m["num_labeled"]].append(m["test_acc"])
            if m.get("teacher_test_acc") is not None:
                teacher[(r["strategy"], r["distill"])] = m["teacher_test_acc"]
    out = {}
    for key, by_n in acc.items():
        out[key] = {}
        for n, vals in sorted(by_n.items()):
            mean, ci = mean_ci(vals)
            out[key][n] = {"mean": mean, "ci": ci, "n": len(vals)}
    return out


def summary_table_rows(agg) -> List[dict]:
    rows = []
    for (strategy, distill), by_n in sorted(agg.items()):
        for n, s in by_n.items():
            rows.append({"strategy": strategy, "distill": distill, "num_labeled": n,
                         "test_acc_mean": round(s["mean"], 5), "test_acc_ci95": round(s["ci"], 5),
                         "seeds": s["n"]})
    return rows


def format_table(agg, teacher_acc=None) -> str:
    """Markdown table: one row per setting, accuracy (%) per label count, the mean
    over rounds, and the rank by final accuracy."""
    ns = sorted({n for by_n in agg.values() for n in by_n})
    final = {key: by_n[max(by_n)]["mean"] for key, by_n in agg.items()}
    order = sorted(agg, key=lambda k: -final[k])
    rank = {k: i + 1 for i, k in enumerate(order)}
    head = ["setting"] + [f"{n} labels" for n in ns] + ["mean", "rank"]
    lines = []
    if teacher_acc is not None:
        lines.append(f"Teacher zero-shot test accuracy: {100 * teacher_acc:.1f}%\n")
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in sorted(agg, key=lambda k: (k[0], not k[1])):
        by_n = agg[key]
        cells = []
        for n in ns:
            s = by_n.get(n)
            if s is None:
                cells.append("")
            elif s["n"] > 1:
                cells.append(f"{100 * s['mean']:.1f} ± {100 * s['ci']:.1f}")
            else:
                cells.append(f"{100 * s['mean']:.1f}")
        mean_all = sum(s["mean"] for s in by_n.values()) / len(by_n)
        lines.append("| " + " | ".join([setting_label(*key)] + cells + [f"{100 * mean_all:.1f}", str(rank[key])])
                     + " |")
    return "\n".join(lines)


def teacher_accuracy(records) -> float | None:
    for r in records:
        for m in r["metrics"]:
            if m.get("teacher_test_acc") is not None:
                return m["teacher_test_acc"]
    return None


def plot_curves(records: List[dict], path, title: str = "ActiveKD: test accuracy vs labels") -> bool:
    """Write accuracy-vs-labels curves (95% CI bands over seeds) to `path`. Returns
    False (and writes nothing) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    agg = aggregate(records)
    if not agg:
        return False
    strategies = sorted({k[0] for k in agg})
    colors = {s: plt.get_cmap("tab10")(i % 10) for i, s in enumerate(strategies)}
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for (strategy, distill), by_n in sorted(agg.items()):
        ns = sorted(by_n)
        mean = [100 * by_n[n]["mean"] for n in ns]
        ci = [100 * by_n[n]["ci"] for n in ns]
        ax.plot(ns, mean, marker="o", ms=3, color=colors[strategy], linestyle="-" if distill else "--",
                label=setting_label(strategy, distill))
        if any(ci):
            ax.fill_between(ns, [m - c for m, c in zip(mean, ci)], [m + c for m, c in zip(mean, ci)],
                            color=colors[strategy], alpha=0.12, linewidth=0)
    t = teacher_accuracy(records)
    if t is not None:
        ax.axhline(100 * t, color="gray", linestyle=":", label="teacher (zero-shot)")
    ax.set_xlabel("number of labeled samples")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    buf = __import__("io").BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    _io.write_bytes(path, buf.getvalue())
    return True


def report(paths, out_dir=None, echo=print) -> dict:
    """Print the table across `paths` and write summary.csv and curves.png to
    `out_dir` (default: the single run directory given, else the current one)."""
    from .loop import write_summary_csv

    records = collect(paths)
    agg = aggregate(records)
    if out_dir is None:
        out_dir = Path(paths[0]) if len(paths) == 1 else Path(".")
    out_dir = Path(out_dir)
    rows = summary_table_rows(agg)
    write_summary_csv(out_dir / "report.csv", rows,
                      ["strategy", "distill", "num_labeled", "test_acc_mean", "test_acc_ci95", "seeds"])
    plotted = plot_curves(records, out_dir / "curves.png")
    table = format_table(agg, teacher_accuracy(records))
    echo(table)
    echo(f"\nwrote {out_dir / 'report.csv'}" + (f" and {out_dir / 'curves.png'}" if plotted else
                                                   " (install matplotlib for curves.png)"))
    return {"records": records, "aggregate": agg, "table": table}

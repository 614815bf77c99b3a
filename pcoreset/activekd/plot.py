"""Accuracy-vs-labels curves: one panel per distillation setting (ActiveKD | No
Distill) on a shared y axis, one line per strategy with its 95% band over
seeds (one seed: no band, and the title and y label say so), the teacher's
accuracy as a dotted line, the legend below the panels."""
from __future__ import annotations

import io
from typing import Dict, List, Tuple

from . import _io

REFERENCE = "pcoreset"


def axis_text(agg, title: str):
    """(y label, title) for the curves of `agg`: a one-seed run has no
    interval, and its title says that it is a smoke run."""
    seeds = max(v.get("n", 1) for by_n in agg.values() for v in by_n.values())
    if seeds > 1:
        return "test accuracy (%), mean and 95% CI over seeds", title
    return ("test accuracy (%), one seed (no interval)",
            title + "\none seed: a smoke run, not a comparison of strategies")


def plot_curves(agg: Dict[Tuple[str, bool], Dict[int, dict]], path, teacher_acc=None,
                title: str = "ActiveKD: test accuracy vs labels") -> bool:
    """Write the curves of `agg` ((strategy, distill) -> num_labeled -> {mean, ci})
    to `path` as PNG. Returns False (and writes nothing) when matplotlib is not
    installed or there is nothing to plot."""
    if not agg:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    strategies = sorted({k[0] for k in agg})
    colors = {s: plt.get_cmap("tab10")(i % 10) for i, s in enumerate(strategies)}
    panels = [d for d in (True, False) if any(k[1] == d for k in agg)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels) + 0.6, 5.0), sharey=True, squeeze=False)
    for ax, distill in zip(axes[0], panels):
        for strategy in strategies:
            by_n = agg.get((strategy, distill))
            if not by_n:
                continue
            ns = sorted(by_n)
            mean = [100 * by_n[n]["mean"] for n in ns]
            ci = [100 * by_n[n]["ci"] for n in ns]
            ref = strategy == REFERENCE
            ax.plot(ns, mean, marker="o", ms=3.5 if ref else 2.5, lw=2.4 if ref else 1.2, color=colors[strategy],
                    zorder=3 if ref else 2, label=strategy)
            if any(ci):
                ax.fill_between(ns, [m - c for m, c in zip(mean, ci)], [m + c for m, c in zip(mean, ci)],
                                color=colors[strategy], alpha=0.15 if ref else 0.06, linewidth=0)
        if teacher_acc is not None:
            ax.axhline(100 * teacher_acc, color="gray", linestyle=":", lw=1.2, label="teacher")
        ax.set_title("ActiveKD (distillation)" if distill else "No Distill")
        ax.set_xlabel("number of labeled samples")
        ax.grid(alpha=0.3)
    ylabel, title = axis_text(agg, title)
    axes[0][0].set_ylabel(ylabel)
    handles, labels = [], []
    for ax in axes[0]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.suptitle(title)
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 7), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    _io.write_bytes(path, buf.getvalue())
    return True


__all__: List[str] = ["axis_text", "plot_curves"]

"""Statistics for reports: means with 95% intervals over seeds, the area under an
accuracy curve, and paired comparisons between strategies run with the same
seeds (mean difference, 95% interval, Wilcoxon signed-rank and sign tests)."""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

# Two-sided 95% Student t quantiles by degrees of freedom (1..30); 1.96 beyond.
_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042]


def t95(dof: int) -> float:
    """Two-sided 95% Student t quantile for `dof` >= 1 degrees of freedom."""
    return _T95[dof - 1] if dof <= len(_T95) else 1.96


def mean_ci(values: Sequence[float]) -> Tuple[float, float]:
    """(mean, half-width of the 95% Student t interval); half-width 0 for one value."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, t95(n - 1) * sd / math.sqrt(n)


def curve_area(num_labeled: Sequence[float], acc: Sequence[float]) -> float:
    """Area under the accuracy-vs-labels curve (trapezoids), divided by the label
    range: the mean accuracy over the range of label counts, in the units of
    `acc`. One point: that point's accuracy."""
    pts = sorted(zip(num_labeled, acc))
    if len(pts) == 1:
        return float(pts[0][1])
    area = sum((a0 + a1) / 2 * (n1 - n0) for (n0, a0), (n1, a1) in zip(pts, pts[1:]))
    return float(area / (pts[-1][0] - pts[0][0]))


def sign_test(diffs: Sequence[float]) -> float:
    """Exact two-sided sign test p-value of the non-zero `diffs` (1.0 when all are zero)."""
    wins = sum(d > 0 for d in diffs)
    losses = sum(d < 0 for d in diffs)
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def wilcoxon_test(diffs: Sequence[float]) -> Optional[float]:
    """Two-sided Wilcoxon signed-rank p-value (scipy; exact for small samples
    without ties), 1.0 when every difference is zero, None without scipy."""
    try:
        from scipy.stats import wilcoxon
    except ImportError:
        return None
    if all(d == 0 for d in diffs):
        return 1.0
    return float(wilcoxon(list(diffs)).pvalue)


def paired(diffs: Sequence[float]) -> Dict[str, object]:
    """Summary of paired differences (one per seed): n, mean, 95% CI half-width,
    wins/ties/losses, sign-test and Wilcoxon p-values.

    Accuracies are multiples of 1/n_test: the differences are rounded to 1e-12
    first so that equal gaps tie exactly."""
    d = [round(float(x), 12) for x in diffs]
    mean, ci = mean_ci(d)
    return {"n": len(d), "mean": mean, "ci": ci, "wins": sum(x > 0 for x in d), "ties": sum(x == 0 for x in d),
            "losses": sum(x < 0 for x in d), "p_sign": sign_test(d), "p_wilcoxon": wilcoxon_test(d)}


def format_p(p: Optional[float]) -> str:
    if p is None:
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


__all__: List[str] = ["t95", "mean_ci", "curve_area", "sign_test", "wilcoxon_test", "paired", "format_p"]

"""Reports across ActiveKD runs: statistics, the paired table against PCoreSet,
the rank by area under the curve, experiments kept apart, and the plot. Run
directories are written by hand here (no training), so every number is known."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from pcoreset.activekd import stats
from pcoreset.activekd.report import format_table, report
from pcoreset.cli import main

LABELS = [6, 36, 66]


def write_run(root: Path, strategy: str, distill: bool, seed: int, accs, dataset="embedded:wordnet") -> Path:
    d = root / f"{dataset.split(':')[-1]}-{strategy}-{int(distill)}-s{seed}"
    cfg = {"strategy": strategy, "distill": distill, "seed": seed, "dataset": dataset, "budget": 30,
           "strategy_kwargs": {}, "rounds": len(accs) - 1}
    (d / "rounds").mkdir(parents=True)
    (d / "config.json").write_text(json.dumps(cfg))
    for k, (n, a) in enumerate(zip(LABELS, accs)):
        (d / "rounds" / str(k)).mkdir()
        (d / "rounds" / str(k) / "metrics.json").write_text(json.dumps(
            {"round": k, "num_labeled": n, "test_acc": a, "teacher_test_acc": 0.7}))
    return d


def test_statistics_against_known_values():
    assert stats.sign_test([1] * 9 + [-1]) == pytest.approx(2 * 11 / 1024)
    assert stats.sign_test([0, 0]) == 1.0 and stats.sign_test([1, -1, 0]) == 1.0
    scipy_stats = pytest.importorskip("scipy.stats")
    d = [0.02, 0.01, -0.005, 0.03, 0.015, 0.025, 0.012, -0.001]
    assert stats.wilcoxon_test(d) == pytest.approx(scipy_stats.wilcoxon(d).pvalue)
    assert stats.wilcoxon_test([0.0] * 5) == 1.0
    p = stats.paired(d)
    assert (p["n"], p["wins"], p["losses"], p["ties"]) == (8, 6, 2, 0)
    assert p["mean"] == pytest.approx(np.mean(d))
    half = scipy_stats.t.ppf(0.975, 7) * np.std(d, ddof=1) / np.sqrt(8)
    assert p["ci"] == pytest.approx(half, rel=1e-3)
    assert stats.curve_area([0, 10, 30], [0.5, 0.7, 0.7]) == pytest.approx((0.6 * 10 + 0.7 * 20) / 30)
    assert stats.curve_area([5], [0.4]) == 0.4
    # differences of accuracies that are the same multiple of 1/n tie exactly
    assert stats.paired([0.72 - 0.71, 0.33 - 0.32, 0.01])["ties"] == 0
    assert len({round(x, 12) for x in (0.72 - 0.71, 0.33 - 0.32)}) == 1


def test_rank_is_by_area_and_says_so():
    # "late" ends highest but "early" has the larger area: the rank follows the area
    agg = {("early", True): {6: {"mean": 0.6, "ci": 0, "n": 1}, 36: {"mean": 0.7, "ci": 0, "n": 1}},
           ("late", True): {6: {"mean": 0.3, "ci": 0, "n": 1}, 36: {"mean": 0.71, "ci": 0, "n": 1}}}
    area = {("early", True): {"mean": 0.65, "ci": 0, "n": 1}, ("late", True): {"mean": 0.505, "ci": 0, "n": 1}}
    table = format_table(agg, 0.7, area)
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in table.splitlines() if line.startswith("| ")}
    assert rows["early (ActiveKD)"][-1].strip(" |") == "1" and rows["late (ActiveKD)"][-1].strip(" |") == "2"
    assert "rank: by area" in table and "area under the accuracy-vs-labels curve" in table


def test_paired_report_against_pcoreset(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for seed in range(6):
        base = rng.uniform(0.5, 0.6, size=3)
        write_run(tmp_path / "runs", "pcoreset", True, seed, base)
        write_run(tmp_path / "runs", "random", True, seed, base - 0.02)          # always 2 points behind
        write_run(tmp_path / "runs", "entropy", True, seed, base + [0, 0.01, -0.01][seed % 3])
        write_run(tmp_path / "runs", "pcoreset", False, seed, base - 0.2)
        write_run(tmp_path / "runs", "random", False, seed, base - 0.1)          # 10 points ahead
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert "Paired against pcoreset (ActiveKD), 6 seeds" in out and "Paired against pcoreset (No Distill)" in out
    assert "Wilcoxon signed-rank" in out
    line = next(x for x in out.splitlines() if x.startswith("| random (ActiveKD)") and "(" in x.split("|")[3])
    assert "-2.0 ± 0.0 (0.031)" in line and "0/0/6" in line  # 6 of 6 seeds lost: exact p = 2/64
    with open(tmp_path / "rep" / "paired.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    got = {(r["distill"], r["strategy"], r["num_labeled"]): r for r in rows}
    assert set(r["strategy"] for r in rows) == {"random", "entropy"}
    r = got[("True", "random", "area")]
    assert float(r["mean_diff"]) == pytest.approx(-0.02) and r["losses"] == "6"
    assert float(r["p_wilcoxon"]) == pytest.approx(0.03125) and float(r["p_sign"]) == pytest.approx(0.03125)
    assert float(got[("False", "random", "36")]["mean_diff"]) == pytest.approx(0.1)
    assert float(got[("True", "entropy", "6")]["p_wilcoxon"]) == 1.0  # round 0 identical: no difference
    assert (tmp_path / "rep" / "curves.png").stat().st_size > 10_000


def test_experiments_are_reported_apart(tmp_path, capsys):
    for seed in range(2):
        write_run(tmp_path, "pcoreset", True, seed, [0.5, 0.6, 0.7])
        write_run(tmp_path, "pcoreset", True, seed, [0.2, 0.3, 0.4], dataset="embedded:wordnet25")
    res = report([tmp_path], out_dir=tmp_path, echo=lambda s: None)
    assert res["table"].count("## experiment") == 2
    assert "embedded:wordnet25" in res["table"]
    assert (tmp_path / "curves-1.png").is_file() and (tmp_path / "curves-2.png").is_file()


def test_plot_has_a_panel_per_distillation_setting(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    from matplotlib import image

    from pcoreset.activekd.plot import plot_curves

    by_n = {n: {"mean": 0.5 + n / 1000, "ci": 0.02, "n": 3} for n in LABELS}
    both = {(s, d): by_n for s in ("pcoreset", "random") for d in (True, False)}
    one = {k: v for k, v in both.items() if k[1]}
    assert plot_curves(both, tmp_path / "two.png", 0.7) and plot_curves(one, tmp_path / "one.png", 0.7)
    w2 = image.imread(tmp_path / "two.png").shape[1]
    w1 = image.imread(tmp_path / "one.png").shape[1]
    assert w2 > 1.7 * w1
    assert matplotlib.get_backend().lower() == "agg"


def test_one_seed_curves_say_they_have_no_interval():
    from pcoreset.activekd.plot import axis_text

    three = {("pcoreset", True): {n: {"mean": 0.5, "ci": 0.02, "n": 3} for n in LABELS}}
    one = {("pcoreset", True): {n: {"mean": 0.5, "ci": 0.0, "n": 1} for n in LABELS}}
    ylabel, title = axis_text(three, "T")
    assert "95% CI" in ylabel and title == "T"
    ylabel, title = axis_text(one, "T")
    assert "95%" not in ylabel and "one seed" in ylabel and "smoke run" in title

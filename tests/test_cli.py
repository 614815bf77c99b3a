"""The `pcoreset` command line: bad file arguments fail in one line, with exit
code 2 and no traceback, before any work starts; results are written exactly
where asked; `pcoreset bench` prints figures that read sensibly.

Some tests run `python -m pcoreset` as a subprocess from the repository root
(as a user would), the rest call `pcoreset.cli.main` in-process."""
import argparse
import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

import pcoreset
from pcoreset import _paths, bench
from pcoreset.cli import build_parser, main
from pcoreset.errors import InvalidInputError

from conftest import clustered_pool

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SELECT_MODULE = sys.modules["pcoreset.select"]


def run_cli(*args, timeout=300):
    """`python -m pcoreset ARGS` from the repository root: (rc, stdout, stderr)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    proc = subprocess.run([sys.executable, "-m", "pcoreset", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def assert_one_line_error(rc, err, *fragments):
    assert rc == 2, err
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pcoreset: error: "), err
    for frag in fragments:
        assert frag in lines[0], (frag, err)


@pytest.fixture
def pool_file(tmp_path):
    path = tmp_path / "pool.npy"
    np.save(path, clustered_pool(3000, 10, seed=3))
    return path


@pytest.fixture
def no_selection(monkeypatch):
    """Make any selection fail loudly: the checks must stop the command first."""
    def boom(*args, **kwargs):
        raise AssertionError("the selection started although an argument was bad")

    monkeypatch.setattr(SELECT_MODULE, "select", boom)


# ---------------------------------------------------------------- as a user runs it (subprocess)


def test_cli_missing_labeled_file_is_one_line(pool_file, tmp_path):
    missing = tmp_path / "nosuch.npy"
    rc, out, err = run_cli("select", pool_file, "--labeled", missing, "--budget", 5)
    assert_one_line_error(rc, err, f"--labeled {missing}: no such file")
    assert out == ""


def test_cli_garbage_labeled_file_names_the_line(pool_file, tmp_path):
    csv = tmp_path / "pool.csv"
    np.savetxt(csv, clustered_pool(4, 3), delimiter=",")
    rc, _, err = run_cli("select", pool_file, "--labeled", csv, "--budget", 5)
    assert_one_line_error(rc, err, f"--labeled {csv}: line 1 is ", "not an integer")
    assert "invalid literal" not in err


def test_cli_out_in_missing_directory_fails_before_selecting(pool_file):
    # a budget of the whole pool would run for a while and print a progress bar
    rc, out, err = run_cli("select", pool_file, "--budget", 2900, "--out", "/nonexistent/dir/p.npy")
    assert_one_line_error(rc, err, "--out /nonexistent/dir/p.npy: directory /nonexistent/dir does not exist")
    assert "pcoreset select" not in err and "pick" not in err  # no progress bar: nothing was selected
    assert out == ""


def test_cli_directory_as_out(pool_file, tmp_path):
    rc, _, err = run_cli("select", pool_file, "--budget", 5, "--out", tmp_path)
    assert_one_line_error(rc, err, f"--out {tmp_path}: is a directory")


def test_cli_select_writes_exactly_the_named_files(pool_file, tmp_path):
    labeled = tmp_path / "labeled.txt"
    labeled.write_text("4\n\n17\n2999\n")
    out, radii = tmp_path / "picks.npy", tmp_path / "radii.npy"
    rc, stdout, err = run_cli("select", pool_file, "--labeled", labeled, "--budget", 7,
                              "--out", out, "--radii-out", radii)
    assert rc == 0, err
    assert f"wrote 7 picks to {out}" in stdout
    want, want_radii = pcoreset.select(np.load(pool_file), np.array([4, 17, 2999]), 7, return_radii=True)
    np.testing.assert_array_equal(np.load(out), want)
    np.testing.assert_allclose(np.load(radii), want_radii)
    assert sorted(os.listdir(tmp_path)) == ["labeled.txt", "picks.npy", "pool.npy", "radii.npy"]


# ---------------------------------------------------------------- in-process: select


def test_select_missing_pool(tmp_path, capsys, no_selection):
    rc = main(["select", str(tmp_path / "nosuch.npy"), "--budget", "3"])
    assert_one_line_error(rc, capsys.readouterr().err, "probs", "nosuch.npy: no such file")


@pytest.mark.parametrize("content, why", [
    (b"0.1,0.9\n0.5,0.5\n", "no NumPy header"),
    (b"\x93NUMPY\x01\x00", "not a .npy file"),
])
def test_select_pool_that_is_not_npy(tmp_path, capsys, no_selection, content, why):
    bad = tmp_path / "pool.npy"
    bad.write_bytes(content)
    rc = main(["select", str(bad), "--budget", "3"])
    assert_one_line_error(rc, capsys.readouterr().err, f"probs {bad}: ", why)


def test_select_pool_with_wrong_suffix(tmp_path, capsys, no_selection):
    csv = tmp_path / "pool.csv"
    csv.write_text("0.5,0.5\n")
    rc = main(["select", str(csv), "--budget", "1"])
    assert_one_line_error(rc, capsys.readouterr().err, f"probs {csv}: expected a .npy file")


def test_select_out_checks_run_before_selection(pool_file, tmp_path, capsys, no_selection):
    cases = [
        (["--out", "/nonexistent/dir/p.npy"], "directory /nonexistent/dir does not exist"),
        (["--out", str(tmp_path)], "is a directory"),
        (["--out", str(tmp_path / "picks.txt")], "must end in .npy"),
        (["--radii-out", str(pool_file.parent / "sub" / "r.npy")], "does not exist"),
        (["--out", str(pool_file)], "is the same file as probs"),
        (["--out", str(tmp_path / "a.npy"), "--radii-out", str(tmp_path / "a.npy")], "same file as --out"),
    ]
    for extra, why in cases:
        rc = main(["select", str(pool_file), "--budget", "2900", *extra])
        assert_one_line_error(rc, capsys.readouterr().err, why)


def test_select_labeled_checks(pool_file, tmp_path, capsys, no_selection):
    floats = tmp_path / "floats.npy"
    np.save(floats, np.array([1.0, 2.0]))
    binary = tmp_path / "labels.bin"
    binary.write_bytes(bytes(range(128, 256)))
    cases = [
        (tmp_path, "is a directory"),
        (floats, "holds float64 values"),
        (binary, "neither a .npy file nor a text file of integers"),
    ]
    for path, why in cases:
        rc = main(["select", str(pool_file), "--labeled", str(path), "--budget", "3"])
        assert_one_line_error(rc, capsys.readouterr().err, f"--labeled {path}: {why}")


def test_select_errors_name_the_cli_options(tmp_path, capsys):
    logits = tmp_path / "logits.npy"
    np.save(logits, np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32))
    rc = main(["select", str(logits), "--budget", "3"])
    err = capsys.readouterr().err
    assert_one_line_error(rc, err, "--from-logits")
    assert "from_logits=True" not in err
    # with the option the same file runs
    assert main(["select", str(logits), "--budget", "3", "--from-logits", "--out", str(tmp_path / "p.npy")]) == 0
    assert np.load(tmp_path / "p.npy").shape == (3,)
    capsys.readouterr()

    labeled = tmp_path / "labeled.txt"
    labeled.write_text("3\n99\n")
    rc = main(["select", str(logits), "--from-logits", "--labeled", str(labeled), "--budget", "3"])
    assert_one_line_error(rc, capsys.readouterr().err, "--labeled has an index out of range: 99")
    rc = main(["select", str(logits), "--from-logits", "--budget", "51"])
    assert_one_line_error(rc, capsys.readouterr().err, "--budget=51")


def test_select_output_follows_umask_and_leaves_no_temp_file(pool_file, tmp_path, capsys):
    old = os.umask(0o022)
    try:
        out = tmp_path / "out"
        out.mkdir()
        radii, picks = out / "radii.npy", out / "picks.npy"
        assert main(["select", str(pool_file), "--budget", "4", "--out", str(picks),
                     "--radii-out", str(radii)]) == 0
    finally:
        os.umask(old)
    for f in (picks, radii):
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o644
    assert sorted(os.listdir(out)) == ["picks.npy", "radii.npy"]
    # an existing read-only result is replaced (the directory is what must be writable)
    os.chmod(picks, 0o444)
    assert main(["select", str(pool_file), "--budget", "2", "--out", str(picks)]) == 0
    assert np.load(picks).shape == (2,)
    capsys.readouterr()


def run_restricted(*argv):
    """`python ARGV` from the repository root where file permissions apply:
    as root (who reads and writes everything) the child runs without the
    capabilities that override permissions (util-linux setpriv). Returns
    (rc, stderr)."""
    prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] if os.geteuid() == 0 else []
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run([*prefix, sys.executable, *map(str, argv)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stderr


def test_unreadable_input_and_unwritable_directory(tmp_path):
    pool = tmp_path / "pool.npy"
    np.save(pool, clustered_pool(100, 4))
    secret = tmp_path / "labeled.npy"
    np.save(secret, np.array([1, 2]))
    os.chmod(secret, 0)
    locked = tmp_path / "locked"
    os.mkdir(locked, 0o555)

    rc, err = run_restricted("-m", "pcoreset", "select", pool, "--labeled", secret, "--budget", 3)
    assert_one_line_error(rc, err, f"--labeled {secret}: permission denied")
    out = locked / "p.npy"
    rc, err = run_restricted("-m", "pcoreset", "select", pool, "--budget", 3, "--out", out)
    assert_one_line_error(rc, err, f"--out {out}: cannot write in directory {locked}")
    assert os.listdir(locked) == []


# ---------------------------------------------------------------- select --distributed


def test_distributed_checks_own_shard_before_the_process_group(tmp_path, capsys, monkeypatch, no_selection):
    import torch.distributed as dist

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    np.save(tmp_path / "pool.0.npy", clustered_pool(10, 3))
    pattern = str(tmp_path / "pool.{rank}.npy")
    rc = main(["select", "--distributed", "--shards", pattern, "--budget", "2",
               "--out", str(tmp_path / "p.npy")])
    assert_one_line_error(rc, capsys.readouterr().err, f"--shards (rank 1) {tmp_path / 'pool.1.npy'}: no such file")
    np.save(tmp_path / "pool.1.npy", clustered_pool(10, 3))
    (tmp_path / "lab.txt").write_text("1;2\n")
    rc = main(["select", "--distributed", "--shards", pattern, "--budget", "2", "--labeled",
               str(tmp_path / "lab.txt"), "--out", str(tmp_path / "p.npy")])
    assert_one_line_error(rc, capsys.readouterr().err, "--labeled", "line 1 is '1;2'")
    rc = main(["select", "--distributed", "--shards", "a.npy", "b.npy", "c.npy", "--budget", "2",
               "--out", str(tmp_path / "p.npy")])
    assert_one_line_error(rc, capsys.readouterr().err, "--shards has 3 files for 2 ranks")
    assert not dist.is_initialized()


def test_distributed_outside_torchrun(tmp_path, capsys, monkeypatch, no_selection):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    rc = main(["select", "--distributed", "--shards", "a.npy", "b.npy", "--budget", "2",
               "--out", str(tmp_path / "p.npy")])
    assert_one_line_error(rc, capsys.readouterr().err, "runs under torchrun")
    rc = main(["select", "--distributed", "--shards", "a.npy", "--budget", "2"])
    assert_one_line_error(rc, capsys.readouterr().err, "needs --shards and --out")


@pytest.mark.distributed
def test_distributed_cli_under_torchrun(tmp_path):
    pool = clustered_pool(400, 6, seed=5)
    np.save(tmp_path / "pool.0.npy", pool[:250])
    np.save(tmp_path / "pool.1.npy", pool[250:])
    (tmp_path / "lab.txt").write_text("7\n300\n")
    out, radii = tmp_path / "picks.npy", tmp_path / "radii.npy"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "pcoreset", "select", "--distributed", "--shards", str(tmp_path / "pool.{rank}.npy"),
                           "--labeled", str(tmp_path / "lab.txt"), "--budget", "9", "--out", str(out),
                           "--radii-out", str(radii), "--timeout", "120"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    want, want_radii = pcoreset.select(pool, np.array([7, 300]), 9, backend="cpu", return_radii=True)
    np.testing.assert_array_equal(np.load(out), want)
    np.testing.assert_allclose(np.load(radii), want_radii, rtol=1e-6)


def test_distributed_rank0_checks_the_output(tmp_path, capsys, monkeypatch, no_selection):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    np.save(tmp_path / "pool.0.npy", clustered_pool(10, 3))
    rc = main(["select", "--distributed", "--shards", str(tmp_path / "pool.{rank}.npy"), "--budget", "2",
               "--out", "/nonexistent/dir/p.npy"])
    assert_one_line_error(rc, capsys.readouterr().err, "--out /nonexistent/dir/p.npy")


# ---------------------------------------------------------------- _paths


def test_read_index_file_formats(tmp_path):
    assert _paths.read_index_file(None).shape == (0,)
    text = tmp_path / "ids"
    text.write_text(" 5\n\n-1\n  12  \n")
    np.testing.assert_array_equal(_paths.read_index_file(text), [5, -1, 12])  # range is select's job
    as_npy = tmp_path / "ids.txt"  # .npy content decides, not the name
    with open(as_npy, "wb") as f:
        np.save(f, np.array([3, 1], dtype=np.uint16))
    out = _paths.read_index_file(as_npy, "--x")
    assert out.dtype == np.int64 and out.tolist() == [3, 1]
    (tmp_path / "empty.txt").write_text("")
    assert _paths.read_index_file(tmp_path / "empty.txt").shape == (0,)

    np.save(tmp_path / "m.npy", np.zeros((2, 2), dtype=np.int64))
    (tmp_path / "big.txt").write_text("1\n" + "9" * 30 + "\n")
    (tmp_path / "fake.npy").write_text("1\n2\n")
    for name, why in [("m.npy", "has shape (2, 2)"), ("big.txt", "line 2: index 9999"),
                      ("fake.npy", "no NumPy header")]:
        with pytest.raises(InvalidInputError, match="^--opt ") as e:
            _paths.read_index_file(tmp_path / name, "--opt")
        assert why in str(e.value) and "\n" not in str(e.value)


def test_long_garbage_lines_are_shortened(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("x" * 500 + "\n")
    with pytest.raises(InvalidInputError) as e:
        _paths.read_index_file(bad)
    assert len(str(e.value)) < 200 + len(str(bad))


def test_declared_file_options_are_checked_with_one_line(tmp_path):
    # how a new option gets the checks: one add_input / add_output line
    parser = argparse.ArgumentParser()
    _paths.add_input(parser, "--centers", suffixes=(".npy",))
    _paths.add_output(parser, "--report")
    parser.add_argument("--plain")
    _paths.check_path_args(parser.parse_args(["--plain", "/nonexistent/x"]))  # undeclared: not checked
    with pytest.raises(InvalidInputError, match=r"^--centers .*c\.txt: expected a \.npy file$"):
        (tmp_path / "c.txt").write_text("1")
        _paths.check_path_args(parser.parse_args(["--centers", str(tmp_path / "c.txt")]))
    args = parser.parse_args(["--report", "/nonexistent/r.json"])
    with pytest.raises(InvalidInputError, match="^--report /nonexistent/r.json: directory /nonexistent"):
        _paths.check_path_args(args)
    _paths.check_path_args(args, outputs=False)  # e.g. a rank that does not write


def test_directory_options(tmp_path):
    parser = argparse.ArgumentParser()
    _paths.add_input_dir(parser, "--runs")
    _paths.add_output_dir(parser, "--out")
    (tmp_path / "f").write_text("x")
    _paths.check_path_args(parser.parse_args(["--runs", str(tmp_path), "--out", str(tmp_path / "new" / "run")]))
    assert not (tmp_path / "new").exists()  # checking creates nothing
    cases = [
        (["--runs", str(tmp_path / "none")], "--runs", "no such directory"),
        (["--runs", str(tmp_path / "f")], "--runs", "is a file, expected a directory"),
        (["--out", str(tmp_path / "f")], "--out", "exists and is not a directory"),
        (["--out", str(tmp_path / "f" / "run")], "--out", "is a file"),
    ]
    for argv, flag, why in cases:
        with pytest.raises(InvalidInputError) as e:
            _paths.check_path_args(parser.parse_args(argv))
        assert str(e.value).startswith(f"{flag} {argv[1]}: ") and why in str(e.value), str(e.value)


def test_unwritable_output_directory(tmp_path):
    locked = tmp_path / "locked"
    os.mkdir(locked, 0o555)

    rc, err = run_restricted("-c", "import sys; from pcoreset import _paths, errors\n"
                             "try:\n    _paths.check_output_dir(sys.argv[1], '--out')\n"
                             "except errors.InvalidInputError as e:\n"
                             "    sys.exit(print(f'pcoreset: error: {e}', file=sys.stderr) or 2)",
                             locked / "run")
    assert_one_line_error(rc, err, f"--out {locked}/run: cannot be created in {locked} (permission denied)")


def test_select_parser_declares_its_files():
    args = build_parser().parse_args(["select", "p.npy", "--budget", "1"])
    declared = {(kind, flag) for kind, _, flag, _ in args._pcoreset_path_args}
    assert declared == {("input", "probs"), ("input", "--labeled"), ("input", "--centers"), ("output", "--out"),
                        ("output", "--radii-out")}
    args = build_parser().parse_args(["coverage", "p.npy", "--max-budget", "1"])
    declared = {(kind, flag) for kind, _, flag, _ in args._pcoreset_path_args}
    assert declared == {("input", "probs"), ("input", "--labeled"), ("input", "--centers"), ("output", "--plot"),
                        ("output", "--csv")}


def test_save_npy_atomic_writes_the_exact_name(tmp_path):
    target = tmp_path / "picks"
    _paths.save_npy_atomic(str(target), np.arange(3))
    assert os.listdir(tmp_path) == ["picks"]
    np.testing.assert_array_equal(np.load(target), np.arange(3))


# ---------------------------------------------------------------- info, bench


def test_info_json(capsys):
    assert main(["info", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert isinstance(d, dict) and d


def test_bench_help_has_a_description_and_runtime(capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "paper's algorithm" in out and "minutes" in out and "--preset quick" in " ".join(out.split())


def test_bench_json_checked_before_timing(capsys, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("bench started timing although --json cannot be written")

    monkeypatch.setattr(bench, "read_bandwidth_gbs", boom)
    monkeypatch.setattr(bench, "run_case", boom)
    rc = main(["bench", "--preset", "quick", "--json", "/nonexistent/dir/r.json"])
    assert_one_line_error(rc, capsys.readouterr().err, "--json /nonexistent/dir/r.json")


@pytest.mark.parametrize("ratio, text", [
    (1191.4, "1,191x"), (42.25, "42.2x"), (6.71, "6.71x"), (1.0, "1.00x"), (0.8, "0.8x"),
    (0.0498, "0.05x"), (0.00823, "0.0082x"), (3.1e-6, "3.1e-06x"), (float("inf"), "-"),
])
def test_format_ratio(ratio, text):
    assert bench.format_ratio(ratio) == text


def test_format_case_explains_the_columns():
    case = {"n": 1000, "c": 10, "budget": 5, "labeled": 10, "dtype": "float32", "rows": {
        "torch-rm (float32)": {"seconds": 2.0, "speedup_vs_torch_rm": 1.0},
        "paper (measured B=2, extrapolated)": {"seconds": 250.0, "measured_seconds": 1.5,
                                               "speedup_vs_torch_rm": 0.008},
        "pcoreset cpu (float32)": {"seconds": 0.5, "speedup_vs_torch_rm": 4.0, "dense_GBps": 30.0,
                                   "pct_read_bw": 150.0, "rows_read_frac": 0.031},
        "pcoreset cpu (float32, prune=False)": {"seconds": 1.0, "speedup_vs_torch_rm": 2.0,
                                                "dense_GBps": 15.0, "pct_read_bw": 75.0,
                                                "rows_read_frac": 1.0},
    }}
    text = bench.format_case(case)
    assert "0.0x" not in text and "0.008x" in text
    assert "150%" in text and "3.1%" in text and "rows read" in text
    assert "pcoreset cpu (float32) is 500x faster than the paper's algorithm" in text
    assert "prune=False) is" not in text
    legend = bench.legend(20.0)
    assert "exceed" in legend and "20.0 GB/s" in legend


def test_version_line_outside_git(monkeypatch):
    def no_git(*a, **k):
        raise OSError("git not installed")

    monkeypatch.setattr(bench.subprocess, "run", no_git)
    assert bench.version_line() == f"pcoreset {pcoreset.__version__}"


def test_version_line_in_this_checkout():
    line = bench.version_line()
    assert line.startswith(f"pcoreset {pcoreset.__version__}") and "?" not in line


# ---------------------------------------------------------------- centers, stop radius, coverage


def test_select_with_centers_and_stop_radius(pool_file, tmp_path):
    x = np.load(pool_file)
    ctr = clustered_pool(20, 10, seed=8)
    np.save(tmp_path / "ctr.npy", ctr)
    out = tmp_path / "p.npy"
    rc, _, err = run_cli("select", pool_file, "--centers", tmp_path / "ctr.npy", "--budget", 15, "--out", out)
    assert rc == 0, err
    np.testing.assert_array_equal(np.load(out), pcoreset.select(x, None, 15, centers=ctr))
    full, radii = pcoreset.select(x, [1], 60, return_radii=True)
    r = float(radii[40])
    rc, _, err = run_cli("select", pool_file, "--labeled", _labels(tmp_path, [1]), "--stop-radius", r,
                         "--max-budget", 55, "--out", out)
    assert rc == 0, err
    np.testing.assert_array_equal(np.load(out), full[:int(np.argmax(radii <= r))])


def _labels(tmp_path, rows):
    path = tmp_path / "lab.txt"
    path.write_text("\n".join(str(r) for r in rows))
    return path


@pytest.mark.parametrize("argv, fragment", [
    (["--budget", "3", "--max-budget", "4"], "--max-budget applies with --stop-radius"),
    ([], "select needs --budget N, or --stop-radius R"),
    (["--stop-radius", "0.1", "--budget", "3", "--max-budget", "4"], "not both"),
    (["--stop-radius", "-1", "--max-budget", "4"], "radius must be a distance >= 0, got -1.0"),
])
def test_select_budget_options_are_checked(pool_file, argv, fragment):
    rc, _, err = run_cli("select", pool_file, *argv)
    assert_one_line_error(rc, err, fragment)


def test_select_centers_of_the_wrong_width_is_one_line(pool_file, tmp_path):
    np.save(tmp_path / "ctr.npy", np.full((3, 4), 0.25))
    rc, _, err = run_cli("select", pool_file, "--centers", tmp_path / "ctr.npy", "--budget", 3)
    assert_one_line_error(rc, err, "centers has 4 columns but probs has C=10")
    rc, _, err = run_cli("select", pool_file, "--centers", tmp_path / "nosuch.npy", "--budget", 3)
    assert_one_line_error(rc, err, "--centers", "no such file")


def test_coverage_writes_csv_and_plot(pool_file, tmp_path):
    x = np.load(pool_file)
    plot = tmp_path / "cov.png"
    rc, out, err = run_cli("coverage", pool_file, "--labeled", _labels(tmp_path, [0, 5]), "--max-budget", 40,
                           "--plot", plot)
    assert rc == 0, err
    assert plot.stat().st_size > 1000 and plot.read_bytes()[:4] == b"\x89PNG"
    rows = (tmp_path / "cov.csv").read_text().splitlines()
    assert rows[0] == "picks,row,radius_before,radius_after" and len(rows) == 41
    picks, radii = pcoreset.select(x, [0, 5], 41, return_radii=True)
    table = np.array([[float(v) for v in line.split(",")] for line in rows[1:]])
    np.testing.assert_array_equal(table[:, 1].astype(int), picks[:40])
    np.testing.assert_allclose(table[:, 2], radii[:40], rtol=0, atol=0)
    np.testing.assert_allclose(table[:, 3], radii[1:41], rtol=0, atol=0)
    rc, _, err = run_cli("coverage", pool_file, "--plot", tmp_path / "nodir" / "c.png", "--max-budget", 5)
    assert_one_line_error(rc, err, "--plot")
    rc, _, err = run_cli("coverage", pool_file)
    assert_one_line_error(rc, err, "coverage needs --max-budget")

"""The NumPy-only install (`pip install pcoreset`, no torch): every test here
runs pcoreset in a child interpreter in which `import torch` fails, as it does
where torch is not installed, and checks that the core works there (select,
Selector, kcenter_greedy, the exact labeled start on both paths, the CLI's
select and coverage) with the same picks as the parent process, and that the
torch-only features fail with a PcoresetError that names the extra to install.

The child imports the same pcoreset as this process (the checkout, or an
installed wheel when the tests run against one)."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import pcoreset
from pcoreset import _start
from conftest import clustered_pool
from reference import check_greedy_valid

# Makes `import torch` (and torch.*) fail in the child as a missing package does.
BLOCK_TORCH = textwrap.dedent("""
    import sys
    class _NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None
    sys.meta_path.insert(0, _NoTorch())
    for _m in [m for m in sys.modules if m == "torch" or m.startswith("torch.")]:
        del sys.modules[_m]
""")

INSTALL_HINT = 'pip install "pcoreset[torch]"'


def _child_env(tmp_path, **extra):
    env = dict(os.environ)
    # the parent's pcoreset first (the checkout or the installed package)
    root = os.path.dirname(os.path.dirname(os.path.abspath(pcoreset.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root, os.path.dirname(os.path.abspath(__file__))])
    env.pop("PCORESET_START", None)
    env.update(extra)
    return env


def run_child(tmp_path, body: str, **env):
    """Run `body` without torch; it prints one JSON line, returned parsed."""
    script = tmp_path / "child.py"
    script.write_text(BLOCK_TORCH + textwrap.dedent(body))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600,
                         cwd=str(tmp_path), env=_child_env(tmp_path, **env))
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_cli(tmp_path, *args):
    script = tmp_path / "cli.py"
    script.write_text(BLOCK_TORCH + "from pcoreset.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=600,
                          cwd=str(tmp_path), env=_child_env(tmp_path))


def confident_ties_pool(n=3000, c=24, seed=3):
    """Confident rows (softmax of a logit gap of 16, 1e-7 to 1e-5 apart
    within a class), every fifth row an exact duplicate of an earlier one:
    the rows on which a plain float32 GEMM cannot order distances."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.0, (n, c))
    z[np.arange(n), rng.integers(0, c, n)] += 16.0
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    src = np.arange(0, n, 5)
    p[src[1:] - 1] = p[src[:-1]]
    return p.astype(np.float32)


def test_the_child_really_has_no_torch(tmp_path):
    got = run_child(tmp_path, """
        import json
        try:
            import torch  # noqa: F401
            has = True
        except ImportError:
            has = False
        import pcoreset
        info = pcoreset.info()
        print(json.dumps({"torch": has, "loaded": "torch" in sys.modules,
                          "info_torch": info["torch"], "text": str(info)}))
    """)
    text = got.pop("text")
    assert got == {"torch": False, "loaded": False, "info_torch": None}
    # print(pcoreset.info()) reads as lines, the dict stays a dict
    assert "\ntorch: not installed\n" in text and "\n  cpu: available" in text
    assert 'torch: unavailable: torch is not installed: pip install "pcoreset[torch]"' in text
    assert text.startswith(f"pcoreset: {pcoreset.__version__}\n")


@pytest.mark.parametrize("method", ["exact", "certified"])
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_select_matches_the_full_install(tmp_path, method, dtype):
    x = confident_ties_pool().astype(dtype)
    lab = np.arange(0, x.shape[0], 7)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "lab.npy", lab)
    got = run_child(tmp_path, """
        import json, numpy as np, pcoreset
        x, lab = np.load("x.npy"), np.load("lab.npy")
        picks, radii = pcoreset.select(x, lab, 60, return_radii=True)
        print(json.dumps({"picks": picks.tolist(), "radii": radii.tolist(),
                          "torch": "torch" in sys.modules}))
    """, PCORESET_START=method)
    assert not got["torch"]
    # the parent's exact direct pass: the same picks and the same radii, to the bit
    with _start.force("exact"):
        picks, radii = pcoreset.select(x, lab, 60, return_radii=True, backend="cpu")
    np.testing.assert_array_equal(got["picks"], picks)
    np.testing.assert_array_equal(np.asarray(got["radii"]), radii)
    check_greedy_valid(x.astype(np.float64), lab, picks)


def test_selector_and_kcenter_greedy_without_torch(tmp_path):
    x = clustered_pool(4000, 16, seed=11)
    np.save(tmp_path / "x.npy", x)
    # add_centers with many rows takes the start's machinery (certified when forced)
    got = run_child(tmp_path, """
        import json, numpy as np, pcoreset
        x = np.load("x.npy")
        s = pcoreset.Selector(x, [3, 5])
        first = s.next(10)
        s.add_centers(np.arange(100, 400))
        second = s.next(10)
        radius = float(s.radius)
        kc = pcoreset.kcenter_greedy(x * 3.0 - 1.0, None, 12)
        print(json.dumps({"first": first.tolist(), "second": second.tolist(), "radius": radius,
                          "kc": kc.tolist(), "torch": "torch" in sys.modules}))
    """, PCORESET_START="certified")
    assert not got["torch"]
    with _start.force("exact"):
        s = pcoreset.Selector(x, [3, 5], backend="cpu")
        first = s.next(10)
        s.add_centers(np.arange(100, 400))
        second = s.next(10)
        radius = float(s.radius)
    assert got["first"] == first.tolist() and got["second"] == second.tolist()
    assert got["radius"] == radius
    assert got["kc"] == pcoreset.kcenter_greedy(x * 3.0 - 1.0, None, 12).tolist()


def test_cli_select_and_coverage_without_torch(tmp_path):
    x = clustered_pool(2000, 10, seed=5)
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "lab.txt").write_text("0\n7\n9\n")
    out = run_cli(tmp_path, "select", "x.npy", "--labeled", "lab.txt", "--budget", "6", "--out", "picks.npy")
    assert out.returncode == 0, out.stderr
    expected = pcoreset.select(x, [0, 7, 9], 6)
    assert np.load(tmp_path / "picks.npy").tolist() == expected.tolist()
    out = run_cli(tmp_path, "coverage", "x.npy", "--labeled", "lab.txt", "--max-budget", "4", "--csv", "cov.csv")
    assert out.returncode == 0, out.stderr
    rows = (tmp_path / "cov.csv").read_text().splitlines()
    assert rows[0].startswith("picks,row,radius_before,radius_after") and len(rows) == 5
    assert [int(r.split(",")[1]) for r in rows[1:]] == expected[:4].tolist()
    out = run_cli(tmp_path, "--version")
    assert out.returncode == 0 and out.stdout.strip() == f"pcoreset {pcoreset.__version__}"


def test_torch_only_features_name_the_extra(tmp_path):
    got = run_child(tmp_path, """
        import json, numpy as np, pcoreset
        x = np.full((5, 2), 0.5)
        out = {}
        try:
            pcoreset.select(x, None, 2, backend="torch")
        except pcoreset.BackendUnavailableError as exc:
            out["backend"] = str(exc)
        for mod in ("pcoreset.distributed", "pcoreset.activekd"):
            try:
                __import__(mod)
            except pcoreset.MissingDependencyError as exc:
                out[mod] = [str(exc), isinstance(exc, ImportError)]
        out["auto"] = pcoreset.select(x, None, 2).tolist()  # auto still finds the cpu backend
        print(json.dumps(out))
    """)
    assert INSTALL_HINT in got["backend"] and "torch is not installed" in got["backend"]
    for mod in ("pcoreset.distributed", "pcoreset.activekd"):
        msg, is_import_error = got[mod]
        assert INSTALL_HINT in msg and is_import_error, msg
    assert len(got["auto"]) == 2
    for cmd in (["demo", "--quick"], ["run", "--help"]):
        out = run_cli(tmp_path, *cmd)
        assert out.returncode == 2, (cmd, out.stdout, out.stderr)
        assert INSTALL_HINT in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_numpy_selection_does_not_load_torch_where_it_is_installed(tmp_path):
    # torch takes seconds to import: `import pcoreset` and a selection on a
    # NumPy pool leave it alone; the torch and FAISS backends load it when
    # they are asked for (here: where torch is installed)
    pytest.importorskip("torch")
    script = tmp_path / "lazy.py"
    script.write_text(textwrap.dedent("""
        import json, sys
        import numpy as np
        import pcoreset
        out = {"after_import": "torch" in sys.modules}
        x = np.random.default_rng(0).dirichlet(np.ones(6), size=300)
        out["picks"] = pcoreset.select(x, [0, 1], 5).tolist()
        s = pcoreset.Selector(x, [0, 1])
        out["selector"] = s.next(5).tolist()
        out["info_keys"] = sorted(pcoreset.backends.names())
        out["after_select"] = "torch" in sys.modules
        out["torch_backend"] = pcoreset.select(x, [0, 1], 5, backend="torch").tolist()
        import torch
        out["tensor"] = pcoreset.select(torch.from_numpy(x), [0, 1], 5).tolist()
        print(json.dumps(out))
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600,
                          cwd=str(tmp_path), env=_child_env(tmp_path))
    assert done.returncode == 0, done.stderr[-4000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["after_import"] is False and got["after_select"] is False
    assert got["picks"] == got["selector"] == got["torch_backend"] == got["tensor"]
    assert {"cpu", "torch"} <= set(got["info_keys"])


def test_a_built_cuda_module_without_torch_is_only_unavailable(tmp_path):
    # nvcc was present at build time (the module is there) but torch is not
    # installed: the cuda backend says so; info() and a NumPy select still work
    got = run_child(tmp_path, """
        import json, numpy as np, pcoreset
        from pcoreset.backends import cuda
        import types
        cuda._C_cuda = types.SimpleNamespace(build_info=lambda: {"archs": "80,90"})  # a built module
        info = pcoreset.info()
        x = np.random.default_rng(0).dirichlet(np.ones(4), size=50)
        print(json.dumps({"cuda": info["backends"]["cuda"], "picks": pcoreset.select(x, [0], 3).tolist()}))
    """)
    assert got["cuda"].startswith("unavailable: torch is not installed") and INSTALL_HINT in got["cuda"]
    assert len(got["picks"]) == 3

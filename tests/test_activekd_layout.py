"""The layout of pcoreset.activekd: no import cycles, every module importable on
its own, every registry entry resolvable, and RunConfig defaults that do not
favour one modality."""
from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import pcoreset.activekd as A
from pcoreset.activekd import RunConfig
from pcoreset.activekd.datasets import DATASETS, find_loader
from pcoreset.activekd.students import STUDENTS
from pcoreset.activekd.teachers import TEACHERS

REPO = Path(__file__).resolve().parents[1]
PKG = "pcoreset.activekd"


def _modules():
    names = [PKG]
    for info in pkgutil.walk_packages(A.__path__, prefix=PKG + "."):
        names.append(info.name)
    return sorted(names)


def _path(module: str) -> Path:
    base = REPO / Path(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _imports(module: str):
    """Modules of this package that `module` imports, at module level or inside
    functions (a lazy import still ties two modules together), each with the
    packages whose __init__ such an import runs."""
    tree = ast.parse(_path(module).read_text(encoding="utf-8"))
    is_pkg = _path(module).name == "__init__.py"
    here = module if is_pkg else module.rpartition(".")[0]
    found = set()

    def visit(nodes):
        for node in nodes:
            if isinstance(node, ast.ImportFrom):
                base = here
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                target = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
                for alias in node.names:  # "from . import x" imports the submodule x
                    sub = f"{target}.{alias.name}"
                    found.add(sub if _exists(sub) else target)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)

    visit(ast.walk(tree))
    out = set()
    for name in found:
        if not name.startswith(PKG):
            continue
        parts = name.split(".")
        for k in range(len(PKG.split(".")), len(parts) + 1):  # the packages it passes through run too
            pkg = ".".join(parts[:k])
            if not module.startswith(pkg + ".") and pkg != module:  # an ancestor is already importing
                out.add(pkg)
    return out


def _exists(name: str) -> bool:
    base = REPO / Path(*name.split("."))
    return base.is_dir() or base.with_suffix(".py").is_file()


def test_no_import_cycles():
    graph = {m: _imports(m) for m in _modules()}
    assert graph[f"{PKG}.loop"] >= {f"{PKG}.datasets", f"{PKG}.teachers", f"{PKG}.students"}  # the walk sees imports
    state, stack = {}, []

    def dfs(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == "open":
                cycle = stack[stack.index(n):] + [n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                dfs(n)
        stack.pop()
        state[m] = "done"

    for m in graph:
        if m not in state:
            dfs(m)


def test_every_module_imports_alone_in_a_fresh_interpreter():
    code = (
        "import importlib, json, sys\n"
        "bad = {}\n"
        "for name in json.loads(sys.argv[1]):\n"
        "    for m in [k for k in sys.modules if k == 'pcoreset' or k.startswith('pcoreset.')]:\n"
        "        del sys.modules[m]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        bad[name] = repr(exc)\n"
        "print(json.dumps(bad))\n")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(_modules())], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {}


def test_registries_list_and_resolve_every_part():
    assert {"zeroshot-text", "precomputed", "clip", "fewshot"} <= set(TEACHERS.names())
    assert {"bow", "smallcnn", "resnet18", "mobilenet_v2", "resnet18-imagenet"} <= set(STUDENTS.names())
    assert {"embedded:wordnet", "embedded:wordnet25", "fashion-mnist", "imagefolder", "torchvision"} <= \
        set(DATASETS.names())
    for registry in (TEACHERS, STUDENTS, DATASETS):
        for name in registry.names():
            assert callable(registry.get(name)), name
    # names match whole: a CSV file whose name starts like a registered dataset is a CSV file
    from pcoreset.activekd.datasets.text import load_csv

    assert find_loader("fashion-mnist.csv") is load_csv
    assert find_loader("fashion-mnist:/data/fm") is DATASETS.get("fashion-mnist")
    assert find_loader("embedded:wordnet25") is DATASETS.get("embedded:wordnet25")


def test_run_config_defaults_are_modality_neutral():
    from pcoreset.activekd.datasets import load_dataset
    from pcoreset.activekd.loop import resolve_config

    cfg = RunConfig()
    assert cfg.prompt is None and cfg.teacher_scale is None and cfg.student is None
    text = resolve_config(cfg, load_dataset(cfg))
    assert (text.prompt, text.teacher_scale, text.student) == ("a kind of {}.", 50.0, "bow")
    images = _image_dataset()
    clip = resolve_config(RunConfig(teacher="clip"), images)
    assert (clip.prompt, clip.teacher_scale, clip.student) == ("a photo of a {}.|an image of a {}.", 100.0,
                                                               "resnet18")
    own = resolve_config(RunConfig(teacher="clip", prompt="a {}", teacher_scale=20.0, student="smallcnn"), images)
    assert (own.prompt, own.teacher_scale, own.student) == ("a {}", 20.0, "smallcnn")


def test_legacy_clip_config_reads_as_the_same_teacher():
    from pcoreset.activekd.config import upgrade_saved

    old = {"teacher": "clip", "prompt": "a kind of {}.", "teacher_scale": 50.0}
    assert upgrade_saved(old) == {"teacher": "clip", "prompt": None, "teacher_scale": None}
    text = {"teacher": "zeroshot-text", "prompt": "a kind of {}.", "teacher_scale": 50.0}
    assert upgrade_saved(text) == text


def _image_dataset():
    import numpy as np

    from pcoreset.activekd.datasets import Dataset

    return Dataset(name="img", ids=["a", "b"], labels=np.array([0, 1]), is_test=np.array([False, True]),
                   class_names=["cat", "dog"], items=["a.png", "b.png"],
                   meta={"templates": ["a photo of a {}.", "an image of a {}."]})


def test_no_module_of_the_driver_is_over_600_lines():
    sizes = {str(p.relative_to(REPO)): len(p.read_text(encoding="utf-8").splitlines())
             for p in (REPO / "pcoreset" / "activekd").rglob("*.py")}
    assert sizes and {p: n for p, n in sizes.items() if n > 600} == {}

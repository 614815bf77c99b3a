"""The package's layers (docs/guide/architecture.rst): every import inside
pcoreset/, at module level or inside a function, points down the layer list,
and no module imports itself back through others."""
from __future__ import annotations

import ast
import fnmatch
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent / "pcoreset"

# Lowest first. A module may import from its own layer and the layers below.
LAYERS: List[Tuple[str, List[str]]] = [
    ("errors", ["pcoreset.errors", "pcoreset._version"]),
    ("utilities", ["pcoreset._memory", "pcoreset._threads", "pcoreset._atomic", "pcoreset._paths", "pcoreset._deps"]),
    ("validation and conversion", ["pcoreset._problem"]),
    ("state protocol and step loop", ["pcoreset.backends.base"]),
    ("backends", ["pcoreset.backends.cpu", "pcoreset.backends.cuda", "pcoreset.backends.faiss_backend",
                  "pcoreset.backends.torch_backend"]),
    ("backend registry", ["pcoreset.backends"]),
    ("the start", ["pcoreset._start", "pcoreset._start.*"]),
    ("public selection API", ["pcoreset.select", "pcoreset.selector", "pcoreset.info"]),
    ("package", ["pcoreset"]),
    ("above the API", ["pcoreset.strategies", "pcoreset.strategies.*", "pcoreset.integrations",
                       "pcoreset.integrations.*", "pcoreset.distributed", "pcoreset.distributed.*",
                       "pcoreset.bench"]),
    ("ActiveKD", ["pcoreset.activekd", "pcoreset.activekd.*"]),
    ("command line", ["pcoreset.cli", "pcoreset.cli.*", "pcoreset.__main__"]),
]
# Compiled extensions: imported like modules, import nothing of ours.
EXTENSIONS = {"pcoreset._C", "pcoreset._C_cuda"}


def modules(root: Path = ROOT) -> Dict[str, Path]:
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _targets(mod: str, path: Path, node, known: Set[str]) -> List[str]:
    """The pcoreset modules an import statement names (relative ones resolved;
    `from pkg import name` names pkg.name when that is a module, else pkg)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            pkg = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
            base = pkg[:len(pkg) - node.level + 1]
            base = ".".join(base + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        names = []
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            names.append(sub if (sub in known or sub in EXTENSIONS) else base)
    out = []
    for name in names:
        if not (name == "pcoreset" or name.startswith("pcoreset.")) or name in EXTENSIONS:
            continue
        while name not in known and "." in name:  # `import pcoreset.x.y` names a module
            name = name.rsplit(".", 1)[0]
        out.append(name)
    return out


def _registry_modules(path: Path) -> List[str]:
    """The built-in backends the registry imports by name (_BUILTIN)."""
    tree = ast.parse(path.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_BUILTIN" for t in node.targets):
            return [f"pcoreset.backends.{v}" for v in ast.literal_eval(node.value).values()]
    return []


def import_graph(root: Path = ROOT) -> Dict[str, Dict[str, int]]:
    """module -> {imported module: line of the first import}, every import
    statement included (module level, in functions, in try blocks)."""
    mods = modules(root)
    known = set(mods)
    graph: Dict[str, Dict[str, int]] = {m: {} for m in mods}
    for mod, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _targets(mod, path, node, known):
                    if target != mod:
                        graph[mod].setdefault(target, node.lineno)
    if "pcoreset.backends" in mods:
        for target in _registry_modules(mods["pcoreset.backends"]):
            graph["pcoreset.backends"].setdefault(target, 0)
    return graph


def find_cycle(graph: Dict[str, Dict[str, int]]):
    """One import cycle as a list of modules (first == last), or None."""
    state: Dict[str, int] = {}
    stack: List[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state:
                found = visit(t)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def layer_of(mod: str) -> int:
    for i, (_, patterns) in enumerate(LAYERS):
        if any(fnmatch.fnmatchcase(mod, p) for p in patterns):
            return i
    return -1


def test_every_module_has_a_layer():
    missing = [m for m in modules() if layer_of(m) < 0]
    assert not missing, f"place these modules in LAYERS (and docs/guide/architecture.rst): {missing}"


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_imports_point_down_the_layers():
    graph = import_graph()
    mods = modules()
    up = []
    for mod, targets in graph.items():
        for target, line in targets.items():
            if layer_of(target) > layer_of(mod):
                up.append(f"{mods[mod].relative_to(ROOT.parent)}:{line}: {mod} ({LAYERS[layer_of(mod)][0]}) "
                          f"imports {target} ({LAYERS[layer_of(target)][0]})")
    assert not up, "imports pointing up the layers:\n" + "\n".join(up)


def test_backends_do_not_import_each_other():
    graph = import_graph()
    backends = [m for m in modules() if LAYERS[layer_of(m)][0] == "backends"]
    assert len(backends) >= 4
    for m in backends:
        assert not set(graph[m]) & set(backends), f"{m} imports another backend: {set(graph[m]) & set(backends)}"


def test_registry_lists_each_backend_module_once():
    listed = _registry_modules(modules()["pcoreset.backends"])
    backends = sorted(m for m in modules() if LAYERS[layer_of(m)][0] == "backends")
    assert sorted(listed) == backends


# ---- the checker itself: it must see what it is meant to find


def _write(tmp_path: Path, files: Dict[str, str]) -> Path:
    root = tmp_path / "pcoreset"
    for name, text in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def test_checker_finds_a_cycle_through_a_function_level_import(tmp_path):
    root = _write(tmp_path, {
        "__init__.py": "",
        "a.py": "from . import b\n",
        "b.py": "def f():\n    from .sub import c\n",
        "sub/__init__.py": "",
        "sub/c.py": "def g():\n    from ..a import thing\n",
    })
    graph = import_graph(root)
    assert find_cycle(graph) == ["pcoreset.a", "pcoreset.b", "pcoreset.sub.c", "pcoreset.a"]


def test_checker_resolves_relative_imports_and_ignores_extensions(tmp_path):
    root = _write(tmp_path, {
        "__init__.py": "from ._x import y\n",
        "_x.py": "from . import _C\nimport numpy\ntry:\n    from . import _C_cuda\nexcept ImportError:\n    pass\n",
        "p/__init__.py": "",
        "p/q.py": "from .. import _x\nimport pcoreset.p\nfrom pcoreset.p import q2\n",
        "p/q2.py": "",
    })
    graph = import_graph(root)
    assert graph["pcoreset"] == {"pcoreset._x": 1}
    assert graph["pcoreset._x"] == {}
    assert graph["pcoreset.p.q"] == {"pcoreset._x": 1, "pcoreset.p": 2, "pcoreset.p.q2": 3}
    assert find_cycle(graph) is None


@pytest.mark.parametrize("mod, layer", [("pcoreset._problem", "validation and conversion"),
                                        ("pcoreset.backends.base", "state protocol and step loop"),
                                        ("pcoreset._start", "the start"),
                                        ("pcoreset.select", "public selection API")])
def test_the_core_sits_where_the_architecture_page_draws_it(mod, layer):
    assert LAYERS[layer_of(mod)][0] == layer

"""Imports go one way (DESIGN.md): every import in the package, at module level or inside a
function, read with ``ast``, goes down the layers or sideways within one, and the packages form
no cycle. (That only the communicator imports mpi4py is checked in test_comm.py.)"""

import ast
import graphlib
import subprocess
import sys
from pathlib import Path

import pytest

import mpinn

PACKAGE = Path(mpinn.__file__).parent

# Bottom to top; a module belongs to the layer of its longest listed prefix.
LAYERS = [
    ("bottom", ["mpinn", "mpinn.errors", "mpinn.io", "mpinn.config", "mpinn.registry",
                "mpinn.launcher", "mpinn.outputs", "mpinn.memory", "mpinn.faults"]),
    ("nn", ["mpinn.nn", "mpinn.export"]),
    ("optim and data", ["mpinn.optim", "mpinn.data"]),
    ("layout", ["mpinn.layout"]),
    ("parallel", ["mpinn.parallel"]),
    ("train", ["mpinn.train", "mpinn.callbacks"]),
    ("plan", ["mpinn.plan"]),
    ("keras", ["mpinn.keras", "mpinn.distribute"]),
    ("cli", ["mpinn.cli", "mpinn.__main__"]),
]
RANK = {prefix: rank for rank, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it; ``from pkg import mod`` counts as ``pkg.mod``."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.update(f"{base}.{a.name}" if is_module(f"{base}.{a.name}") else base
                         for a in node.names)
    return found


MODULES = {module_name(path): imported(path) for path in sorted(PACKAGE.rglob("*.py"))}


def within(name: str, prefix: str) -> bool:
    """Whether ``name`` is ``prefix`` or inside it (the root package ``mpinn`` is only itself)."""
    return name == prefix or (prefix != "mpinn" and name.startswith(prefix + "."))


def layer(name: str) -> int:
    """The layer of a module of mpinn (ValueError for a module no layer lists)."""
    return RANK[max((p for p in RANK if within(name, p)), key=len)]


def top(name: str) -> str:
    """The top-level unit of a module: ``mpinn.nn.step`` -> ``mpinn.nn``."""
    return ".".join(name.split(".")[:2])


def test_every_module_has_a_layer_and_every_layer_lists_modules():
    assert [name for name in MODULES if not any(within(name, p) for p in RANK)] == []
    assert [prefix for prefix in RANK if prefix not in MODULES] == []


def test_imports_go_down_or_sideways_within_a_layer():
    upward = [f"{name} ({LAYERS[layer(name)][0]}) imports {target} ({LAYERS[layer(target)][0]})"
              for name, targets in MODULES.items() for target in sorted(targets)
              if target.startswith("mpinn") and layer(target) > layer(name)]
    assert upward == []


def test_the_packages_form_no_cycle():
    graph = {}
    for name, targets in MODULES.items():
        graph.setdefault(top(name), set()).update(
            top(t) for t in targets if t.startswith("mpinn.") and top(t) != top(name))
    graphlib.TopologicalSorter(graph).prepare()  # raises CycleError naming the cycle


@pytest.mark.parametrize("name", [n for n in MODULES if layer(n) == 0])
def test_the_bottom_layer_is_standard_library_only(name):
    """So the CLI can parse flags and set BLAS threads before numpy or MPI loads."""
    assert {t.split(".")[0] for t in MODULES[name]} & {"numpy", "mpi4py"} == set()


def test_importing_the_math_loads_no_mpi():
    code = ("import sys, mpinn.nn, mpinn.optim, mpinn.data, mpinn.layout, mpinn.config; "
            "sys.exit('mpi4py' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_the_checks_see_imports_inside_functions_and_relative_ones(tmp_path, monkeypatch):
    fake = tmp_path / "mpinn"
    (fake / "nn").mkdir(parents=True)
    for module in ("__init__.py", "nn/__init__.py", "nn/layers.py", "train.py"):
        (fake / module).write_text("")
    (fake / "nn" / "step.py").write_text("def f():\n    from ..train import x\n"
                                         "from . import layers\nfrom .layers import Dense\n")
    monkeypatch.setitem(globals(), "PACKAGE", fake)
    found = imported(fake / "nn" / "step.py")
    assert found == {"mpinn.train", "mpinn.nn.layers"}
    assert layer("mpinn.train") > layer("mpinn.nn.step")
    assert layer("mpinn.cli") == layer("mpinn.cli.dispatch") == len(LAYERS) - 1
    with pytest.raises(ValueError):
        layer("mpinn.unlisted")

"""The math never knows about MPI: nn, optim and data import without mpi4py."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "mpinn"


def test_importing_the_math_loads_no_mpi():
    code = ("import sys, mpinn.nn, mpinn.optim, mpinn.data, mpinn.config; "
            "sys.exit('mpi4py' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_no_mpi4py_import_statement_in_the_math():
    for sub in ("nn", "optim", "data"):
        for path in (PACKAGE / sub).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = [a.name for a in getattr(node, "names", [])] if isinstance(node, ast.Import) else []
                module = node.module or "" if isinstance(node, ast.ImportFrom) else ""
                assert not any(n.startswith("mpi4py") for n in names + [module]), path

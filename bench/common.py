"""Shared benchmark helpers: the machine's native BLAS kernel, one thread, medians, JSON out.

Benchmarks measure the speed a user's machine gets. Some machines set ``OPENBLAS_CORETYPE``
and ``OPENBLAS_L2_SIZE`` to work around old OpenBLAS builds; they force a slower kernel (on
an AVX-512 CPU, Haswell instead of SkylakeX: about half the float32 GEMM rate). OpenBLAS
reads them once, when it loads, so importing this module re-executes the script without
them; every process a benchmark starts gets the same environment (``bench_env``). Tests and
CI never do this: their bitwise checks run on whatever kernel the machine forces.
"""

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

FORCED_BLAS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"  # the committed figures: written only with --output
DEFAULT_OUTPUT = ROOT / "runs" / "bench"
REMOVED = {name: os.environ[name] for name in FORCED_BLAS if name in os.environ}


def bench_env() -> dict:
    """The environment of every measured process: no forced BLAS kernel, one BLAS thread."""
    env = {k: v for k, v in os.environ.items() if k not in FORCED_BLAS}
    return {**env, **ONE_THREAD, "MPINN_BENCH_REMOVED": json.dumps(REMOVED)}


def _restart_natively() -> None:
    """Re-execute this script without the forced-kernel variables (they only act at load)."""
    if any(name in os.environ for name in FORCED_BLAS) or any(os.environ.get(k) != v for k, v in ONE_THREAD.items()):
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], bench_env())


_restart_natively()
if "MPINN_BENCH_REMOVED" in os.environ:
    REMOVED = json.loads(os.environ["MPINN_BENCH_REMOVED"])
LOAD_AT_START = list(os.getloadavg())


def blas_info() -> dict:
    """The BLAS numpy uses in this process: library, version, kernel and thread count."""
    try:
        import numpy  # noqa: F401  (loads the BLAS)
        from threadpoolctl import threadpool_info
    except ImportError:
        sys.exit("mpinn bench: threadpoolctl is needed to record the BLAS kernel; "
                 "pip install 'mpinn[bench]'")
    blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    return {"library": blas[0]["internal_api"], "version": blas[0]["version"],
            "kernel": blas[0].get("architecture"), "threads": blas[0]["num_threads"],
            "file": Path(blas[0]["filepath"]).name} if blas else {"library": None}


def cpu_model() -> str:
    """The CPU's name, with its widest vector extension (what picks the BLAS kernel)."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    widest = next((f for f in ("avx512f", "avx2", "avx", "neon", "asimd") if f in flags), None)
    return f"{name} ({widest})" if widest else name


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def mpi_library() -> str | None:
    """The MPI library's own version line, asked of a fresh process (no MPI here)."""
    code = "from mpi4py import MPI; print(MPI.Get_library_version().splitlines()[0])"
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=60, env=bench_env())
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def machine() -> dict:
    """What a figure depends on: CPU, BLAS kernel and threads, versions, and the load."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "blas": blas_info(), "forced_blas_variables_removed": REMOVED,
            "versions": {name: _version(name) for name in ("mpinn", "numpy", "mpi4py", "mpich", "torch")},
            "mpi": mpi_library(), "load_average_at_start": LOAD_AT_START,
            "load_average_at_end": list(os.getloadavg())}


def add_output_argument(parser) -> None:
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"folder for the JSON (and plot); default {DEFAULT_OUTPUT.relative_to(ROOT)}/. "
                             "The committed figures are in bench/results/: write there only on purpose")


def output_folder(output: Path | None) -> Path:
    folder = Path(output) if output is not None else DEFAULT_OUTPUT
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_json(name: str, payload: dict, output: Path | None = None) -> Path:
    """``payload`` with the machine's description to OUTPUT/name.json (default runs/bench/)."""
    path = output_folder(output) / f"{name}.json"
    machine_now = machine()
    payload = {"machine": machine_now, "command": " ".join([Path(sys.executable).name, *sys.argv]),
               **payload}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def has_torch() -> bool:
    """Whether PyTorch (the optional peer in the tables) is installed."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def launch_worker(worker: Path, ranks: int, *args, timeout: int = 900,
                  launcher_flags: tuple[str, ...] = ()) -> dict:
    """Run ``worker`` under the venv's mpiexec (with ``launcher_flags``) on ``ranks`` ranks
    (``bench_env``: native BLAS kernel, one thread each) and return the JSON object its rank 0
    printed last."""
    mpiexec = Path(sys.executable).parent / "mpiexec"
    command = [str(mpiexec), *launcher_flags, "-n", str(ranks), sys.executable, str(worker),
               *map(str, args)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=bench_env(),
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])

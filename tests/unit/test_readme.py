"""The README runs as written: every fenced ``python`` and ``sh`` block, in order, in one
temporary copy of the repository.

Info strings say how a block runs:
- ``python``: a script of its own;
- ``sh``: bash, with the project's virtual environment first on PATH;
- ``toml file=NAME`` (any language with ``file=``): written to NAME before any block runs;
- ``sh no-run``: cannot run here (``sbatch``, ``module``, ``make test`` itself);
- ``sh slow``: a benchmark, run by ``make test-readme-slow`` (MPINN_README_SLOW=1), not by
  ``make test``.
Blocks with another language (``text``, ``toml`` without ``file=``) are not code.
"""

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
FENCE = re.compile(r"^```(\S*)(.*)$")
RUNNABLE = ("python", "sh")
MARKS = ("no-run", "slow")
SLOW = os.environ.get("MPINN_README_SLOW") == "1"


@dataclass(frozen=True)
class Block:
    line: int
    language: str
    options: tuple[str, ...]
    text: str

    @property
    def file(self) -> str | None:
        names = [o.split("=", 1)[1] for o in self.options if o.startswith("file=")]
        return names[0] if names else None

    @property
    def runs_now(self) -> bool:
        if self.language not in RUNNABLE or self.file or "no-run" in self.options:
            return False
        return ("slow" in self.options) == SLOW

    def __str__(self) -> str:
        first = next((line for line in self.text.splitlines() if line.strip()), "")
        return f"README.md:{self.line} {first[:50]}"


def readme_blocks(text: str) -> list[Block]:
    blocks, current, body = [], None, []
    for number, line in enumerate(text.splitlines(), start=1):
        match = FENCE.match(line)
        if current is None and match:
            current, body = (number, match[1], tuple(match[2].split())), []
        elif current is not None and line.startswith("```"):
            blocks.append(Block(current[0], current[1], current[2], "\n".join(body) + "\n"))
            current = None
        elif current is not None:
            body.append(line)
    assert current is None, f"README.md:{current[0]}: a fence that never closes"
    return blocks


BLOCKS = readme_blocks((ROOT / "README.md").read_text())


def test_every_block_says_how_it_runs():
    for block in BLOCKS:
        unknown = [o for o in block.options if o not in MARKS and not o.startswith("file=")]
        assert not unknown, f"{block}: unknown info-string words {unknown}"
        assert block.language, f"{block}: a fence without a language"


@pytest.fixture(scope="module")
def copy(tmp_path_factory):
    """A temporary copy of the repository (its tracked files), the venv linked in, and every
    ``file=`` block written."""
    folder = tmp_path_factory.mktemp("readme") / "repo"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    for name in filter(None, tracked.stdout.decode().split("\0")):
        if (ROOT / name).is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, folder / name)
    (folder / ".venv").symlink_to(VENV_BIN.parent)
    for block in BLOCKS:
        if block.file:
            (folder / block.file).write_text(block.text)
    return folder


def run_block(block: Block, folder: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",
           "OPENBLAS_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    if block.language == "python":
        script = folder / f"readme_block_{block.line}.py"
        script.write_text(block.text)
        command = [sys.executable, script.name]
    else:
        command = ["bash", "-e", "-o", "pipefail", "-c", block.text]
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("block", [b for b in BLOCKS if b.runs_now], ids=str)
def test_readme_block_runs(block, copy):
    run = run_block(block, copy)
    assert run.returncode == 0, f"{block} failed ({run.returncode}):\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"

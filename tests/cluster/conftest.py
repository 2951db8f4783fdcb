"""One emulated cluster for the session: 2 nodes in network namespaces with 1 Gbit/s links
(tests/cluster/cluster.py), always deleted afterwards. Skipped, with the reason, where
namespaces cannot be made (not root, no ``ip``/``tc``/``unshare``, not Linux)."""

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "unit")]  # cluster.py; launch.py's helpers

import cluster as emulated  # noqa: E402

NAME = "mpt"     # namespaces mpt-hub, mpt-node0, mpt-node1 (the bench uses its own prefix)
RATE = "1gbit"


@pytest.fixture(scope="session")
def cluster():
    reason = emulated.why_unavailable()
    if reason:
        pytest.skip(reason)
    try:
        yield emulated.start(2, RATE, NAME)
    finally:
        emulated.stop(NAME)

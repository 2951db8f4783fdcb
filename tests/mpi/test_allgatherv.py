"""The communicator's in-place Allgatherv: every rank ends with every block, for equal and
unequal blocks (done as an Allgather of padded blocks), float32 and float64."""

import numpy as np
import pytest

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(60)]


@pytest.mark.parametrize("total", [0, 1, 7, 12, 1001])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_rank_gets_every_block(comm, total, dtype):
    counts = [total // comm.size + (1 if r < total % comm.size else 0) for r in range(comm.size)]
    expected = np.arange(total, dtype=dtype) + 0.5
    buf = np.full(total, -1.0, dtype)
    lo = sum(counts[:comm.rank])
    buf[lo:lo + counts[comm.rank]] = expected[lo:lo + counts[comm.rank]]
    for _ in range(2):  # a second call reuses the scratch buffer
        assert comm.Allgatherv(buf, counts) is buf
        np.testing.assert_array_equal(buf, expected)


def test_blocks_of_different_sizes_in_any_order(comm):
    counts = [(3 * r + 2) % 5 for r in range(comm.size)]
    total = sum(counts)
    expected = np.arange(total, dtype=np.float32)
    buf = np.zeros(total, np.float32)
    lo = sum(counts[:comm.rank])
    buf[lo:lo + counts[comm.rank]] = expected[lo:lo + counts[comm.rank]]
    np.testing.assert_array_equal(comm.Allgatherv(buf, counts), expected)

"""A strategy is a partition, a gradient reducer and an updater (mpinn.parallel's parts)."""

import pytest

from mpinn.data.samplers import shard_range
from mpinn.parallel import Communicator, DataParallel, ZeroDataParallel
from mpinn.parallel.exact import ExactSums
from mpinn.parallel.partitions import Replicated, aligned_range
from mpinn.parallel.reducers import BucketedAllreduce, ReduceScatter
from mpinn.parallel.updaters import ReplicatedUpdate, ShardedUpdate


@pytest.mark.parametrize("n", [0, 1, 7, 100, 129])
@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_ranks_take_whole_units_in_order_and_single_samples_as_shard_range(n, size):
    for unit in (1, 4, 32):
        cuts = [aligned_range(n, unit, rank, size) for rank in range(size)]
        assert cuts[0][0] == 0 and cuts[-1][1] == n
        assert all(hi == cuts[r + 1][0] for r, (_, hi) in enumerate(cuts[:-1]))
        assert all(lo % unit == 0 or lo == n for lo, _ in cuts)
    assert [aligned_range(n, 1, r, size) for r in range(size)] == [shard_range(n, r, size) for r in range(size)]


def test_strategies_read_as_their_parts():
    comm = Communicator.local()
    plain, exact = DataParallel(comm), DataParallel(comm, deterministic=True, group_size=8)
    zero1, zero2 = ZeroDataParallel(comm, stage=1), ZeroDataParallel(comm, stage=2, deterministic=True)
    assert all(isinstance(s.partition, Replicated) for s in (plain, exact, zero1, zero2))
    assert type(plain.reducer) is BucketedAllreduce and isinstance(plain.updater, ReplicatedUpdate)
    assert isinstance(exact.reducer, ExactSums) and type(exact.reducer.carrier) is BucketedAllreduce
    assert exact.reducer.unit == 8 and plain.reducer.unit == 1
    assert type(zero1.reducer) is BucketedAllreduce and isinstance(zero1.updater, ShardedUpdate)
    assert type(zero2.reducer.carrier) is ReduceScatter and zero2.reducer.scatters


def test_deterministic_micro_batches_follow_the_group_size_and_must_agree_with_it():
    from mpinn.errors import ConfigError
    from mpinn.layout import GridShape
    from mpinn.parallel import ModelParallel

    ModelParallel(Communicator.local(), GridShape(), deterministic=True, group_size=4).check_batch(12)
    agreeing = ModelParallel(Communicator.local(), GridShape(), micro_batches=2, deterministic=True, group_size=4)
    agreeing.check_batch(8)  # 2 groups of 4: 2 micro-batches
    with pytest.raises(ConfigError, match=r"option micro_batches 2 disagrees with option deterministic: each "
                                          r"micro-batch is one group of option group_size 4 samples, so a "
                                          r"global batch of 12 gives 3 per data replica \(1 of them\); leave "
                                          r"option micro_batches unset or set it to 3"):
        agreeing.check_batch(12)
"""A run that cannot go on without a rank that died stops on every survivor alike.

Under ``on_failure="shrink"`` only data parallelism and ZeRO go on over the survivors
(:mod:`mpinn.train.recovery`). Pipeline, tensor and grid parallelism lose the layers or
slices the dead rank held, the asynchronous servers the shard a dead server held, and local
SGD a replica's steps since the last average; ZeRO loses a shard when its owner and the
buddy holding its copy both die (a RankLost with ``why``). There every survivor, wherever it
waits, stops with :class:`~mpinn.errors.RankLost` (the CLI's exit code 75), its message
naming the dead ranks and the checkpoint to continue from.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mpinn.errors import RankLost
from mpinn.parallel.fault_tolerance import abandon
from mpinn.train.checkpoint_folder import survey
from mpinn.train.checkpointing import Checkpointing

CANNOT_SHRINK = "cannot go on without them (of the strategies, data parallelism and ZeRO can)"


@contextmanager
def stop_on_rank_loss(strategy, checkpoint: Checkpointing | None) -> Iterator[None]:
    """Within the block, a RankLost that no recovery caught stops every survivor (see above)."""
    try:
        yield
    except RankLost as lost:
        dead = abandon(strategy.comm, lost)
        names = ", ".join(map(str, dead))
        why = lost.why or f"{type(strategy).__name__} {CANNOT_SHRINK}"
        raise RankLost(dead, f"rank(s) {names} of the job died and {why}; the surviving ranks "
                             f"stop. {_resume_hint(checkpoint)}") from None


def _resume_hint(checkpoint: Checkpointing | None) -> str:
    """Where the run continues from: the newest valid checkpoint, if any."""
    valid = survey(checkpoint.directory).valid if checkpoint else []
    if not valid:
        return ("No checkpoint was written: with a checkpoint directory (--checkpoint-dir) a "
                "run can continue after such a loss.")
    return f"Continue from the last checkpoint, {valid[0].path}, with --resume auto."

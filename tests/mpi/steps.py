"""Running a strategy for a number of steps, as ``fit`` would, without fit's logging around it."""

from itertools import count, islice

import numpy as np

from mpinn.data.samplers import global_batches, make_sampler


def train_steps(strategy, model, x, y, steps, batch_size, accumulation_steps=1, after_step=None):
    """``strategy`` set up on ``model``, then ``steps`` optimizer steps over the seeded global
    batches of (x, y) (epochs follow one another), then ``finish``; returns this rank's tally."""
    strategy.setup(model)
    tally = np.zeros(3)
    sampler = make_sampler("random", len(x), seed=model.seed)
    batches = (b for epoch in count() for b in global_batches(sampler.epoch_order(epoch), batch_size))
    for batch in islice(batches, steps):
        tally += strategy.train_step(model, x, y, batch, accumulation_steps)
        if after_step:
            after_step(model)
    strategy.finish(model)
    return tally

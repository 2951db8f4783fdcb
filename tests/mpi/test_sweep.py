"""Sweeps: every run in a group of ranks equals training that configuration alone.

Run under mpiexec -n 1, 2, 3, 4: groups of one rank fit any world size (configurations go
round-robin over the groups); groups of two need an even world size.
"""

import numpy as np
import pytest

from mpinn.data import load_dataset
from mpinn.parallel import Communicator
from mpinn.cli.sweep import run_sweep, train_configuration
from mpinn.cli.sweep_config import make_sweep_spec

pytestmark = [pytest.mark.mpi, pytest.mark.timeout(120)]

BASE = {"dataset": "digits", "hidden": [16], "epochs": 2, "batch_size": 64}


def alone(spec):
    """Each configuration trained by this rank alone: (row, test predictions) per config."""
    data = load_dataset(spec.base.dataset, seed=spec.base.seed)
    return [train_configuration(config, data, Communicator.local())
            for config in spec.configs]


def check_rows_match(result, references):
    assert sorted(row["config"] for row in result["results"]) == list(range(len(references)))
    for row in result["results"]:
        reference = references[row["config"]][0]
        for key in ("val_loss", "test_loss"):
            assert row[key] == pytest.approx(reference[key], rel=1e-4), key
        for key in ("val_accuracy", "test_accuracy"):
            assert row[key] == pytest.approx(reference[key], abs=2.5e-3), key
    accuracies = [row["val_accuracy"] for row in result["results"]]
    assert accuracies == sorted(accuracies, reverse=True)


def test_four_configurations_one_rank_each_equal_training_each_alone(comm):
    spec = make_sweep_spec(BASE, {"lr": [0.003, 0.03], "optimizer": ["adam", "rmsprop"]},
                           {"ensemble": True})
    result = run_sweep(spec, comm)
    if not comm.is_root:
        assert result is None
        return
    references = alone(spec)
    check_rows_match(result, references)
    assert {row["group"] for row in result["results"]} == set(range(min(comm.size, 4)))
    data = load_dataset("digits")
    mean = sum(outputs for _, outputs in references) / len(references)
    expected = np.mean(mean.argmax(axis=1) == data.y_test)
    assert result["ensemble"]["test_accuracy"] == pytest.approx(expected, abs=2.5e-3)


def test_two_configurations_in_data_parallel_groups_of_two(comm):
    if comm.size % 2:
        pytest.skip("groups of two ranks need an even world size")
    spec = make_sweep_spec(BASE, {"seed": [1, 2]}, {"ranks_per_config": 2})
    result = run_sweep(spec, comm)
    if comm.is_root:
        check_rows_match(result, alone(spec))
        assert all(row["ranks"] == 2 for row in result["results"])


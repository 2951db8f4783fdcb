"""Task parallelism: ``mpinn sweep`` trains a grid of configurations, one group of ranks each.

The world is split (``comm.split``) into groups of ``ranks_per_config`` consecutive ranks;
group g trains configurations g, g + G, g + 2G, ... one after the other, each with the
strategy its configuration names over the group's communicator (a group of several ranks
is data parallel by default). Every run holds out the same last ``validation_split`` of the
training set; rank 0 gathers one row per run and sorts them by validation accuracy (by
validation loss when there is no accuracy). In ensemble mode the runs' test predictions
are averaged (one Allreduce) and the ensemble is scored like a run.
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from mpinn.cli.commands import (build_model, check_memory, load_checked_dataset, lr_callbacks,
                                lr_schedule, make_strategy)
from mpinn.cli.sweep_config import SweepSpec
from mpinn.config import TrainConfig
from mpinn.data import Dataset
from mpinn.errors import ConfigError
from mpinn.io import atomic_write
from mpinn.outputs import check_output_file
from mpinn.parallel import Communicator, install_abort_hook
from mpinn.parallel.agreement import on_root
from mpinn.train import evaluate, fit


def group_count(world_size: int, ranks_per_config: int) -> int:
    """How many groups the world splits into; the group size must divide it."""
    if world_size % ranks_per_config:
        fits = [d for d in range(1, world_size + 1) if world_size % d == 0]
        raise ConfigError(f"ranks_per_config {ranks_per_config} does not divide {world_size} ranks; "
                          f"choose {', '.join(map(str, fits))}")
    return world_size // ranks_per_config


def train_configuration(config: TrainConfig, data: Dataset,
                        comm: Communicator) -> tuple[dict[str, Any], np.ndarray]:
    """Train one configuration over ``comm``; its scores and its test-set predictions."""
    model = build_model(config, data)
    strategy = make_strategy(config, comm)
    start = time.perf_counter()
    history = fit(model, data.x_train, data.y_train, epochs=config.epochs, batch_size=config.batch_size,
                  validation_split=config.validation_split, shuffle=config.sampler == "random",
                  drop_last=config.drop_last, accumulation_steps=config.accumulation_steps,
                  strategy=strategy, callbacks=lr_callbacks(config), verbose=0,
                  lr_schedule=lr_schedule(config, model.optimizer), watchdog=config.watchdog,
                  on_nonfinite=config.on_nonfinite)
    seconds = time.perf_counter() - start
    test = evaluate(model, data.x_test, data.y_test, strategy=strategy, watchdog=config.watchdog)
    last = {key: values[-1] for key, values in history.history.items()}
    row = {"val_loss": last["val_loss"], "val_accuracy": last.get("val_accuracy"),
           "test_loss": test[0] if isinstance(test, tuple) else test,
           "test_accuracy": test[1] if isinstance(test, tuple) else None,
           "seconds": seconds, "ranks": comm.size}
    return row, model.predict(data.x_test, batch_size=1024).astype(np.float64)


def run_sweep(spec: SweepSpec, comm: Communicator) -> dict[str, Any] | None:
    """Every run of ``spec`` over ``comm``; on rank 0 the sorted rows (and the ensemble's
    scores), None elsewhere."""
    groups = group_count(comm.size, spec.ranks_per_config)
    group = comm.rank // spec.ranks_per_config
    data = load_checked_dataset(spec.base.dataset, spec.base.seed, spec.base.num_classes)
    for config in spec.configs:
        check_memory(config, data, comm, spec.ranks_per_config)
    group_comm = comm.split(group)
    rows, predictions = [], None
    for index in range(group, len(spec.configs), groups):
        row, outputs = train_configuration(spec.configs[index], data, group_comm)
        rows.append({"config": index, **spec.label(index), **row, "group": group})
        predictions = outputs if predictions is None else predictions + outputs
    gathered = comm.gather_obj(rows if group_comm.is_root else [])
    ensemble = ensemble_scores(spec, data, comm, predictions if group_comm.is_root else None)
    if not comm.is_root:
        return None
    rows = sorted((row for part in gathered for row in part), key=_rank_key)
    return {"varied": spec.varied, "ranks": comm.size, "ranks_per_config": spec.ranks_per_config,
            "results": rows, "ensemble": ensemble}


def _rank_key(row: dict[str, Any]) -> tuple[float, float, int]:
    accuracy = row["val_accuracy"]
    return (-accuracy if accuracy is not None else 0.0, row["val_loss"], row["config"])


def ensemble_scores(spec: SweepSpec, data: Dataset, comm: Communicator,
                    predictions: np.ndarray | None) -> dict[str, Any] | None:
    """Average every run's test predictions (each group root adds its runs' sum) and score it."""
    if not spec.ensemble:
        return None
    width = data.n_classes or data.y_test.reshape(len(data.y_test), -1).shape[1]
    summed = np.zeros((len(data.x_test), width)) if predictions is None else predictions
    mean = comm.Allreduce(summed) / len(spec.configs)
    if data.n_classes:
        return {"members": len(spec.configs),
                "test_accuracy": float(np.mean(mean.argmax(axis=1) == data.y_test))}
    error = mean - data.y_test.reshape(mean.shape)
    return {"members": len(spec.configs), "test_mse": float(np.mean(error ** 2))}


def format_table(result: dict[str, Any]) -> str:
    """The rows as an aligned text table, best first."""
    keys = list(result["varied"])
    header = ["#", "config", *keys, "val_acc", "val_loss", "test_acc", "seconds"]
    lines = [header]
    for place, row in enumerate(result["results"], 1):
        cells = [place, row["config"], *(row[k] for k in keys), row["val_accuracy"], row["val_loss"],
                 row["test_accuracy"], row["seconds"]]
        lines.append([_cell(c) for c in cells])
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(str(c).rjust(w) for c, w in zip(line, widths)) for line in lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return "-" if value is None else str(value)


def write_json(path: str, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically (a temporary name, fsync, rename)."""
    atomic_write(path, lambda f: f.write((json.dumps(payload, indent=2) + "\n").encode()))


def sweep(spec: SweepSpec) -> int:
    """The ``mpinn sweep`` command: run, then rank 0 prints the table and writes the JSON."""
    comm = Communicator.world()
    if comm.size > 1:
        install_abort_hook(comm)
    group_count(comm.size, spec.ranks_per_config)
    on_root(comm, lambda: check_output_file(spec.output, "--output"))
    if comm.is_root:
        print(f"mpinn sweep: {len(spec.configs)} configuration(s) over {comm.size} rank(s), "
              f"{spec.ranks_per_config} rank(s) each", flush=True)
    result = run_sweep(spec, comm)
    if comm.is_root:
        print(format_table(result))
        if result["ensemble"]:
            scores = ", ".join(f"{k} {v:.4f}" for k, v in result["ensemble"].items() if k != "members")
            print(f"ensemble of {result['ensemble']['members']}: {scores}")
        write_json(spec.output, result)
        print(f"results written to {spec.output}", flush=True)
    return 0

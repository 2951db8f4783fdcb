"""What the train, evaluate, predict and export commands do, once their input is valid."""

from __future__ import annotations

import argparse
import dataclasses
import zipfile

import numpy as np

from mpinn import registry
from mpinn.config import TrainConfig
from mpinn.data import Dataset, load_dataset
from mpinn.data.validate import check_dataset, check_features, check_steps, check_xy
from mpinn.errors import ConfigError
from mpinn.export import check_export_path, export_model
from mpinn.memory import available_bytes, check_fits, parameter_count, rank_bytes
from mpinn.keras import Sequential, load_model
from mpinn.nn import Dense
from mpinn.optim import CosineAnnealingLR, Optimizer, Schedule, StepLR, WarmupCosine, get_optimizer
from mpinn.parallel import Communicator, DataParallel, Strategy, install_abort_hook
from mpinn.outputs import check_output_dir, check_output_file
from mpinn.parallel.agreement import agree, on_root
from mpinn.parallel.fault_tolerance import check_on_failure
from mpinn.train import default_callbacks
from mpinn.train import evaluate as evaluate_model
from mpinn.train import fit
from mpinn.train.callbacks import Callback
from mpinn.train.monitors import ReduceLROnPlateau
from mpinn.train.checkpointing import Checkpointing


def build_model(config: TrainConfig, data: Dataset) -> Sequential:
    """The MLP of the config: hidden layers, then softmax (classification) or linear output."""
    model = Sequential(seed=config.seed)
    width = data.x_train.shape[1]
    for units in config.hidden:
        model.add(Dense(units, input_dim=width, activation=config.activation))
        width = units
    classes = data.n_classes
    model.add(Dense(classes if classes else data.y_train.shape[1], input_dim=width,
                    activation="softmax" if classes else None))
    model.build()
    compile_for(model, data, get_optimizer(config.optimizer, **config.optimizer_options()))
    return model


def compile_for(model: Sequential, data: Dataset, optimizer="adam") -> None:
    if data.n_classes:
        model.compile(optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    else:
        model.compile(optimizer, loss="mse")


def make_strategy(config: TrainConfig, comm: Communicator) -> Strategy:
    """The strategy that ``config.strategy`` names, over ``comm``, with its options."""
    entry = registry.get(config.strategy)
    return entry.build(comm, entry.make_options(config))


def _world() -> Communicator:
    comm = Communicator.world()
    if comm.size > 1:
        install_abort_hook(comm)
    return comm


def _report(comm: Communicator, label: str, result) -> None:
    if comm.is_root:
        loss, accuracy = result if isinstance(result, tuple) else (result, None)
        extra = f"  {label} accuracy {accuracy:.4f}" if accuracy is not None else ""
        print(f"{label} loss {loss:.4f}{extra}", flush=True)


def load_checked_dataset(name: str, seed: int = 0, num_classes: int | None = None) -> Dataset:
    """The data set, every split checked (errors name ``x_test``, ``y_train``...)."""
    data = load_dataset(name, seed=seed, num_classes=num_classes)
    check_dataset(data)
    return data


def check_train_outputs(config: TrainConfig) -> None:
    """Every path a training run writes, checked before any work."""
    if config.save:
        check_output_file(config.save, "--save")
    if config.metrics:
        check_output_file(config.metrics, "--metrics")
    if config.checkpoint_dir:
        check_output_dir(config.checkpoint_dir, "--checkpoint-dir")


def check_memory(config: TrainConfig, data: Dataset, comm: Communicator,
                 ranks: int | None = None) -> None:
    """Refuse, before allocating, a model that the ranks of a node cannot hold together
    (``ranks``: how many share one model, by default all of ``comm``)."""
    output = data.n_classes or data.y_train.reshape(len(data.y_train), -1).shape[1]
    n_params = parameter_count([data.x_train.shape[1], *config.hidden, output])
    state = len(get_optimizer(config.optimizer, **config.optimizer_options()).state_names)
    per_rank = rank_bytes(n_params, np.dtype(np.float32).itemsize, state, config.strategy,
                          ranks or comm.size)
    node_ranks = comm.ranks_on_node()

    def check() -> tuple[None, None]:
        check_fits(n_params, per_rank, node_ranks, available_bytes(), config.strategy)
        return None, None
    agree(comm, check)


def train(config: TrainConfig, given: frozenset[str] | None = None) -> int:
    """Train as ``config`` says; ``given`` names the settings the user gave (None: all), which
    on resume replace the checkpoint's (see :mod:`mpinn.train.resume`)."""
    check_on_failure(config.on_failure, "--on-failure")
    comm = _world()
    on_root(comm, lambda: check_train_outputs(config))
    data = load_checked_dataset(config.dataset, config.seed, config.num_classes)
    check_steps(len(data.x_train), config.batch_size, config.drop_last)
    check_memory(config, data, comm)
    model = build_model(config, data)
    strategy = make_strategy(config, comm)
    if comm.is_root:
        print(f"mpinn: {data.name}, {len(data.x_train)} training samples, model "
              f"{model.net.input_dim}-{'-'.join(map(str, config.hidden))}-{model.net.output_dim} "
              f"({model.net.num_params} parameters), {config.strategy} parallel over {comm.size} "
              f"rank(s), global batch {config.batch_size}", flush=True)
    check_test_set(model, data)
    callbacks = default_callbacks(comm, config.verbose, config.metrics, config.verbose_ranks)
    callbacks += lr_callbacks(config)
    fit(model, data.x_train, data.y_train, epochs=config.epochs, batch_size=config.batch_size,
        validation_split=config.validation_split, shuffle=config.sampler == "random",
        drop_last=config.drop_last, accumulation_steps=config.accumulation_steps,
        strategy=strategy, callbacks=callbacks, checkpoint=checkpointing(config, given),
        verbose=config.verbose, log_every=config.log_every,
        lr_schedule=lr_schedule(config, model.optimizer), watchdog=config.watchdog,
        on_nonfinite=config.on_nonfinite, on_failure=config.on_failure)
    _report(comm, "test", evaluate_model(model, data.x_test, data.y_test, strategy=strategy,
                                         watchdog=config.watchdog))
    if config.save and comm.is_root:
        model.save(config.save)
        print(f"model written to {config.save}", flush=True)
    return 0


def check_test_set(model: Sequential, data: Dataset) -> None:
    """The test set is scored only at the end: check it before the first step, by its name."""
    check_features(data.x_test, model.net.input_dim, name="x_test")
    check_xy(data.x_test, data.y_test, n_classes=data.n_classes or None, name="x_test")


def checkpointing(config: TrainConfig, given: frozenset[str] | None = None) -> Checkpointing | None:
    """The checkpoint policy of the config (None without a checkpoint directory)."""
    if not config.checkpoint_dir:
        return None
    return Checkpointing(config.checkpoint_dir, every=config.checkpoint_every,
                         keep=config.keep_checkpoints, resume=config.resume,
                         run_config=dataclasses.asdict(config), given=given)


def lr_callbacks(config: TrainConfig) -> list[Callback]:
    """``--lr-schedule plateau``: Keras' ReduceLROnPlateau on the validation loss (the training
    loss without a validation split); it sets the model's optimizer, which every copy follows."""
    if config.lr_schedule != "plateau":
        return []
    monitor = "val_loss" if config.validation_split > 0 else "loss"
    return [ReduceLROnPlateau(monitor, factor=config.lr_factor, patience=config.lr_patience,
                              min_lr=config.lr_min)]


def lr_schedule(config: TrainConfig, optimizer: Optimizer) -> Schedule | None:
    """The schedule ``--lr-schedule`` names, counted per epoch or per step; the cosines span the
    whole run (fit tells them its length)."""
    per = config.lr_schedule_per
    if config.lr_schedule == "step":
        return StepLR(optimizer, config.lr_step_size, config.lr_factor, per=per)
    if config.lr_schedule == "cosine":
        return CosineAnnealingLR(optimizer, None, config.lr_min, per=per)
    if config.lr_schedule == "warmup-cosine":
        return WarmupCosine(optimizer, config.lr_warmup, None, config.lr_min, per=per)
    return None


def _load_model(path: str) -> Sequential:
    try:
        return load_model(path)
    except (OSError, EOFError, KeyError, IndexError, TypeError, ValueError, AttributeError,
            zipfile.BadZipFile) as exc:
        reason = str(exc) or type(exc).__name__
        raise ConfigError(f"cannot read model file {path}: {reason}; give a file written by "
                          f"mpinn train --save") from None


def _load(args: argparse.Namespace) -> tuple[Sequential, Dataset]:
    model = _load_model(args.model)
    data = load_checked_dataset(args.dataset)
    check_features(data.x_test, model.net.input_dim, "x_test")
    check_xy(data.x_test, data.y_test, model.net.output_dim if data.n_classes else None, "x_test", "y_test")
    compile_for(model, data)
    return model, data


def evaluate(args: argparse.Namespace) -> int:
    comm = _world()
    model, data = _load(args)
    _report(comm, "test", evaluate_model(model, data.x_test, data.y_test, strategy=DataParallel(comm)))
    return 0


def predict(args: argparse.Namespace) -> int:
    comm = _world()
    output = args.output if args.output.endswith(".npy") else args.output + ".npy"
    on_root(comm, lambda: check_output_file(output, "--output"))
    model, data = _load(args)
    x = _read_input(args.input, model.net.input_dim) if args.input else data.x_test
    outputs = model.predict(x, batch_size=1024)
    if comm.is_root:
        np.save(output, outputs)
        print(f"{len(outputs)} predictions written to {output}", flush=True)
    return 0


def _read_input(path: str, width: int) -> np.ndarray:
    """The ``--input`` array, checked: a readable .npy (no pickles) of the model's width."""
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ConfigError(f"cannot read --input {path}: {exc}; give a .npy array of shape "
                          f"(samples, {width})") from None
    if not isinstance(x, np.ndarray):
        raise ConfigError(f"--input {path} is an .npz archive; give a .npy array of shape "
                          f"(samples, {width})")
    check_features(x, width, f"--input {path}")
    return x


def export(args: argparse.Namespace) -> int:
    comm = _world()
    on_root(comm, lambda: check_export_path(args.output))
    model = _load_model(args.model)
    if comm.is_root:
        path = export_model(model.net, args.output)
        print(f"{len(model.params)} parameters written to {path}", flush=True)
    return 0

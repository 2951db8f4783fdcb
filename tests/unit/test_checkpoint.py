"""Checkpoints in one process: format, checksums, resume, preemption, export. (The folder's
housekeeping, pruning and the metrics log on resume: test_checkpoint_folder.py.)"""

import os
import signal

import numpy as np
import pytest

import mpinn.train
from mpinn import ConfigError, Preempted
from mpinn.data import make_classification
from mpinn.export import export_model, read_safetensors, torch_named_weights
from mpinn.keras import Sequential
from mpinn.nn import Dense
from mpinn.optim import Adam
from mpinn.parallel import Communicator, DataParallel
from mpinn.train import Callback
from mpinn.train.checkpoint import Progress, list_checkpoints, read_checkpoint, write_checkpoint
from mpinn.train.checkpointing import Checkpointing

X, Y = make_classification(n_samples=90, n_features=5, n_classes=3, seed=2)


def make_model(hidden=8):
    model = Sequential([Dense(hidden, input_dim=5, activation="relu"),
                        Dense(3, activation="softmax")], seed=1)
    model.compile(Adam(lr=0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def fit(model, epochs, checkpoint=None, callbacks=()):
    return mpinn.train.fit(model, X, Y, epochs=epochs, batch_size=16, verbose=0, checkpoint=checkpoint,
                           callbacks=list(callbacks), strategy=DataParallel(Communicator.local()))


def saved(tmp_path, step=7, sequence=1):
    model = make_model()
    fit(model, 1)
    progress = Progress(epoch=1, batch=2, step=step, epoch_tally=np.array([3.0, 2.0, 5.0]),
                        window_tally=np.array([1.5, 1.0, 2.0]), window_first=step - 1)
    return model, write_checkpoint(tmp_path, model.params, model.optimizer.state_dict(), progress,
                                   model.net.get_config(), {"lr": 0.01}, sequence)


def test_round_trip_keeps_arrays_progress_and_metadata(tmp_path):
    model, path = saved(tmp_path)
    assert path.name == "ckpt-00000007.npz"
    loaded = read_checkpoint(path)
    np.testing.assert_array_equal(loaded.params, model.params)
    state = model.optimizer.state_dict()
    for name, array in state["state"].items():
        np.testing.assert_array_equal(loaded.optimizer_state["state"][name], array)
    assert loaded.optimizer_state["steps"] == state["steps"] and loaded.optimizer_state["type"] == "Adam"
    assert (loaded.progress.epoch, loaded.progress.batch, loaded.progress.step) == (1, 2, 7)
    np.testing.assert_array_equal(loaded.progress.epoch_tally, [3, 2, 5])
    np.testing.assert_array_equal(loaded.progress.window_tally, [1.5, 1, 2])
    assert loaded.progress.window_first == 6 and loaded.sequence == 1
    assert loaded.meta["run"] == {"lr": 0.01} and loaded.meta["mpinn_version"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_a_flipped_byte_fails_the_checksum(tmp_path):
    _, path = saved(tmp_path)
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["params"][0] += 1
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match="'params' is missing or fails its checksum"):
        read_checkpoint(path)


def test_a_taken_name_is_never_overwritten(tmp_path):
    _, first = saved(tmp_path, step=9)
    before = first.read_bytes()
    _, second = saved(tmp_path, step=9, sequence=2)
    assert (first.name, second.name) == ("ckpt-00000009.npz", "ckpt-00000009-2.npz")
    assert first.read_bytes() == before and read_checkpoint(second).sequence == 2


def test_resume_continues_the_same_trajectory_and_keeps_the_newest(tmp_path):
    straight = make_model()
    fit(straight, 5)
    first = make_model()
    fit(first, 3, Checkpointing(tmp_path, every=4, keep=2))
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-00000018.npz", "ckpt-00000016.npz"]
    resumed = make_model()
    history = fit(resumed, 5, Checkpointing(tmp_path, every=4, keep=2, resume=True))
    assert history.epoch == [3, 4]
    np.testing.assert_array_equal(resumed.params, straight.params)


def files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_existing_checkpoints_without_resume_are_refused_and_left_alone(tmp_path):
    fit(make_model(), 1, Checkpointing(tmp_path))
    before = files(tmp_path)
    with pytest.raises(ConfigError, match="already holds ckpt-00000006.npz; continue from it with "
                                          "option resume auto, start over with option resume fresh"):
        fit(make_model(), 2, Checkpointing(tmp_path, resume=False))
    assert files(tmp_path) == before


def test_a_checkpoint_of_another_model_is_refused_and_left_alone(tmp_path):
    fit(make_model(hidden=16), 1, Checkpointing(tmp_path))
    before = files(tmp_path)
    with pytest.raises(ConfigError, match=r"different model \(5-16-3 float32\) than this run's "
                                          r"\(5-8-3 float32\)"):
        fit(make_model(hidden=8), 2, Checkpointing(tmp_path, resume=True))
    assert files(tmp_path) == before


class SignalAt(Callback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, record):
        if record["step"] == self.step:
            os.kill(os.getpid(), signal.SIGUSR1)


def test_a_preemption_signal_saves_then_raises_and_resume_finishes_identically(tmp_path):
    straight = make_model()
    fit(straight, 4)
    preempted = make_model()
    with pytest.raises(Preempted, match="preempted at step 10"):
        mpinn.train.fit(preempted, X, Y, epochs=4, batch_size=16, verbose=0, log_every=1,
                        callbacks=[SignalAt(10)], checkpoint=Checkpointing(tmp_path),
                        strategy=DataParallel(Communicator.local()))
    assert list_checkpoints(tmp_path)[0].name == "ckpt-00000010.npz"
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL  # handlers restored
    resumed = make_model()
    fit(resumed, 4, Checkpointing(tmp_path, resume=True))
    np.testing.assert_array_equal(resumed.params, straight.params)


def test_checkpointing_settings_are_checked():
    with pytest.raises(ConfigError, match="every must be an integer >= 0"):
        Checkpointing("d", every=-1)
    with pytest.raises(ConfigError, match="keep_checkpoints must be a positive integer"):
        Checkpointing("d", keep=0)
    with pytest.raises(ConfigError, match="unknown resume 'sometimes'; choose one of: never, auto, fresh"):
        Checkpointing("d", resume="sometimes")
    assert Checkpointing("d", resume=False).resume == "never"


def test_export_names_shapes_and_safetensors_round_trip(tmp_path):
    model = make_model()
    weights = torch_named_weights(model.net)
    assert list(weights) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert weights["0.weight"].shape == (8, 5)
    np.testing.assert_array_equal(weights["0.weight"], model.layers[0].W.T)
    back = read_safetensors(export_model(model.net, tmp_path / "w.safetensors"))
    assert sorted(back) == sorted(weights)
    for name, array in weights.items():
        np.testing.assert_array_equal(back[name], array)
        assert back[name].dtype == np.float32
    with np.load(export_model(model.net, tmp_path / "w.npz")) as npz:
        np.testing.assert_array_equal(npz["2.bias"], weights["2.bias"])
    with pytest.raises(ConfigError, match="must end in .safetensors or .npz"):
        export_model(model.net, tmp_path / "w.bin")


def test_exported_weights_load_into_torch_when_installed(tmp_path):
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    model = make_model()
    export_model(model.net, tmp_path / "w.safetensors")
    twin = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3),
                               torch.nn.Softmax(dim=1))
    twin.load_state_dict(safetensors_torch.load_file(tmp_path / "w.safetensors"))
    out = twin(torch.from_numpy(X[:6])).detach().numpy()
    np.testing.assert_allclose(out, model.predict(X[:6]), rtol=1e-5, atol=1e-6)

"""The corpus: bad input and faults through the real CLI at 1-4 ranks, every case checked alike.

A bad-input case must exit 2 with exactly one line starting ``mpinn:``, printed by rank 0 and
naming the problem, no traceback, and every file that existed before intact byte for byte.
A fault case (divergence) must exit with its documented code and message and keep what was
written before. The cases of one rank count run in one MPI job (``corpus_worker.py``), one
after the other, so a hundred cases cost a few launches.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from launch import BIN, ENV

from mpinn.nn import Dense, Sequential

WORKER = Path(__file__).with_name("corpus_worker.py")
PROFILE = Path(__file__).parents[2] / "bench" / "profiles" / "cluster_100g.json"
HUGE = str(10**26)


def dataset(path, **changes):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.random((40, 6)).astype(np.float32), "y_train": np.arange(40) % 3,
              "x_test": rng.random((12, 6)).astype(np.float32), "y_test": np.arange(12) % 3}
    arrays.update(changes)
    np.savez(path, **arrays)


def with_value(array, row, value):
    array = np.array(array, dtype=np.result_type(array, type(value)))
    array[row] = value
    return array


def make_fixtures(folder: Path) -> None:
    """Every file the cases refer to, in ``folder`` (the cases' working folder)."""
    folder.mkdir()
    (folder / "afile").write_text("a file, not a folder\n")
    (folder / "README.md").write_text("# notes\n")
    rng = np.random.default_rng(1)
    x, y = rng.random((40, 6)).astype(np.float32), np.arange(40) % 3
    dataset(folder / "good.npz")
    bad = {
        "empty": {"x_train": np.zeros((0, 6), np.float32), "y_train": np.zeros(0, np.int64)},
        "no_features": {"x_train": np.zeros((40, 0), np.float32)},
        "scalar_x": {"x_train": np.float32(3.0)},
        "flat_x": {"x_train": x[:, 0]},
        "complex_x": {"x_train": x + 1j},
        "text_x": {"x_train": np.array([["a"] * 6] * 40)},
        "label_2_31": {"y_train": with_value(y, 3, 2**31)},
        "label_999": {"y_train": with_value(y, 5, 999)},
        "one_hot": {"y_train": np.eye(3)[y]},
        "inf_label": {"y_train": with_value(y.astype(float), 2, np.inf)},
        "nan_label": {"y_train": with_value(y.astype(float), 4, np.nan)},
        "half_label": {"y_train": with_value(y.astype(float), 1, 1.5)},
        "negative_label": {"y_train": with_value(y, 7, -1)},
        "nan_x_test": {"x_test": with_value(rng.random((12, 6)), (2, 1), np.nan)},
        "inf_x_train": {"x_train": with_value(x, (9, 0), np.inf)},
        "wide_x_test": {"x_test": rng.random((12, 7))},
        "short_y_train": {"y_train": y[:30]},
        "long_y_test": {"y_test": np.arange(20) % 3},
        "text_labels": {"y_train": np.array(["cat"] * 40)},
    }
    for name, changes in bad.items():
        dataset(folder / f"{name}.npz", **changes)
    np.savez(folder / "missing_keys.npz", x_train=x, y_train=y)
    good = (folder / "good.npz").read_bytes()
    (folder / "truncated.npz").write_bytes(good[:300])
    (folder / "garbage.npz").write_bytes(b"\x00garbage" * 40)
    np.savez(folder / "pickled.npz", x_train=np.array([{}] * 40, dtype=object), y_train=y,
             x_test=x, y_test=y)
    make_models(folder)
    make_inputs(folder, x)
    make_configs(folder)
    (folder / "ro").mkdir()


def make_models(folder: Path) -> None:
    model = Sequential([Dense(8, input_dim=6, activation="relu"), Dense(3, activation="softmax")])
    model.save(folder / "model.npz")
    raw = (folder / "model.npz").read_bytes()
    (folder / "model_truncated.npz").write_bytes(raw[: len(raw) // 2])
    (folder / "model_garbage.npz").write_bytes(b"not a model at all" * 10)
    np.savez(folder / "model_config_list.npz", params=model.params, config=np.array("[]"))
    np.savez(folder / "model_config_bad_json.npz", params=model.params, config=np.array("{oops"))
    np.savez(folder / "model_no_config.npz", params=model.params)
    config = json.dumps(model.get_config())
    np.savez(folder / "model_short_params.npz", params=model.params[:5], config=np.array(config))
    wide = json.loads(config)
    wide["layers"][0]["type"] = "Conv2D"
    np.savez(folder / "model_unknown_layer.npz", params=model.params, config=np.array(json.dumps(wide)))


def make_inputs(folder: Path, x: np.ndarray) -> None:
    np.save(folder / "input_wide.npy", np.ones((5, 9), np.float32))
    np.save(folder / "input_flat.npy", np.ones(6, np.float32))
    np.save(folder / "input_nan.npy", with_value(np.ones((5, 6)), (1, 1), np.nan))
    np.save(folder / "input_pickled.npy", np.array([{}, {}], dtype=object), allow_pickle=True)
    np.save(folder / "input_complex.npy", np.ones((5, 6)) + 1j)
    np.savez(folder / "input_archive.npz", x=x)
    (folder / "input_text.npy").write_text("1,2,3\n")


def make_configs(folder: Path) -> None:
    configs = {
        "unknown_key": "learning_rate = 0.1\n",
        "half_hidden": "hidden = [1.5]\n",
        "bool_hidden": "hidden = [true]\n",
        "inf_bucket": "bucket_mb = inf\n",
        "nan_lr": "lr = nan\n",
        "negative_seed": "seed = -1\n",
        "zero_stages": "strategy = \"pipeline\"\nstages = 0\n",
        "string_epochs": "epochs = \"ten\"\n",
        "float_epochs": "epochs = 2.5\n",
        "broken": "epochs = = 3\n",
        "sweep_unknown_table": "[train]\nepochs = 1\n[grid]\nlr = [0.1]\n",
    }
    for name, text in configs.items():
        (folder / f"{name}.toml").write_text(text)
    (folder / "binary.toml").write_bytes(bytes(range(256)) * 4)


def train(*args):
    return ["train", "--dataset", "good.npz", "--epochs", "1", *args]


BAD_INPUT = [
    # (argv, the words that name the problem)
    # 1. outputs checked before any work
    (train("--save", "afile/model.npz"), "cannot write --save afile/model.npz: afile is a file"),
    (train("--save", "README.md/model.npz"), "README.md is a file, not a folder"),
    (train("--save", "good.npz/deeper/model.npz"), "good.npz is a file, not a folder"),
    (train("--save", "."), "--save . is a folder"),
    (train("--metrics", "afile/metrics.jsonl"), "cannot write --metrics afile/metrics.jsonl"),
    (train("--metrics", "README.md/m.jsonl"), "README.md is a file, not a folder"),
    (train("--checkpoint-dir", "afile"), "--checkpoint-dir afile is a file, not a folder"),
    (train("--checkpoint-dir", "afile/ck"), "cannot write --checkpoint-dir afile/ck"),
    (train("--save", "ro/model.npz"), "folder ro is not writable"),
    (train("--metrics", "ro/sub/m.jsonl"), "cannot write --metrics ro/sub/m.jsonl"),
    (train("--checkpoint-dir", "ro/ck"), "cannot write --checkpoint-dir ro/ck"),
    (["predict", "--model", "model.npz", "--dataset", "good.npz", "--output", "afile/pred"],
     "cannot write --output afile/pred.npy"),
    (["predict", "--model", "model.npz", "--dataset", "good.npz", "--output", "ro/pred"],
     "folder ro is not writable"),
    (["export", "--model", "model.npz", "--output", "afile/w.safetensors"], "afile is a file"),
    (["export", "--model", "model.npz", "--output", "ro/w.safetensors"], "folder ro is not writable"),
    (["export", "--model", "model.npz", "--output", "w.pt"], "must end in .safetensors or .npz"),
    (["sweep", "--dataset", "good.npz", "--epochs", "1", "--output", "afile/s.json"],
     "cannot write --output afile/s.json"),
    (["sweep", "--dataset", "good.npz", "--epochs", "1", "--output", "ro/s.json"], "not writable"),
    (["calibrate", "--quick", "--output", "afile/p.json"], "cannot write --output afile/p.json"),
    (["calibrate", "--quick", "--output", "ro/p.json"], "folder ro is not writable"),
    (["plan", "--profile", str(PROFILE), "--json", "afile/plan.json"], "cannot write --json"),
    (["plan", "--profile", str(PROFILE), "--plot", "ro/plan.png"], "cannot write --plot"),
    # 3. data: shapes, kinds, values, each naming its split
    (train("--dataset", "empty.npz"), "x_train is empty"),
    (train("--dataset", "no_features.npz"), "x_train is empty"),
    (train("--dataset", "scalar_x.npz"), "x_train must hold one row of features per sample"),
    (train("--dataset", "flat_x.npz"), "x_train must hold one row of features per sample"),
    (train("--dataset", "complex_x.npz"), "the imaginary part would be dropped"),
    (train("--dataset", "text_x.npz"), "x_train must be real numbers"),
    (train("--dataset", "label_2_31.npz"), "largest 2147483648"),
    (train("--dataset", "label_999.npz"), "the 4 classes present are labelled 0, 1, 2, 999"),
    (train("--dataset", "label_999.npz", "--num-classes", "500"), "label 999 is not below num_classes 500; give --num-classes 1000 or more"),
    (train("--dataset", "one_hot.npz"), "y_train must be 1-D class indices, got shape (40, 3)"),
    (train("--dataset", "inf_label.npz"), "y_train must hold whole numbers (class indices): found inf"),
    (train("--dataset", "nan_label.npz"), "found nan at row 4"),
    (train("--dataset", "half_label.npz"), "found 1.5 at row 1"),
    (train("--dataset", "negative_label.npz"), "y_train must hold class numbers >= 0: found -1 at row 7"),
    (train("--dataset", "nan_x_test.npz"), "x_test contains 1 NaN and 0 Inf values (first in row 2)"),
    (train("--dataset", "inf_x_train.npz"), "x_train contains 0 NaN and 1 Inf values (first in row 9)"),
    (train("--dataset", "wide_x_test.npz"), "x_test has 7 features but x_train has 6"),
    (train("--dataset", "short_y_train.npz"), "x_train has 40 samples but y_train has 30"),
    (train("--dataset", "long_y_test.npz"), "x_test has 12 samples but y_test has 20"),
    (train("--dataset", "text_labels.npz"), "y_train must hold whole class numbers"),
    (train("--dataset", "missing_keys.npz"), "lacks arrays x_test, y_test"),
    (train("--dataset", "truncated.npz"), "cannot read truncated.npz"),
    (train("--dataset", "garbage.npz"), "cannot read garbage.npz"),
    (train("--dataset", "pickled.npz"), "holds Python objects"),
    (train("--dataset", "nosuch.npz"), "unknown dataset 'nosuch.npz'"),
    (train("--dataset", "regression", "--num-classes", "3"), "num_classes applies to classification"),
    (train("--drop-last", "--batch-size", "5000"), "batch_size 5000 is larger than the 40 training"),
    # memory: refused before allocating, naming both figures
    (train("--hidden", "100000000"), "parameters: about"),
    (train("--hidden", "100000000", "--strategy", "zero"), "available; use smaller --hidden"),
    (train("--hidden", "30000,30000,30000"), "GiB available"),
    # 2. hyperparameters: finite and in range
    (train("--lr", "inf"), "lr must be a positive finite number, got inf"),
    (train("--lr", "nan"), "lr must be a positive finite number, got nan"),
    (train("--lr", "0"), "lr must be a positive finite number, got 0.0"),
    (train("--lr", "-0.1"), "lr must be a positive finite number"),
    (train("--weight-decay", "nan"), "--weight-decay must be a finite number >= 0, got nan"),
    (train("--weight-decay", "-1"), "--weight-decay must be a finite number >= 0"),
    (train("--weight-decay", "inf"), "--weight-decay must be a finite number >= 0, got inf"),
    (train("--optimizer", "sgd", "--momentum", "-0.5"), "momentum must be a finite number >= 0"),
    (train("--optimizer", "sgd", "--momentum", "inf"), "momentum must be a finite number >= 0"),
    (train("--bucket-mb", "inf"), "--bucket-mb must be a positive finite number, got inf"),
    (train("--bucket-mb", "0"), "--bucket-mb must be a positive finite number"),
    (train("--seed", "-1"), "seed must be an integer in [0, 2**32), got -1"),
    (train("--seed", HUGE), f"seed must be an integer in [0, 2**32), got {HUGE}"),
    (train("--seed", "1.5"), "argument --seed: invalid int value: '1.5'"),
    (train("--strategy", "pipeline", "--stages", "0"), "stages must be a positive integer, got 0"),
    (train("--micro-batches", "0"), "--micro-batches must be a positive integer, got 0"),
    (train("--num-classes", "0"), "--num-classes must be a positive integer, got 0"),
    (train("--hidden", "1.5"), "--hidden must be a list of integers, got '1.5'"),
    (train("--hidden", "0"), "hidden layer sizes must be positive integers"),
    (train("--hidden", "-4"), "hidden layer sizes must be positive integers"),
    (train("--epochs", "0"), "epochs must be a positive integer"),
    (train("--batch-size", "-1"), "--batch-size must be a positive integer, got -1"),
    (train("--threads", "0"), "threads must be a positive integer"),
    (train("--watchdog", "-1"), "watchdog must be a number of seconds >= 0"),
    (train("--watchdog", "nan"), "watchdog must be a number of seconds >= 0"),
    (train("--on-nonfinite", "ignore"), "unknown --on-nonfinite 'ignore'; choose one of: stop, skip"),
    (train("--on-nonfinite", "skip", "--strategy", "async"), "--on-nonfinite skip needs every rank"),
    (train("--group-size", "0"), "--group-size must be a positive integer, got 0"),
    (train("--zero-stage", "3"), "--zero-stage must be 1 or 2, got 3"),
    (train("--staleness", "-1"), "staleness must be >= 0"),
    (train("--keep-checkpoints", "0"), "--keep-checkpoints >= 1"),
    (train("--resume", "sometimes"), "argument --resume: invalid choice: 'sometimes'"),
    (train("--strategy", "warp"), "argument --strategy: invalid choice: 'warp'"),
    (train("--sampler", "sorted"), "argument --sampler: invalid choice: 'sorted'"),
    # configuration files
    (["train", "--dataset", "good.npz", "--config", "."], "config file . is a folder"),
    (["train", "--dataset", "good.npz", "--config", "binary.toml"], "config file binary.toml is not text"),
    (["train", "--dataset", "good.npz", "--config", "nosuch.toml"], "config file nosuch.toml does not exist"),
    (["train", "--dataset", "good.npz", "--config", "broken.toml"], "config file broken.toml is not valid TOML"),
    (["train", "--dataset", "good.npz", "--config", "unknown_key.toml"], "unknown config key 'learning_rate'; valid keys"),
    (["train", "--dataset", "good.npz", "--config", "half_hidden.toml"], "'hidden' must be a list of integers, got [1.5]"),
    (["train", "--dataset", "good.npz", "--config", "bool_hidden.toml"], "'hidden' must be a list of integers, got [True]"),
    (["train", "--dataset", "good.npz", "--config", "inf_bucket.toml"], "bucket_mb must be a positive finite number, got inf"),
    (["train", "--dataset", "good.npz", "--config", "nan_lr.toml"], "lr must be a positive finite number, got nan"),
    (["train", "--dataset", "good.npz", "--config", "negative_seed.toml"], "seed must be an integer in [0, 2**32), got -1"),
    (["train", "--dataset", "good.npz", "--config", "zero_stages.toml"], "stages must be a positive integer, got 0"),
    (["train", "--dataset", "good.npz", "--config", "string_epochs.toml"], "'epochs' must be an integer, got 'ten'"),
    (["train", "--dataset", "good.npz", "--config", "float_epochs.toml"], "'epochs' must be an integer, got 2.5"),
    (["sweep", "--config", "sweep_unknown_table.toml"], "unknown table or key 'grid'"),
    (["sweep", "--dataset", "good.npz", "--vary", "lr=inf"], "lr must be a positive finite number"),
    (["sweep", "--dataset", "good.npz", "--vary", "seed=-3"], "seed must be an integer in [0, 2**32)"),
    # model files
    (["evaluate", "--model", "nosuch.npz"], "cannot read model file nosuch.npz"),
    (["evaluate", "--model", "model_truncated.npz", "--dataset", "good.npz"], "cannot read model file model_truncated.npz"),
    (["evaluate", "--model", "model_garbage.npz", "--dataset", "good.npz"], "cannot read model file model_garbage.npz"),
    (["evaluate", "--model", "model_config_list.npz", "--dataset", "good.npz"], "cannot read model file model_config_list.npz"),
    (["evaluate", "--model", "model_config_bad_json.npz", "--dataset", "good.npz"], "cannot read model file"),
    (["evaluate", "--model", "model_no_config.npz", "--dataset", "good.npz"], "cannot read model file model_no_config.npz"),
    (["evaluate", "--model", "model_short_params.npz", "--dataset", "good.npz"], "5 parameters stored"),
    (["evaluate", "--model", "model_unknown_layer.npz", "--dataset", "good.npz"], "cannot read model file"),
    (["evaluate", "--model", ".", "--dataset", "good.npz"], "cannot read model file ."),
    (["evaluate", "--model", "model.npz"], "x_test has 64 features but the model expects 6"),
    (["evaluate", "--model", "model.npz", "--dataset", "wide_x_test.npz"], "x_test has 7 features"),
    (["export", "--model", "model_garbage.npz", "--output", "w.safetensors"], "cannot read model file"),
    (["export", "--model", "model_config_list.npz", "--output", "w.npz"], "cannot read model file"),
    # predict --input
    (["predict", "--model", "model.npz", "--dataset", "good.npz", "--input", "nosuch.npy",
      "--output", "p"], "cannot read --input nosuch.npy"),
    (["predict", "--model", "model.npz", "--dataset", "good.npz", "--input", "input_pickled.npy",
      "--output", "p"], "cannot read --input input_pickled.npy"),
    (["predict", "--model", "model.npz", "--dataset", "good.npz", "--input", "input_wide.npy",
      "--output", "p"], "--input input_wide.npy has 9 features but the model expects 6"),
    (["predict", "--model", "model.npz", "--dataset", "good.npz", "--input", "input_flat.npy",
      "--output", "p"], "--input input_flat.npy must be 2-D"),
    (["predict", "--model", "model.npz", "--dataset", "good.npz", "--input", "input_nan.npy",
      "--output", "p"], "--input input_nan.npy contains 1 NaN"),
    (["predict", "--model", "model.npz", "--dataset", "good.npz", "--input", "input_complex.npy",
      "--output", "p"], "imaginary part would be dropped"),
    (["predict", "--model", "model.npz", "--dataset", "good.npz", "--input", "input_archive.npz",
      "--output", "p"], "is an .npz archive"),
    (["predict", "--model", "model.npz", "--dataset", "good.npz", "--input", "input_text.npy",
      "--output", "p"], "cannot read --input input_text.npy"),
    (["predict", "--model", "model.npz", "--dataset", "good.npz", "--input", ".", "--output", "p"],
     "cannot read --input ."),
    # planning
    (["plan", "--profile", str(PROFILE), "--ranks", "1,2,...,1099511627776"], "--ranks goes up to 1,048,576"),
    (["plan", "--profile", str(PROFILE), "--ranks", "1,2,3,...,100000"], "more than 64 rank counts"),
    (["plan", "--profile", str(PROFILE), "--ranks", "0,1"], "--ranks must list positive integers"),
    (["plan", "--profile", str(PROFILE), "--bucket-mb", "inf"], "--bucket-mb must be a positive finite"),
    (["plan", "--profile", str(PROFILE), "--batch-size", "0"], "--batch-size must be a positive integer, got 0"),
    (["plan", "--profile", "nosuch.json"], "nosuch.json"),
    (["plan", "--profile", str(PROFILE), "--memory-per-rank", "lots"], "--memory-per-rank must be a size"),
    # the command line itself
    (["train", "--learning-rate", "0.1"], "unrecognized arguments"),
    (["train", "--batch-size", "abc"], "argument --batch-size: invalid int value: 'abc'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
]

RANKS_OF = {1: slice(0, None, 4), 2: slice(1, None, 4), 3: slice(2, None, 4), 4: slice(3, None, 4)}


def cases_at(ranks):
    """Every case runs once, at one of 1-4 ranks (round robin), so each count gets a quarter."""
    return BAD_INPUT[RANKS_OF[ranks]]


def run_corpus(folder: Path, cases, ranks: int, read_only: bool = True):
    """Run ``cases`` in one job of ``ranks`` ranks in ``folder``; the per-rank results."""
    case_file, result_file = folder.parent / f"cases-{ranks}.json", folder.parent / f"results-{ranks}.json"
    case_file.write_text(json.dumps([argv for argv, *_ in cases]))
    command = [str(BIN / "mpiexec"), "-n", str(ranks), sys.executable, str(WORKER), str(case_file),
               str(result_file)]
    if read_only:  # a read-only mount at ro/, in a private mount namespace that ends with the job
        command = ["unshare", "-m", "sh", "-c",
                   f'mount -t tmpfs -o ro tmpfs "{folder / "ro"}" && exec "$0" "$@"', *command]
    run = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=240, env=ENV)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(result_file.read_text())


@pytest.fixture(scope="module")
def corpus_folder(tmp_path_factory):
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) for a read-only mount in a private mount namespace")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a private mount namespace here: {probe.stderr.decode().strip()}")
    folder = tmp_path_factory.mktemp("corpus") / "cwd"
    make_fixtures(folder)
    return folder


def mpinn_lines(text):
    return [line for line in text.splitlines() if line.startswith("mpinn:")]


@pytest.mark.parametrize("ranks", [1, 2, 3, 4])
def test_bad_input_exits_2_with_one_message_from_rank_0(corpus_folder, ranks):
    cases = cases_at(ranks)
    per_rank = run_corpus(corpus_folder, cases, ranks)
    failures = []
    for index, (argv, words) in enumerate(cases):
        root, others = per_rank[0][index], [results[index] for results in per_rank[1:]]
        problems = [
            root["code"] != 2 and f"exit {root['code']}",
            len(mpinn_lines(root["stderr"] + root["stdout"])) != 1 and "not exactly one mpinn: line",
            words not in "".join(mpinn_lines(root["stderr"])) and f"message lacks {words!r}",
            any(mpinn_lines(r["stderr"] + r["stdout"]) for r in others) and "another rank spoke",
            any("Traceback" in r["stderr"] for r in per_rank_results(per_rank, index)) and "traceback",
            any(r["code"] != 2 for r in others) and "ranks exit differently",
            root["changed"] and f"changed {root['changed']}",
        ]
        problems = [p for p in problems if p]
        if problems:
            failures.append(f"{' '.join(argv)}: {'; '.join(problems)}\n    {root['stderr'][-600:]}")
    assert not failures, f"{len(failures)} of {len(cases)} cases failed:\n" + "\n".join(failures)


def per_rank_results(per_rank, index):
    return [results[index] for results in per_rank]


def test_the_corpus_has_over_a_hundred_cases_spread_over_1_to_4_ranks():
    assert len(BAD_INPUT) >= 100
    assert sorted(argv_words for ranks in RANKS_OF for argv_words in map(str, cases_at(ranks))) == \
        sorted(map(str, BAD_INPUT))


FAULTS = [
    # (argv, exit code, words of the message); each writes checkpoints and metrics first
    (train("--lr", "1e30", "--epochs", "3", "--batch-size", "8", "--checkpoint-dir", "ck-stop",
           "--checkpoint-every", "1", "--metrics", "ck-stop/m.jsonl", "--save", "ck-stop/model.npz"),
     3, "training diverged at step 2: the loss or a gradient is NaN or infinite"),
    (train("--lr", "1e30", "--epochs", "3", "--batch-size", "8", "--checkpoint-dir", "ck-skip",
           "--checkpoint-every", "1", "--on-nonfinite", "skip", "--save", "ck-skip/model.npz"),
     3, "10 steps in a row up to step 11"),
    (train("--lr", "1e30", "--deterministic", "--group-size", "4", "--batch-size", "8",
           "--checkpoint-dir", "ck-exact", "--checkpoint-every", "1"),
     3, "training diverged at step 2"),
    (train("--lr", "1e30", "--strategy", "zero", "--batch-size", "8", "--checkpoint-dir", "ck-zero",
           "--checkpoint-every", "1"), 3, "training diverged at step 2"),
    (train("--lr", "1e30", "--strategy", "local-sgd", "--batch-size", "8"), 3, "training diverged at step 2"),
]


def checkpoints_in(folder: Path):
    return sorted(folder.glob("ckpt-*.npz"))


@pytest.mark.parametrize("ranks", [2, 3])
def test_divergence_exits_3_naming_the_step_and_writes_nothing_non_finite(corpus_folder, ranks):
    folder = corpus_folder.parent / f"faults-{ranks}"
    shutil.copytree(corpus_folder, folder)
    per_rank = run_corpus(folder, FAULTS, ranks, read_only=False)
    for index, (argv, code, words) in enumerate(FAULTS):
        root = per_rank[0][index]
        assert root["code"] == code and words in root["stderr"], (argv, root)
        assert len(mpinn_lines(root["stderr"])) == 1 and "Traceback" not in root["stderr"], root
        assert all(r[index]["code"] == code and not mpinn_lines(r[index]["stderr"]) for r in per_rank[1:])
        assert not root["changed"]
    for name in ("ck-stop", "ck-skip", "ck-exact", "ck-zero"):
        saved = checkpoints_in(folder / name)
        assert saved, name  # the good steps' checkpoints are kept ...
        for path in saved:  # ... and hold finite parameters only
            with np.load(path) as checkpoint:
                assert np.isfinite(checkpoint["params"]).all(), path
    assert not (folder / "ck-stop" / "model.npz").exists() and not (folder / "ck-skip" / "model.npz").exists()
    records = [json.loads(line) for line in (folder / "ck-stop" / "m.jsonl").read_text().splitlines()]
    assert records == [] or all(np.isfinite(r["loss"]) for r in records)


def test_predict_says_where_it_wrote_and_creates_missing_folders(corpus_folder):
    folder = corpus_folder.parent / "outputs"
    shutil.copytree(corpus_folder, folder)
    cases = [(["predict", "--model", "model.npz", "--dataset", "good.npz", "--output", "pred"],),
             (["predict", "--model", "model.npz", "--dataset", "good.npz", "--output", "new/sub/p.npy"],),
             (["export", "--model", "model.npz", "--output", "more/w.npz"],)]
    root = run_corpus(folder, cases, 2, read_only=False)[0]
    assert [r["code"] for r in root] == [0, 0, 0], root
    assert "12 predictions written to pred.npy" in root[0]["stdout"]
    assert np.load(folder / "pred.npy").shape == (12, 3) and not (folder / "pred").exists()
    assert np.load(folder / "new" / "sub" / "p.npy").shape == (12, 3)
    assert (folder / "more" / "w.npz").is_file()


def test_fit_runs_under_the_default_watchdog_under_a_launcher(corpus_folder, tmp_path):
    script = tmp_path / "watched.py"
    script.write_text(
        "from mpinn.data import make_classification\n"
        "from mpinn.keras import Sequential\n"
        "from mpinn.nn import Dense\n"
        "from mpinn.parallel import DataParallel, Communicator\n"
        "from mpinn.train import Callback\n"
        "import os, pathlib\n"
        "RUN = pathlib.Path(os.environ['MPINN_RUN_DIR'])\n"
        "comm = Communicator.world()\n"
        "class Look(Callback):\n"
        "    def on_epoch_end(self, epoch, values):\n"
        "        assert comm.watchdog.timeout == 600 and comm.shared.heartbeat.path.parent == RUN\n"
        "        print('watched', flush=True)\n"
        "x, y = make_classification(n_samples=40, n_features=3, seed=0)\n"
        "model = Sequential([Dense(2, input_dim=3, activation='softmax')])\n"
        "model.compile('sgd', loss='sparse_categorical_crossentropy')\n"
        "model.fit(x, y, epochs=1, verbose=0, callbacks=[Look()], strategy=DataParallel(comm))\n"
        "assert comm.watchdog is None and comm.shared.heartbeat is None  # off after fit\n")
    env = {**ENV, "MPINN_RUN_DIR": str(tmp_path / "run")}
    run = subprocess.run([str(BIN / "mpiexec"), "-n", "2", sys.executable, str(script)],
                         capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("watched") == 2, run.stdout
    assert not list((tmp_path / "run").glob(".mpinn-heartbeat-*"))  # each rank removed its record

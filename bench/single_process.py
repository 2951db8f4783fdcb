"""Single-process training speed: mpinn against PyTorch (one thread each) and the GEMM ceiling.

    .venv/bin/python bench/single_process.py [--rounds 5]

Runs mpinn and PyTorch in alternating rounds in one process (the machine is shared and
noisy), and reports median samples/s, the ratio, and mpinn's FLOP/s (6 x params x batch per
step) against the machine's measured single-core float32 GEMM FLOP/s.
"""

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import has_torch, markdown_table, median_seconds, write_json  # noqa: E402  (sets BLAS threads)

import numpy as np  # noqa: E402

from mpinn.nn import Dense, Sequential  # noqa: E402
from mpinn.optim import SGD, Adam  # noqa: E402
from mpinn.parallel import Communicator, DataParallel  # noqa: E402

CASES = [  # (name, layer widths, batch, optimizer, steps per round)
    ("784-32-10", (784, 32, 10), 128, "adam", 400),
    ("784-256-256-10", (784, 256, 256, 10), 256, "adam", 60),
    ("784-1024-1024-1024-10", (784, 1024, 1024, 1024, 10), 512, "sgd", 8),
]


def data(widths, batch, steps):
    rng = np.random.default_rng(0)
    x = rng.random((batch * 4, widths[0]), dtype=np.float32)
    y = rng.integers(0, widths[-1], size=batch * 4)
    return x, y


def mpinn_step(widths, batch, opt):
    model = Sequential(seed=0)
    for i, units in enumerate(widths[1:]):
        last = i == len(widths) - 2
        model.add(Dense(units, input_dim=widths[i], activation="softmax" if last else "relu"))
    model.compile(Adam(lr=1e-3) if opt == "adam" else SGD(lr=0.01),
                  loss="sparse_categorical_crossentropy")
    strategy = DataParallel(Communicator.local())
    strategy.setup(model)
    x, y = data(widths, batch, 4)
    batches = [np.arange(k * batch, (k + 1) * batch) for k in range(4)]
    state = {"k": 0}

    def step():
        state["k"] = (state["k"] + 1) % 4
        strategy.train_step(model, x, y, batches[state["k"]])
    return step, model.num_params


def torch_step(widths, batch, opt):
    import torch

    torch.set_num_threads(1)
    layers = []
    for i, units in enumerate(widths[1:]):
        layers.append(torch.nn.Linear(widths[i], units))
        if i < len(widths) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    optimizer = (torch.optim.Adam(model.parameters(), lr=1e-3) if opt == "adam"
                 else torch.optim.SGD(model.parameters(), lr=0.01))
    loss_fn = torch.nn.CrossEntropyLoss()
    x, y = data(widths, batch, 4)
    xs = [torch.from_numpy(x[k * batch:(k + 1) * batch]) for k in range(4)]
    ys = [torch.from_numpy(y[k * batch:(k + 1) * batch]) for k in range(4)]
    state = {"k": 0}

    def step():
        state["k"] = (state["k"] + 1) % 4
        optimizer.zero_grad(set_to_none=False)
        loss_fn(model(xs[state["k"]]), ys[state["k"]]).backward()
        optimizer.step()
    return step


def gemm_flops(repeats: int = 20) -> float:
    """Single-core float32 GEMM rate on the largest model's shape (512x1024 @ 1024x1024)."""
    rng = np.random.default_rng(0)
    a, b = rng.random((512, 1024), dtype=np.float32), rng.random((1024, 1024), dtype=np.float32)
    out = np.empty((512, 1024), np.float32)
    seconds = median_seconds(lambda: np.matmul(a, b, out=out), repeats)
    return 2 * 512 * 1024 * 1024 / seconds



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with_torch = has_torch()
    results, rows, gemm_rates = [], [], []
    for name, widths, batch, opt, steps in CASES:
        ours, params = mpinn_step(widths, batch, opt)
        theirs = torch_step(widths, batch, opt) if with_torch else None
        mpinn_rates, torch_rates = [], []
        for _ in range(args.rounds):  # alternate, so both see the same machine load
            gemm_rates.append(gemm_flops(5))
            mpinn_rates.append(batch / median_seconds(ours, steps))
            if theirs:
                torch_rates.append(batch / median_seconds(theirs, steps))
        m = statistics.median(mpinn_rates)
        t = statistics.median(torch_rates) if theirs else None
        flops = 6 * params * batch * m / batch
        results.append({"model": name, "batch": batch, "optimizer": opt, "params": params,
                        "mpinn_samples_per_s": m, "torch_samples_per_s": t,
                        "ratio": m / t if t else None, "mpinn_gflops": flops / 1e9})
        rows.append([name, batch, opt, f"{m:,.0f}", f"{t:,.0f}" if t else "-",
                     f"{m / t:.2f}x" if t else "-", f"{flops / 1e9:.1f}"])
    gemm = statistics.median(gemm_rates)
    for result, row in zip(results, rows):
        result["fraction_of_gemm"] = result["mpinn_gflops"] * 1e9 / gemm
        row.append(f"{result['fraction_of_gemm']:.0%}")
    table = markdown_table(["model", "batch", "optimizer", "mpinn samples/s", "PyTorch samples/s",
                            "mpinn / PyTorch", "mpinn GFLOP/s", "of GEMM peak"], rows)
    print(table)
    print(f"\nsingle-core float32 GEMM (512x1024 @ 1024x1024): {gemm / 1e9:.1f} GFLOP/s; "
          f"medians of {args.rounds} alternating rounds")
    path = write_json("single_process", {"gemm_gflops": gemm / 1e9, "rounds": args.rounds,
                                         "results": results})
    print(f"written {path}")


if __name__ == "__main__":
    main()

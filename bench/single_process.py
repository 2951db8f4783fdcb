"""Single-process training speed: mpinn against PyTorch, and where mpinn's step time goes.

    .venv/bin/python bench/single_process.py [--rounds 5] [--output runs/bench]

The machine's native BLAS kernel, one thread (see bench/common.py). In each round, for each
model, mpinn and PyTorch train side by side (the machine is shared and noisy; medians of
the rounds are reported). On the largest model each round also times the step's matrix
products inside the step (every Dense product goes through ``mpinn.nn.layers.matmul``),
the same products alone (same shapes and memory layout, hot in cache), and the rest of the
step (activations, loss, update) as its share of the step. Writes single_process.json.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_output_argument, has_torch, markdown_table, write_json  # noqa: E402

import numpy as np  # noqa: E402

import mpinn.nn.layers  # noqa: E402
from mpinn.keras import Sequential  # noqa: E402
from mpinn.nn import Dense  # noqa: E402
from mpinn.optim import SGD, Adam  # noqa: E402
from mpinn.parallel import Communicator, DataParallel  # noqa: E402
from mpinn.plan.measure import median_call_seconds  # noqa: E402

CASES = [  # (name, layer widths, batch, optimizer, steps per round)
    ("784-32-10", (784, 32, 10), 128, "adam", 400),
    ("784-256-256-10", (784, 256, 256, 10), 256, "adam", 60),
    ("784-1024-1024-1024-10", (784, 1024, 1024, 1024, 10), 512, "sgd", 8),
]
TARGET_RATIO = 1.5  # mpinn / PyTorch samples/s
TARGET_PRODUCTS = 0.95  # products' rate inside the step / alone


def data(widths, batch):
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
    x, y = data(widths, batch)
    batches = [np.arange(k * batch, (k + 1) * batch) for k in range(4)]
    state = {"k": 0}

    def step():
        state["k"] = (state["k"] + 1) % 4
        strategy.train_step(model, x, y, batches[state["k"]])
    return step


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
    x, y = data(widths, batch)
    xs = [torch.from_numpy(x[k * batch:(k + 1) * batch]) for k in range(4)]
    ys = [torch.from_numpy(y[k * batch:(k + 1) * batch]) for k in range(4)]
    state = {"k": 0}

    def step():
        state["k"] = (state["k"] + 1) % 4
        optimizer.zero_grad(set_to_none=False)
        loss_fn(model(xs[state["k"]]), ys[state["k"]]).backward()
        optimizer.step()
    return step


def layout(array: np.ndarray) -> tuple:
    """Shape and memory order of a product's operand: what the BLAS call depends on."""
    return array.shape, "C" if array.flags.c_contiguous else "F" if array.flags.f_contiguous else "strided"


def like(shape, order, rng) -> np.ndarray:
    """A random float32 array of ``shape`` in ``order`` (F: a transposed C array)."""
    if order == "F":
        return rng.random(shape[::-1], dtype=np.float32).T
    return rng.random(shape, dtype=np.float32)


class ProductTimer:
    """Wraps ``mpinn.nn.layers.matmul`` while a step runs: the time and layout of each call."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.seconds = 0.0

    def __enter__(self):
        self._inner = mpinn.nn.layers.matmul

        def timed(a, b, out=None):
            start = time.perf_counter()
            result = self._inner(a, b, out=out)
            self.seconds += time.perf_counter() - start
            self.calls.append((layout(a), layout(b), out is not None))
            return result
        mpinn.nn.layers.matmul = timed
        return self

    def __exit__(self, *exc) -> None:
        mpinn.nn.layers.matmul = self._inner


def product_breakdown(step, steps: int) -> dict:
    """One round on the largest model: the step, its products inside it and the same
    products timed alone (median of 7 calls each)."""
    step_s = median_call_seconds(step, steps, warmup=3)
    with ProductTimer() as timer:
        for _ in range(steps):
            step()
    calls = timer.calls[:len(timer.calls) // steps]
    inside = timer.seconds / steps
    rng = np.random.default_rng(1)
    alone, flops = 0.0, 0.0
    for (a_shape, a_order), (b_shape, b_order), has_out in calls:
        a, b = like(a_shape, a_order, rng), like(b_shape, b_order, rng)
        out = np.empty((a_shape[0], b_shape[1]), np.float32) if has_out else None
        alone += median_call_seconds(lambda: np.matmul(a, b, out=out), 7, warmup=3)
        flops += 2.0 * a_shape[0] * a_shape[1] * b_shape[1]
    return {"step_s": step_s, "products_in_step_s": inside, "products_alone_s": alone,
            "product_calls": len(calls), "product_flops": flops}


def gemm_gflops(library: str = "numpy", repeats: int = 5) -> float:
    """One core's float32 GEMM rate on 512x1024 @ 1024x1024 (the kernel's ceiling), through
    numpy (OpenBLAS) or PyTorch: what bounds a step made mostly of such products."""
    rng = np.random.default_rng(0)
    a, b = rng.random((512, 1024), dtype=np.float32), rng.random((1024, 1024), dtype=np.float32)
    out = np.empty((512, 1024), np.float32)
    product = lambda: np.matmul(a, b, out=out)  # noqa: E731
    if library == "torch":
        import torch

        torch.set_num_threads(1)
        a, b, out = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(out)
        product = lambda: torch.mm(a, b, out=out)  # noqa: E731
    seconds = median_call_seconds(product, repeats, warmup=3)
    return 2 * 512 * 1024 * 1024 / seconds / 1e9


def measure(args, with_torch: bool) -> tuple[list[dict], list[dict], dict[str, list[float]]]:
    steps = {name: (mpinn_step(w, b, o), torch_step(w, b, o) if with_torch else None)
             for name, w, b, o, _ in CASES}
    rates = {name: {"mpinn": [], "torch": []} for name, *_ in CASES}
    breakdowns, gemm = [], {library: [] for library in ("numpy", "torch")[:1 + with_torch]}
    for _ in range(args.rounds):  # alternate, so every measurement sees the same machine load
        for library, rates_of in gemm.items():
            rates_of.append(gemm_gflops(library))
        for name, _, batch, _, n in CASES:
            ours, theirs = steps[name]
            rates[name]["mpinn"].append(batch / median_call_seconds(ours, n, warmup=3))
            if theirs:
                rates[name]["torch"].append(batch / median_call_seconds(theirs, n, warmup=3))
        name, _, _, _, n = CASES[-1]
        breakdowns.append(product_breakdown(steps[name][0], n))
    results = []
    for name, widths, batch, opt, _ in CASES:
        m = statistics.median(rates[name]["mpinn"])
        t = statistics.median(rates[name]["torch"]) if with_torch else None
        results.append({"model": name, "batch": batch, "optimizer": opt,
                        "mpinn_samples_per_s": m, "torch_samples_per_s": t,
                        "ratio": m / t if t else None, "rounds": rates[name]})
    return results, breakdowns, gemm


def summarize_products(breakdowns: list[dict]) -> dict:
    """Medians over rounds of the step, its products and the rest; the rate ratio per round."""
    per_round = [b["products_alone_s"] / b["products_in_step_s"] for b in breakdowns]
    step = statistics.median(b["step_s"] for b in breakdowns)
    inside = statistics.median(b["products_in_step_s"] for b in breakdowns)
    rest = statistics.median(b["step_s"] - b["products_in_step_s"] for b in breakdowns)
    return {"step_s": step, "products_in_step_s": inside,
            "products_alone_s": statistics.median(b["products_alone_s"] for b in breakdowns),
            "rate_in_step_over_alone": statistics.median(per_round), "rest_s": rest,
            "rest_share": statistics.median((b["step_s"] - b["products_in_step_s"]) / b["step_s"]
                                            for b in breakdowns),
            "product_flops": breakdowns[0]["product_flops"], "rounds": breakdowns}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    add_output_argument(parser)
    args = parser.parse_args()
    with_torch = has_torch()
    results, breakdowns, gemm = measure(args, with_torch)
    products = summarize_products(breakdowns)
    print(markdown_table(
        ["model", "batch", "optimizer", "mpinn samples/s", "PyTorch samples/s", "mpinn / PyTorch",
         f"≥ {TARGET_RATIO}x"],
        [[r["model"], r["batch"], r["optimizer"], f"{r['mpinn_samples_per_s']:,.0f}",
          f"{r['torch_samples_per_s']:,.0f}" if r["ratio"] else "-",
          f"{r['ratio']:.2f}x" if r["ratio"] else "-",
          ("yes" if r["ratio"] >= TARGET_RATIO else "NO") if r["ratio"] else "-"] for r in results]))
    p = products
    print()
    print(markdown_table(
        [f"{CASES[-1][0]}, batch {CASES[-1][2]}", "step ms", "products in the step ms",
         "same products alone ms", "products' rate in step / alone", "rest of the step ms",
         "rest's share"],
        [["median of rounds", f"{p['step_s'] * 1e3:.1f}", f"{p['products_in_step_s'] * 1e3:.1f}",
          f"{p['products_alone_s'] * 1e3:.1f}",
          f"{p['rate_in_step_over_alone']:.1%} ({'meets' if p['rate_in_step_over_alone'] >= TARGET_PRODUCTS else 'misses'}"
          f" ≥ {TARGET_PRODUCTS:.0%})",
          f"{p['rest_s'] * 1e3:.1f}", f"{p['rest_share']:.1%}"]]))
    torch_gemm = f", PyTorch {statistics.median(gemm['torch']):.1f}" if "torch" in gemm else ""
    print(f"\nsingle-core float32 GEMM (512x1024 @ 1024x1024): numpy {statistics.median(gemm['numpy']):.1f}"
          f"{torch_gemm} GFLOP/s; "
          f"products of the step alone: {p['product_flops'] / p['products_alone_s'] / 1e9:.1f} GFLOP/s, "
          f"in the step: {p['product_flops'] / p['products_in_step_s'] / 1e9:.1f} GFLOP/s; "
          f"medians of {args.rounds} rounds")
    path = write_json("single_process", {"rounds": args.rounds, "gemm_gflops": gemm,
                                         "results": results, "products": products}, args.output)
    print(f"written {path}")


if __name__ == "__main__":
    main()

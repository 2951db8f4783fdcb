"""``mpinn plot``: training curves from a metrics log (matplotlib, the ``plot`` extra).

The log is the JSON-lines file that ``mpinn train --metrics`` writes: one ``step`` record per
logging window (loss, accuracy, samples/s) and one ``epoch`` record per epoch (with the
validation values). Three panels share the step axis: loss, accuracy and samples/s, the
validation values drawn at the step where each epoch ended.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mpinn.errors import ConfigError
from mpinn.plan.report import require_pyplot


def read_metrics(path: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The step and epoch records of a metrics log, or a ConfigError naming what is wrong."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read metrics log {path}: {exc}") from None
    steps, epochs = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise ConfigError(f"{path}:{number} is not a JSON line; give the file that "
                              f"mpinn train --metrics wrote") from None
        kind = record.get("event") if isinstance(record, dict) else None
        if kind not in ("step", "epoch") or "step" not in record:
            raise ConfigError(f"{path}:{number} is not a step or epoch record of mpinn train --metrics")
        (steps if kind == "step" else epochs).append(record)
    if not steps and not epochs:
        raise ConfigError(f"metrics log {path} holds no records")
    return steps, epochs


PANELS = (("loss", "loss"), ("accuracy", "accuracy"), ("samples_per_s", "samples/s"))


def plot_metrics(path: str | Path, output: str | Path) -> Path:
    """Draw the curves of the log at ``path`` into the PNG ``output``; returns its path."""
    steps, epochs = read_metrics(path)
    plt = require_pyplot()
    panels = [(key, label) for key, label in PANELS
              if any(key in r for r in steps) or any(key in r for r in epochs)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels):
        _draw(ax, steps, epochs, key, label)
    fig.suptitle(Path(path).name)
    fig.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output


def _draw(ax, steps, epochs, key: str, label: str) -> None:
    points = [(r["step"], r[key]) for r in steps if key in r]
    if points:
        ax.plot(*zip(*points), label=f"train ({label} per window)", linewidth=1)
    validation = [(r["step"], r["val_" + key]) for r in epochs if "val_" + key in r]
    if validation:
        ax.plot(*zip(*validation), "o-", label="validation (epoch end)")
    ax.set_xlabel("step")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)

"""mpinn plot draws a real metrics log; bad logs are named, not tracebacks."""

import pytest

from mpinn.cli import main
from mpinn.cli.plot import read_metrics


def test_plot_draws_the_log_that_train_writes(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    metrics, png = tmp_path / "m.jsonl", tmp_path / "out" / "curves.png"
    assert main(["train", "--epochs", "3", "--hidden", "16", "--metrics", str(metrics),
                 "--verbose", "0"]) == 0
    steps, epochs = read_metrics(metrics)
    assert len(epochs) == 3 and all("val_loss" in e for e in epochs) and steps
    assert main(["plot", str(metrics), "-o", str(png)]) == 0
    assert f"curves written to {png}" in capsys.readouterr().out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


@pytest.mark.parametrize("content, message", [
    ("", "holds no records"),
    ("{not json\n", "m.jsonl:1 is not a JSON line"),
    ('{"event": "step", "step": 1}\n[1, 2]\n', "m.jsonl:2 is not a step or epoch record"),
])
def test_bad_logs_are_named(tmp_path, capsys, content, message):
    (tmp_path / "m.jsonl").write_text(content)
    assert main(["plot", str(tmp_path / "m.jsonl")]) == 2
    assert message in capsys.readouterr().err

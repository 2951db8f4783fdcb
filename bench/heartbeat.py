"""The watchdog's heartbeat records cost at most 1% of a training step: measured here.

Runs ``heartbeat_worker.py`` under mpiexec -n 2 (one BLAS thread per rank) and writes
``heartbeat.json`` (to runs/bench/, or --output) and a table: time per step with fit's watchdog off and on
(alternating rounds, medians), the measured difference, and the heartbeat's modelled share
(communicator calls per step x the cost of one record update / the step).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_output_argument, launch_worker, markdown_table, write_json  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_output_argument(parser)
    args = parser.parse_args()
    result = launch_worker(Path(__file__).with_name("heartbeat_worker.py"), 2, 9)
    path = write_json("heartbeat", result, args.output)
    rows = [[r["model"], f"{r['step_s_watchdog_off'] * 1e6:.0f}", f"{r['step_s_watchdog_on'] * 1e6:.0f}",
             f"{r['measured_overhead']:+.1%}", f"{r['calls_per_step']:.1f}",
             f"{r['record_update_s'] * 1e6:.2f}", f"{r['heartbeat_share_of_step']:.2%}"]
            for r in result["results"]]
    print(markdown_table(["model (2 ranks)", "step us, watchdog off", "step us, on", "measured",
                          "calls/step", "record update us", "heartbeat share"], rows))
    print(f"written to {path}")


if __name__ == "__main__":
    main()

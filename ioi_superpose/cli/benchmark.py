"""`python -m ioi_superpose.benchmark`: score every head-finding method on the planted ground-truth cases.

Writes experiments/reports/benchmark.md and benchmark.json; the logic is `ioi_superpose.groundtruth.benchmark`.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from pathlib import Path

import torch

from ioi_superpose.cli.entry import user_facing_main
from ioi_superpose.files import atomic_write, write_json
from ioi_superpose.groundtruth.benchmark import markdown, run_benchmark

REPORTS = Path(__file__).resolve().parents[2] / "experiments" / "reports"


@user_facing_main
def main(args: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ioi_superpose.benchmark", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.parse_args(args)  # no options yet: `--help` answers, anything else is refused
    torch.set_num_threads(1)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    start = time.perf_counter()
    report = run_benchmark()
    text = markdown(report)
    write_json(REPORTS / "benchmark.json", report)
    atomic_write(REPORTS / "benchmark.md", lambda name: Path(name).write_text(text))
    print(text)
    print(f"wall time {time.perf_counter() - start:.1f} s; wrote {REPORTS / 'benchmark.md'} and benchmark.json")


if __name__ == "__main__":
    main()

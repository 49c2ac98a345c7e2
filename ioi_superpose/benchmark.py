"""`python -m ioi_superpose.benchmark [--out DIR]`: score every head-finding method on the planted ground-truth cases.

Writes DIR/benchmark.md and DIR/benchmark.json (default DIR: runs/benchmark; the committed report is
regenerated with `--out experiments/reports`); the logic is `ioi_superpose.toy.benchmark`.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from ioi_superpose.files import atomic_write, write_json
from ioi_superpose.toy.benchmark import markdown, run_benchmark

DEFAULT_OUT = Path("runs") / "benchmark"


def main(args: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m ioi_superpose.benchmark",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT,
        help=f"directory for benchmark.md and benchmark.json (default: {DEFAULT_OUT}, under the working directory)",
    )  # fmt: skip
    parsed = parser.parse_args(args)
    # Before the 1-minute run, not after it: a bad --out fails at once.
    if parsed.out.exists() and not parsed.out.is_dir():
        print(f"error: --out {parsed.out} is a file; give a directory for benchmark.md and benchmark.json.",
              file=sys.stderr)  # fmt: skip
        sys.exit(1)
    torch.set_num_threads(1)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    start = time.perf_counter()
    report = run_benchmark()
    text = markdown(report)
    write_json(parsed.out / "benchmark.json", report)
    atomic_write(parsed.out / "benchmark.md", lambda name: Path(name).write_text(text))
    print(text)
    print(f"wall time {time.perf_counter() - start:.1f} s; wrote {parsed.out / 'benchmark.md'} and benchmark.json")


if __name__ == "__main__":
    main()

"""`python -m ioi_superpose.benchmark --out DIR`: every head-finding method, with controls, on cases with
exhaustive ground truth in both directions and both notions of a head set (`--rest`); writes DIR/benchmark.md
and DIR/benchmark.json (`--suite gpt2`: the 144-head suite, DIR/benchmark_gpt2.md and benchmark_gpt2.json).

The run is `ioi_superpose.groundtruth.benchmark`, its markdown `benchmark_report`; the cases `benchmark_cases`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from pathlib import Path

import torch

from ioi_superpose.arguments import OneLineParser
from ioi_superpose.errors import ConfigError, user_facing_main
from ioi_superpose.files import atomic_write, check_writable_dir, staged_directory, write_json
from ioi_superpose.groundtruth.benchmark import Config, run_benchmark
from ioi_superpose.groundtruth.benchmark_report import markdown
from ioi_superpose.seeds import check_seed

DEFAULT_OUT = Path("runs") / "benchmark"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineParser(prog="python -m ioi_superpose.benchmark", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"directory for benchmark.md and benchmark.json (default: {DEFAULT_OUT}, relative to "
        "the current directory; the committed report is regenerated with --out experiments/reports)",
    )
    parser.add_argument("--cases", nargs="+", default=None, help="case names (default: every case)")
    parser.add_argument("--directions", nargs="+", default=["denoising", "noising"], choices=["denoising", "noising"])
    parser.add_argument("--seed", type=int, default=0, help="random ranking, bootstrap and fit seed (default 0)")
    parser.add_argument("--suite", choices=["small", "gpt2"], default="small",
                        help="small: the 13 cases of 2-12 heads (default); gpt2: the 144-head planted suite, with "
                        "the shrunk settings of Config.gpt2 (32 prompts per split, 40 steps, two-value λ grids)")
    parser.add_argument("--rest", choices=["free", "frozen", "both"], default=None,
                        help="free: head sets as cuts (heads outside recompute); frozen: as circuits (heads outside "
                        "keep their base-run z); both. Default: free for the small suite (both doubles its ~2.5 "
                        "min; the committed report uses both), both for gpt2")  # fmt: skip
    parser.add_argument("--replace", action="store_true",
                        help="let a run that covers fewer cases, directions or notions replace a fuller report at "
                        "--out (without it, such a run is refused before any work)")  # fmt: skip
    return parser.parse_args(argv)


def refuse_replacing_a_fuller_report(
    path: Path, cases: list[str] | None, directions: set[str], rests: set[str]
) -> None:
    """A run that covers less than the report already at `path` (`--cases`, fewer `--directions` or `--rest`) would
    replace it whole: refused, naming what would be lost. A missing or unreadable report is nothing to lose."""
    try:
        existing = json.loads(path.read_text())
        had_cases = set(existing["cases"])
        had_directions, had_rests = set(existing["config"]["directions"]), set(existing["config"]["rests"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    lost = [
        *(f"case {name}" for name in sorted(had_cases - set(cases or had_cases))),
        *(f"direction {name}" for name in sorted(had_directions - directions)),
        *(f"--rest {name}" for name in sorted(had_rests - rests)),
    ]
    if lost:
        raise ConfigError(
            f"--out: {path} covers more than this run would ({', '.join(lost[:6])}{' …' if len(lost) > 6 else ''}), "
            "and this run would replace it whole. Give another --out for a partial run, or pass --replace to "
            "replace it."
        )


@user_facing_main
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # Before any work (the gpt2 suite runs for half an hour): a place the report can be written, and nothing fuller
    # there that it would replace.
    check_seed("--seed", args.seed)
    check_writable_dir(args.out, "--out")
    stem = "benchmark" if args.suite == "small" else "benchmark_gpt2"
    rest = args.rest or ("both" if args.suite == "gpt2" else "free")
    rests = ("free", "frozen") if rest == "both" else (rest,)
    if not args.replace:
        refuse_replacing_a_fuller_report(args.out / f"{stem}.json", args.cases, set(args.directions), set(rests))
    torch.set_num_threads(1)
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    start = time.perf_counter()
    settings = dict(cases=args.cases, directions=tuple(args.directions), seed=args.seed, rests=rests)
    config = Config.gpt2(**settings) if args.suite == "gpt2" else Config(**settings)
    report = run_benchmark(config, progress=lambda line: print(line, file=sys.stderr, flush=True))
    text = markdown(report)
    with staged_directory(args.out, last=(f"{stem}.md",)) as stage:  # both files, or neither
        write_json(stage / f"{stem}.json", report)
        atomic_write(stage / f"{stem}.md", lambda name: Path(name).write_text(text))
    print(text)
    print(f"wall time {time.perf_counter() - start:.1f} s; wrote {args.out / stem}.md and {stem}.json")


if __name__ == "__main__":
    main()

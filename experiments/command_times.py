"""Expected times per documented command on this machine: a markdown table for docs/times.md.

    python experiments/command_times.py [--long] [--repeats 1] > times.md

Runs, in a fresh copy of the repository and in the documentation's order, every command block of README.md and of
the pages in mkdocs.yml *as written* — no smaller settings: the tests' `docs-test: replace` directives are ignored —
plus every entry point's `--help`, the walkthrough (`jupyter execute`), and the smoke subset of the tests. `--long`
adds the regeneration commands the pages list in tables (the full benchmark suites, the toy reports, the toy model
trainings, the speed benchmarks: about an hour). Each command's wall time is printed with the line count of its
console output; a command that fails is marked so. Run it on a quiet machine: times taken while other jobs share the
CPU are not the user's (the main job took 71 s under a load of 5 against 12 s alone).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.helpers.docs_blocks import Block, blocks, environment, fresh_copy  # noqa: E402

HELP = [f"python -m ioi_superpose.{module} {sub}--help".replace("  ", " ")
        for module, subs in (("train", ["", "fit "]), ("train_toy", ["fit "]), ("sweep", [""]), ("report", [""]),
                             ("benchmark", [""])) for sub in subs] + ["ioi-superpose --help"]  # fmt: skip
EXTRA = ["jupyter execute experiments/walkthrough.ipynb --output=/tmp/walkthrough_times.ipynb",
         "python -m pytest -m smoke -q -p no:cacheprovider"]  # fmt: skip
LONG = [
    "python -m ioi_superpose.benchmark --rest both --out runs/benchmark_full",
    "python -m ioi_superpose.benchmark --suite gpt2 --out runs/benchmark_gpt2",
    "bash experiments/toy_reports.sh",
    "python -m ioi_superpose.train_toy fit --config experiments/toy_superposition_single.yaml",
    "python -m ioi_superpose.train_toy fit --config experiments/toy_superposition_conjunction.yaml",
    "python experiments/bench_patching.py --threads 1",
    "python experiments/bench_train_step.py --threads 1",
    "python experiments/bench_pruning_scale.py",
]


def timed(command: list[str], copy: Path, repeats: int) -> tuple[float, int, int]:
    """(median wall seconds, output lines, exit status of the last run) of `command` run in `copy`."""
    times, lines, status = [], 0, 0
    for _ in range(repeats):
        start = time.perf_counter()
        result = subprocess.run(command, cwd=copy, env=environment(copy), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)  # fmt: skip
        times.append(time.perf_counter() - start)
        lines, status = len(result.stdout.splitlines()), result.returncode
    return statistics.median(times), lines, status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long", action="store_true", help="also the regeneration commands listed in tables")
    parser.add_argument("--repeats", type=int, default=1, help="runs per command (the median is printed)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        copy = fresh_copy(REPO, Path(directory))
        commands: list[tuple[str, list[str], str]] = [(c, ["bash", "-c", c], "--help") for c in HELP]
        for block in blocks(REPO):
            if block.skip_reason is not None:  # the test suite and the walkthrough: timed below (EXTRA)
                continue
            code = Block(block.page, block.line, block.lang, block.code, None).runnable()  # as written: no replace
            command = ["bash", "-eo", "pipefail", "-c", code] if block.lang == "bash" else [sys.executable, "-c", code]
            shown = code.strip().splitlines()[0] + (" …" if len(code.strip().splitlines()) > 1 else "")
            commands.append((shown, command, block.where + (" (fails here: no GPT-2 weights)" if block.expected_error
                                                             else "")))  # fmt: skip
        commands += [(c, ["bash", "-c", c], "tests / docs") for c in EXTRA]
        commands += [(c, ["bash", "-c", c], "regeneration") for c in (LONG if args.long else [])]
        for shown, command, where in commands:
            seconds, lines, status = timed(command, copy, args.repeats)
            rows.append((shown, where, seconds, lines, status))
            print(f"{seconds:8.1f} s  {shown}", file=sys.stderr, flush=True)
    print("| command | from | wall time | console lines |")
    print("| --- | --- | --- | --- |")
    for shown, where, seconds, lines, status in rows:
        failed = "" if status == 0 else f" (exit {status})"
        print(f"| `{shown.replace('|', '/')}` | {where} | {seconds:.1f} s{failed} | {lines} |")


if __name__ == "__main__":
    main()

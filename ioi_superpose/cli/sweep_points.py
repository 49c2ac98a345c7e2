"""A sweep's grid: its points (`--grid KEY=V1,V2`) and the run of one point in a child process.

Shared by the local runner (`sweep.py`) and the Ray Tune scheduler (`ray_sweep.py`), so neither imports the other.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ioi_superpose.errors import ConfigError, UserFacingError


@dataclass(frozen=True)
class Point:
    """One run of the sweep: its grid settings, in grid order."""

    settings: tuple[tuple[str, str], ...]

    @property
    def name(self) -> str:
        """A directory name: `model.l1=0.01__model.direction=noising` (dots kept, slashes replaced)."""
        return "__".join(f"{key}={value}".replace("/", "_") for key, value in self.settings) or "default"

    def flags(self) -> list[str]:
        return [f"--{key}={value}" for key, value in self.settings]


def parse_grid(specs: Sequence[str]) -> list[tuple[str, list[str]]]:
    """`["model.l1=0.001,0.01", …]` → `[("model.l1", ["0.001", "0.01"]), …]`."""
    grid = []
    for spec in specs:
        key, sep, values = spec.partition("=")
        options = [value.strip() for value in values.split(",") if value.strip()]
        if not sep or not key.strip() or not options:
            raise ConfigError(f"--grid {spec!r}: expected KEY=V1,V2,… (e.g. --grid model.l1=0.001,0.01).")
        if key in (k for k, _ in grid):
            raise ConfigError(f"--grid names {key!r} twice; give all its values in one --grid.")
        repeated = _repeated_values(options)
        if repeated:
            # Two equal points would share one run directory: the second overwrites the first's log and a
            # stability statistic would compare one run with itself.
            raise ConfigError(
                f"--grid {spec!r} repeats the value(s) {repeated}: each value of a key must be distinct (points "
                "with equal settings share one run directory). Drop the repeats; to repeat a run with other "
                "randomness, sweep a seed, e.g. --grid seed_everything=0,1."
            )
        grid.append((key.strip(), options))
    return grid


def _repeated_values(values: Sequence[str]) -> list[str]:
    """Values equal to an earlier one, as text or as numbers (`0.001` and `1e-3` are one setting)."""

    def canonical(value: str) -> object:
        try:
            return float(value)
        except ValueError:
            return value

    seen: set[object] = set()
    repeated = []
    for value in values:
        key = canonical(value)
        if key in seen:
            repeated.append(value)
        seen.add(key)
    return repeated


def grid_points(grid: Sequence[tuple[str, Sequence[str]]]) -> list[Point]:
    keys = [key for key, _ in grid]
    return [Point(tuple(zip(keys, values))) for values in itertools.product(*(values for _, values in grid))]


def run_point(point: Point, config: Path, out: Path, extra: Sequence[str], cwd: Path | None = None) -> Path:
    """Train one point in a child process (a failing point cannot take the sweep down), in `cwd` (default:
    this process's working directory); its run dir."""
    run_dir = out / point.name
    last = run_dir / "checkpoints" / "last.ckpt"
    command = [
        sys.executable, "-m", "ioi_superpose.train", "fit", "--config", str(config), *point.flags(), *extra,
        # The run directory is OUT/<point>/ exactly: TensorBoardLogger(save_dir=OUT, name=<point>, version="").
        f"--trainer.logger.init_args.save_dir={out}", f"--trainer.logger.init_args.name={point.name}",
        "--trainer.logger.init_args.version=", "--trainer.enable_progress_bar=false",
        *([f"--ckpt_path={last}"] if last.is_file() else []),
    ]  # fmt: skip
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "sweep_point.log", "a") as log:
        finished = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
    if finished.returncode != 0:
        raise UserFacingError(
            f"sweep point {point.name} failed (exit {finished.returncode}); its output is in "
            f"{run_dir / 'sweep_point.log'}. Fix it and run the sweep again: finished points are kept."
        )
    return run_dir

"""A sweep's grid: its points (`--grid KEY=V1,V2`) and the run of one point in a child process.

Shared by the local runner (`sweep.py`) and the Ray Tune scheduler (`ray_sweep.py`), so neither imports the other.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ioi_superpose.cli.sweep_settings import (
    canonical,
    option_key,
    parse_value,
    point_settings,
    settings_differences,
    split_values,
)
from ioi_superpose.errors import ConfigError, UserFacingError
from ioi_superpose.files import write_json

POINT_RECORD = "sweep_point.json"
"""Each point directory's record of the settings it runs with (`sweep_settings.point_settings`)."""


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
    """`["model.l1=0.001,0.01", …]` → `[("model.l1", ["0.001", "0.01"]), …]`; a list value stays whole
    (`model.rotation_layers=[0],[0,1]`: two values)."""
    grid: list[tuple[str, list[str]]] = []
    for spec in specs:
        key, sep, values = spec.partition("=")
        key = key.strip()
        options = split_values(values, spec) if sep else []
        if not sep or not key or not options:
            raise ConfigError(f"--grid {spec!r}: expected KEY=V1,V2,… (e.g. --grid model.l1=0.001,0.01).")
        if any(option_key(key) == option_key(k) for k, _ in grid):
            raise ConfigError(f"--grid names {key!r} twice; give all its values in one --grid.")
        repeated = _repeated_values(options)
        if repeated:
            # Two equal points would run the same setting twice under two labels, and a stability statistic
            # would compare one run with itself.
            raise ConfigError(
                f"--grid {spec!r} repeats the value(s) {repeated}: each value of a key must be a distinct setting "
                "(values are compared as the training CLI reads them: true = True, null = ~, 1e-3 = 0.001). Drop "
                "the repeats; to repeat a run with other prompts, sweep their seed, e.g. --grid data.seed=0,1."
            )
        grid.append((key, options))
    return grid


def _repeated_values(values: Sequence[str]) -> list[str]:
    """Values equal to an earlier one as settings (`parse_value`), however they are written."""
    seen: set[object] = set()
    repeated = []
    for value in values:
        key = canonical(parse_value(value))
        if key in seen:
            repeated.append(value)
        seen.add(key)
    return repeated


def grid_points(grid: Sequence[tuple[str, Sequence[str]]]) -> list[Point]:
    keys = [key for key, _ in grid]
    return [Point(tuple(zip(keys, values))) for values in itertools.product(*(values for _, values in grid))]


def run_point(point: Point, config: Path, out: Path, extra: Sequence[str], cwd: Path | None = None) -> Path:
    """Train one point in a child process (a failing point cannot take the sweep down), in `cwd` (default:
    this process's working directory); its run dir. A point stopped part-way (a kill, SIGKILL included)
    resumes from its `last.ckpt`, or starts again cleanly when it left none that can be read (`resume_or_restart`)."""
    run_dir = out / point.name
    last = resume_or_restart(run_dir)
    command = [
        sys.executable, "-m", "ioi_superpose.train", "fit", "--config", str(config), *point.flags(), *extra,
        # The run directory is OUT/<point>/ exactly: TensorBoardLogger(save_dir=OUT, name=<point>, version="").
        f"--trainer.logger.init_args.save_dir={out}", f"--trainer.logger.init_args.name={point.name}",
        "--trainer.logger.init_args.version=", "--trainer.enable_progress_bar=false",
        *([f"--ckpt_path={last}"] if last is not None else []),
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


def record_or_refuse(points: Sequence[Point], config: Path, out: Path, extra: Sequence[str]) -> None:
    """Record each point's settings in its directory (`POINT_RECORD`), or, where a directory holds a point already,
    refuse it when it was made with other settings, naming each difference: it would be reused (finished) or
    resumed (stopped) as if it had been run with these. Every point is checked before any record is written."""
    records = {}
    for point in points:
        run_dir = out / point.name
        now = point_settings(config, point.settings, extra)
        record = run_dir / POINT_RECORD
        attempted = run_dir.is_dir() and any(path.name not in KEPT_ON_RESTART for path in run_dir.iterdir())
        if attempted and not record.is_file():
            raise ConfigError(
                f"{run_dir} holds a run without the record of its settings ({POINT_RECORD}; an older sweep, or not a "
                "sweep's): it cannot be told whether it ran with these settings. Move it away, or give another --out."
            )
        if attempted:
            try:
                before = json.loads(record.read_text())["settings"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ConfigError(f"{record} is damaged (not the record a sweep writes); remove {run_dir} to run "
                                  "that point again.") from None  # fmt: skip
            differences = settings_differences(before, now)
            if differences:
                raise ConfigError(
                    f"--out {out} holds the point {point.name}, made with other settings than this command's:\n  "
                    + "\n  ".join(differences)
                    + "\nRun it with the settings it was made with (the same --config content and options after "
                    "--), or give another --out."
                )
        else:  # nothing ran there yet: this command's settings are the point's
            records[record] = {"settings": now, "config": str(config), "grid": dict(point.settings),
                               "extra": list(extra)}  # fmt: skip
    for record, content in records.items():
        write_json(record, content)


KEPT_ON_RESTART = ("sweep_point.log", POINT_RECORD)
"""What a point directory keeps when a stopped attempt is started again: its log (appended to) and its settings."""


def resume_or_restart(run_dir: Path) -> Path | None:
    """Make a stopped point's directory ready to run again; the checkpoint to resume from, or None.

    A readable `last.ckpt`: the run resumes from it, and its `config.yaml` goes (the resumed run writes it again,
    with the settings the sweep has checked are the same; Lightning refuses to start over an existing one). None
    that can be read (killed before the first checkpoint, or while writing one): the attempt's files go and the
    point starts from its first step; its log and settings record stay.
    """
    if not run_dir.is_dir():
        return None
    last = run_dir / "checkpoints" / "last.ckpt"
    if last.is_file() and readable_checkpoint(last):
        (run_dir / "config.yaml").unlink(missing_ok=True)
        return last
    leftovers = [path for path in run_dir.iterdir() if path.name not in KEPT_ON_RESTART]
    for path in leftovers:
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    if leftovers:
        with open(run_dir / "sweep_point.log", "a") as log:
            log.write("\n[sweep] the previous attempt stopped before a readable checkpoint: starting again\n")
    return None


def readable_checkpoint(path: Path) -> bool:
    """Whether `path` loads as a checkpoint (a run killed while saving leaves a truncated file)."""
    import torch  # only when a stopped point is found

    try:
        torch.load(path, weights_only=True, map_location="cpu")
    except Exception:  # truncated, empty or not a torch file: any failure means "cannot resume from it"
        return False
    return True

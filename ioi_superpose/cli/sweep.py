"""`python -m ioi_superpose.sweep --config experiments/toy_ioi.yaml --out runs/sweeps/NAME --grid KEY=V1,V2 …`

Runs the training CLI once per point of a grid (the cartesian product of every `--grid`), each point in
its own run directory `OUT/<point>/` with its `summary.json`, and writes `OUT/sweep.json`: every
point's settings and results, the heads each selects, their stability across seeds (intersection over
union), and noising against denoising where the grid has both. OUT/tensorboard/ holds the Pareto front
of every evaluation set over the finished points (`ioi_superpose.results.pareto`), added as each point finishes
(with `--scheduler ray`: once, when the trials have ended).

Resumable: a point whose `summary.json` exists is finished and skipped; a point that was stopped
part-way continues from its `checkpoints/last.ckpt`, or starts again when it left none that can be read
(`sweep_points.resume_or_restart`). Run the same command again after a kill. Each point directory records the
settings it runs with (`sweep_point.json`); a re-run with other settings (config content, options after `--`) is
refused, naming each difference, and an option after `--` that the grid also sets is refused before anything runs
(`sweep_settings`). Points whose α are identical are named in `sweep.json` and count once in stability and
agreement.
Points run one after another in child processes on this machine (the local runner, the default), or,
with `--scheduler ray`, as Ray Tune trials across this machine's or a cluster's CPUs and GPUs
(`ioi_superpose.cli.ray_sweep`; an optional extra: `pip install -e ".[ray]"`). Both write the same files.

`--batch_variants K`: points that differ only in `BATCHABLE_KEYS` (λ, init, lr, gate seed) train K at
a time in one process, in one batched forward of the frozen model (`ioi_superpose.cli.train_batched`); each
still ends in `OUT/<point>/` with the summary.json and coefficients.pt its own run would write, but no
checkpoints or training curves. Resuming then: a point with a summary.json is skipped; the other points
are regrouped, and a group stopped part-way is trained again from its first step (a `last.ckpt` left
by an earlier unbatched attempt at one of its points is not read).
"""

from __future__ import annotations

import argparse
import hashlib
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from ioi_superpose.arguments import OneLineParser
from ioi_superpose.cli.sweep_points import Point, grid_points, parse_grid, record_or_refuse, run_point
from ioi_superpose.cli.sweep_settings import refuse_clashes
from ioi_superpose.errors import ConfigError, UserFacingError, user_facing_main
from ioi_superpose.files import write_json
from ioi_superpose.fitting.settings import BATCHABLE
from ioi_superpose.results.analysis import SEED_KEYS, compare_directions, identical_alpha, stability
from ioi_superpose.results.pareto import log_sweep
from ioi_superpose.results.schema import DirectionComparison, RunSummary, Stability, SweepPoint, SweepSummary

BATCHABLE_KEYS = tuple(f"model.{name}" for name in BATCHABLE)
"""Grid keys whose points can train together in one batched forward (`--batch_variants`, `settings.BATCHABLE`)."""


def batch_groups(points: Sequence[Point], size: int) -> list[list[Point]]:
    """The points in groups of at most `size` that differ only in `BATCHABLE_KEYS`, in grid order."""
    if size < 1:
        raise ConfigError(f"--batch_variants must be >= 1 (points trained together), got {size}.")
    by_rest: dict[tuple, list[Point]] = {}
    for point in points:
        rest = tuple((key, value) for key, value in point.settings if key not in BATCHABLE_KEYS)
        by_rest.setdefault(rest, []).append(point)
    return [group[start : start + size] for group in by_rest.values() for start in range(0, len(group), size)]


def run_group(points: Sequence[Point], config: Path, out: Path, extra: Sequence[str]) -> None:
    """Train points that differ only in batchable keys in one child process, in one batched forward
    (`ioi_superpose.cli.train_batched`); each still ends in `OUT/<point>/` with its summary.json. No
    checkpoints: a group stopped part-way is trained again from scratch (its finished points are kept)."""
    if len(points) == 1:
        run_point(points[0], config, out, extra)
        return
    members = []
    for point in points:
        (out / point.name).mkdir(parents=True, exist_ok=True)
        members += ["--member", shlex.join([
            "--config", str(config), *point.flags(), *extra,
            f"--trainer.logger.init_args.save_dir={out}", f"--trainer.logger.init_args.name={point.name}",
            "--trainer.logger.init_args.version=", "--trainer.enable_progress_bar=false",
        ])]  # fmt: skip
    log_path = out / points[0].name / "sweep_point.log"
    for point in points[1:]:
        with open(out / point.name / "sweep_point.log", "a") as log:
            log.write(f"trained in a batched group; the group's output is in {log_path}\n")
    with open(log_path, "a") as log:
        finished = subprocess.run(
            [sys.executable, "-m", "ioi_superpose.train_batched", *members], stdout=log, stderr=subprocess.STDOUT
        )
    if finished.returncode != 0:
        raise UserFacingError(
            f"the batched group {[point.name for point in points]} failed (exit {finished.returncode}); its output "
            f"is in {log_path}. Fix it and run the sweep again (or with --batch_variants 1): finished points are kept."
        )


def alpha_digest(run_dir: Path) -> str | None:
    """A hash of the α a point learned (its `coefficients.pt`): two points with equal digests ran identically."""
    import torch  # the sweep's runner has it; only here, once a point is finished

    path = run_dir / "coefficients.pt"
    if not path.is_file():
        return None
    alpha = torch.load(path, weights_only=True, map_location="cpu")["coefficients"].detach().contiguous()
    digest = hashlib.sha1(f"{alpha.dtype} {tuple(alpha.shape)}".encode())
    digest.update(alpha.view(torch.uint8).numpy().tobytes() if alpha.numel() else b"")
    return digest.hexdigest()


def sweep_summary(points: Sequence[Point], out: Path) -> SweepSummary:
    """What the finished points found, as written to `sweep.json` (run directories relative to `out`)."""
    rows = []
    for point in points:
        summary_path = out / point.name / "summary.json"
        if not summary_path.is_file():
            continue
        summary = RunSummary.read(summary_path)
        rows.append(SweepPoint(
            point=point.name,
            settings=dict(point.settings),
            run_dir=point.name,
            val_recovery=summary.recovery.val,
            test_recovery=summary.recovery.test,
            l0=summary.l0,
            heads=sorted([unit.layer, unit.head] for unit in summary.top_heads),
            alpha_digest=alpha_digest(out / point.name),
        ))  # fmt: skip
    as_dicts = [row.to_dict() for row in rows]
    finished = {row.point for row in rows}
    return SweepSummary(
        n_points=len(points),
        n_finished=len(rows),
        points=rows,
        stability=[Stability.from_dict(row, "stability") for row in stability(as_dicts, SEED_KEYS)],
        noising_vs_denoising=[
            DirectionComparison.from_dict(row, "compare_directions") for row in compare_directions(as_dicts)
        ],
        identical_alpha=identical_alpha(as_dicts),
        missing=[point.name for point in points if point.name not in finished],
    )


def run_ray_sweep(parsed: argparse.Namespace, points: Sequence[Point], extra: Sequence[str]) -> list[str]:
    """`--scheduler ray`: every point as a Ray Tune trial; the names of the points that failed."""
    from ioi_superpose.cli.ray_sweep import default_gpus_per_trial, run_with_ray  # Ray stays optional

    cpus = 1.0 if parsed.cpus_per_trial is None else parsed.cpus_per_trial
    gpus = default_gpus_per_trial() if parsed.gpus_per_trial is None else parsed.gpus_per_trial
    if cpus <= 0 or gpus < 0:
        raise ConfigError(f"--cpus_per_trial {cpus} / --gpus_per_trial {gpus}: need CPUs > 0 and GPUs >= 0.")
    return run_with_ray(
        points, parsed.config, parsed.out, extra, cpus_per_trial=cpus, gpus_per_trial=gpus, address=parsed.ray_address
    )


@user_facing_main
def main(args: Sequence[str] | None = None) -> None:
    parser = OneLineParser(
        prog="python -m ioi_superpose.sweep", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", required=True, type=Path, help="the training YAML every point starts from")
    parser.add_argument("--out", required=True, type=Path, help="the sweep directory (one run directory per point)")
    parser.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="a training option and its values, e.g. model.l1=0.001,0.01 (repeatable: the "
        "points are the cartesian product)",
    )
    parser.add_argument(
        "--scheduler",
        choices=("local", "ray"),
        default="local",
        help="local: one point after another on this machine (default); ray: the points as Ray Tune trials on "
        "this machine's or a cluster's CPUs and GPUs (pip install -e \".[ray]\")",
    )
    parser.add_argument(
        "--cpus_per_trial", type=float, default=None, help="ray only: CPUs each point reserves (default: 1)"
    )
    parser.add_argument(
        "--gpus_per_trial",
        type=float,
        default=None,
        help="ray only: GPUs each point reserves, fractions allowed (default: 1 if this machine has a GPU, else 0)",
    )
    parser.add_argument(
        "--ray_address",
        default=None,
        metavar="HOST:PORT",
        help="ray only: the running Ray cluster to use, as `ray start --head` prints it (default: start Ray "
        "on this machine); OUT must then be on a file system every node sees at the same path",
    )
    parser.add_argument(
        "--batch_variants",
        type=int,
        default=1,
        metavar="K",
        help="train up to K points that differ only in " + ", ".join(BATCHABLE_KEYS) + " together, in one batched "
        "forward of the frozen model (K × batch rows; 1: one point per process). A batched group keeps no "
        "checkpoints: stopped part-way, it is trained again from scratch",
    )
    parser.add_argument(
        "extra",
        nargs=argparse.REMAINDER,
        help="after `--`: options passed unchanged to every point, e.g. -- --trainer.max_epochs 3",
    )
    parsed = parser.parse_args(args)
    try:
        if parsed.scheduler == "ray" and parsed.batch_variants != 1:
            raise ConfigError("--batch_variants applies to the local runner only (a Ray trial is one point); drop it.")
        if parsed.scheduler != "ray":
            for option in ("cpus_per_trial", "gpus_per_trial", "ray_address"):
                if getattr(parsed, option) is not None:
                    raise ConfigError(f"--{option} applies to --scheduler ray only; add --scheduler ray or drop it.")
        if not parsed.config.is_file():
            raise ConfigError(f"--config {parsed.config}: no such file.")
        grid = parse_grid(parsed.grid)
        points = grid_points(grid)
        extra = parsed.extra[1:] if parsed.extra[:1] == ["--"] else parsed.extra
        refuse_clashes([key for key, _ in grid], extra)
        if parsed.out.exists() and not parsed.out.is_dir():
            raise ConfigError(f"--out {parsed.out} is a file; give a directory (new, or an earlier sweep's).")
        parsed.out.mkdir(parents=True, exist_ok=True)
        record_or_refuse(points, parsed.config, parsed.out, extra)
        todo = [point for point in points if not (parsed.out / point.name / "summary.json").is_file()]
        print(f"{len(points)} points, {len(points) - len(todo)} already finished, in {parsed.out}")
        if parsed.scheduler == "local":
            for group in tqdm(batch_groups(todo, parsed.batch_variants), desc="sweep"):
                run_group(group, parsed.config, parsed.out, extra)
                write_json(parsed.out / "sweep.json", sweep_summary(points, parsed.out).to_dict())
                log_sweep(parsed.out, [parsed.out / p.name for p in points])  # OUT/tensorboard: Pareto fronts
        elif todo:  # every point finished: nothing for Ray to schedule
            failed = run_ray_sweep(parsed, points, extra)
            write_json(parsed.out / "sweep.json", sweep_summary(points, parsed.out).to_dict())
            log_sweep(parsed.out, [parsed.out / p.name for p in points])  # OUT/tensorboard: the fronts, once
            if failed:
                raise UserFacingError(
                    f"{len(failed)} sweep point(s) failed: {', '.join(failed)}; each one's output is in "
                    f"{parsed.out}/<point>/sweep_point.log. Fix it and run the same command again: finished "
                    "points are kept."
                )
        summary = sweep_summary(points, parsed.out)
        path = write_json(parsed.out / "sweep.json", summary.to_dict())
        print(f"sweep summary: {path}")
        for group in summary.identical_alpha:
            print(f"note: the points {', '.join(group)} learned identical α: their runs did not differ (counted once "
                  "in stability and agreement).")  # fmt: skip
    except OSError as error:  # an unwritable --out, a point's log that cannot be opened
        raise UserFacingError(f"{error}; check --out and the config's paths.") from error


if __name__ == "__main__":
    main()

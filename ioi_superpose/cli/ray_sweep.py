"""The sweep's optional scheduler: its points as Ray Tune trials (`python -m ioi_superpose.sweep --scheduler ray`).

Each trial calls the local runner's own `run_point`, so a trial writes exactly what the local runner
writes (`OUT/<point>/` with its `summary.json`), and skips a point whose `summary.json` exists. Ray
places the trials on the CPUs and GPUs of this machine or of a cluster (`--ray_address`); this module
only maps the sweep onto `ray.tune.Tuner` and restores it. Ray is imported here only, and only when
this scheduler is used: `pip install -e ".[ray]"`.

Tune's experiment lives in `OUT/ray/<experiment>/`, named by a hash of the points, the config and the
extra options, so running the same command again restores it (`Tuner.restore(..., resume_errored=True)`:
stopped and failed trials run again, each point continuing from its own `last.ckpt`); a different grid
starts a new experiment next to it and still skips the points already finished. On several nodes OUT
(and the config, and the working directory, which each point's training runs in) must be on a file
system that every node sees at the same path.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ioi_superpose.cli.sweep_points import Point, run_point
from ioi_superpose.errors import UserFacingError
from ioi_superpose.results.schema import RunSummary

INSTALL_HINT = 'pip install -e ".[ray]"'


def experiment_name(points: Sequence[Point], config: Path, extra: Sequence[str]) -> str:
    """`sweep-<hash>`: the same command restores the same Tune experiment, another grid gets its own."""
    identity = json.dumps({"points": [point.name for point in points], "config": str(config), "extra": list(extra)})
    return "sweep-" + hashlib.sha1(identity.encode()).hexdigest()[:10]


def default_gpus_per_trial() -> float:
    """One GPU per trial where this machine has one, else none (a CPU-only driver of a GPU cluster passes
    `--gpus_per_trial 1` itself)."""
    import torch

    return 1.0 if torch.cuda.is_available() else 0.0


def _trial(
    trial_config: dict[str, Any], points: dict[str, Point], config: Path, out: Path, extra: list[str], cwd: Path
) -> None:
    """One Tune trial: one point, through the local runner's `run_point`, then its results to Tune."""
    from ray import tune

    point = points[trial_config["point"]]
    summary_path = out / point.name / "summary.json"
    skipped = summary_path.is_file()  # finished by an earlier run (local or Ray): nothing to train
    if not skipped:
        # Tune moves each trial into its own directory; the point trains where the sweep was started,
        # so relative paths in the config and the extra options mean what they mean to the local runner.
        run_point(point, config, out, extra, cwd=cwd)
    summary = RunSummary.read(summary_path)
    tune.report({"val_recovery": summary.recovery.val, "l0": summary.l0, "skipped": skipped})


def run_with_ray(
    points: Sequence[Point],
    config: Path,
    out: Path,
    extra: Sequence[str],
    *,
    cpus_per_trial: float,
    gpus_per_trial: float,
    address: str | None,
) -> list[str]:
    """Run every point as a Tune trial (restoring the experiment if this command ran before).

    `address=None` starts a Ray on this machine; otherwise it connects to that cluster. Returns the names
    of the points whose trial failed.
    """
    try:
        import ray
        from ray import tune
    except ImportError as error:
        raise UserFacingError(f"--scheduler ray needs Ray Tune, which is not installed: {INSTALL_HINT}") from error

    config, out = config.resolve(), out.resolve()
    storage = out / "ray"
    name = experiment_name(points, config, extra)
    trainable = tune.with_resources(
        tune.with_parameters(
            _trial, points={point.name: point for point in points}, config=config, out=out, extra=list(extra),
            cwd=Path.cwd(),
        ),
        {"cpu": cpus_per_trial, "gpu": gpus_per_trial},
    )  # fmt: skip
    if address is None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report sent from a local Ray
        ray.init(address="local", include_dashboard=False)
    else:
        ray.init(address=address)
    try:
        if tune.Tuner.can_restore(storage / name):
            print(f"restoring the Ray Tune experiment {storage / name}")
            tuner = tune.Tuner.restore(str(storage / name), trainable=trainable, resume_errored=True)
        else:
            tuner = tune.Tuner(
                trainable,
                param_space={"point": tune.grid_search([point.name for point in points])},
                run_config=tune.RunConfig(name=name, storage_path=str(storage)),
            )
        results = tuner.fit()
    finally:
        ray.shutdown()
    return [result.config["point"] for result in results if result.error is not None]

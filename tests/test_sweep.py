"""The sweep runner: one run directory per grid point, resumable after a kill, and its summary."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ioi_superpose.cli.sweep import grid_points, parse_grid
from ioi_superpose.results.analysis import compare_directions, iou, stability
from tests.helpers import REPO, SWEEP_CONFIG


def sweep_command(config: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ioi_superpose.cli.sweep",
        "--config",
        str(config),
        "--out",
        str(out),
        "--grid",
        "model.direction=denoising,noising",
        "--grid",
        "data.seed=0,1",
    ]


def test_grid_points_are_the_cartesian_product_with_readable_names():
    points = grid_points(parse_grid(["model.l1=0.001,0.01", "model.direction=denoising,noising"]))
    assert [p.name for p in points] == [
        "model.l1=0.001__model.direction=denoising",
        "model.l1=0.001__model.direction=noising",
        "model.l1=0.01__model.direction=denoising",
        "model.l1=0.01__model.direction=noising",
    ]
    assert points[1].flags() == ["--model.l1=0.001", "--model.direction=noising"]


@pytest.mark.parametrize("spec", ["model.l1", "model.l1=", "=1,2"])
def test_a_bad_grid_is_refused_with_the_fix(spec):
    from ioi_superpose.errors import ConfigError

    with pytest.raises(ConfigError, match="KEY=V1,V2"):
        parse_grid([spec])


def test_stability_and_direction_comparison():
    rows = [
        {"point": "a", "settings": {"model.direction": "denoising", "seed_everything": "0"}, "heads": [[0, 1], [0, 2]]},
        {"point": "b", "settings": {"model.direction": "denoising", "seed_everything": "1"}, "heads": [[0, 1]]},
        {"point": "c", "settings": {"model.direction": "noising", "seed_everything": "0"}, "heads": [[0, 1], [1, 0]]},
    ]
    (denoising,) = [s for s in stability(rows, ["seed_everything"]) if "denoising" in s["setting"]]
    assert denoising["heads_in_every_run"] == [(0, 1)] and denoising["intersection_over_union"] == 0.5
    (seed0,) = [c for c in compare_directions(rows) if c["setting"] == "seed_everything=0"]
    assert seed0["both"] == [(0, 1)] and seed0["only_denoising"] == [(0, 2)] and seed0["only_noising"] == [(1, 0)]
    assert iou([], []) is None and iou([1], [2]) == 0.0


def test_a_killed_sweep_resumes_skipping_finished_points(tmp_path):
    config = tmp_path / "sweep.yaml"
    config.write_text(SWEEP_CONFIG.replace("MODEL", str(REPO / "checkpoints" / "toy_ioi.pt")))
    out = tmp_path / "sweep"
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    # Kill the whole sweep (its process group: the runner and the point it runs) once the first point is done.
    first = subprocess.Popen(
        sweep_command(config, out),
        cwd=tmp_path,
        env=environment,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while not list(out.glob("*/summary.json")) and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    done = {path.parent.name: path.stat().st_mtime_ns for path in out.glob("*/summary.json")}
    assert 0 < len(done) < 4, "the kill came after the first point and before the last"

    finished = subprocess.run(
        sweep_command(config, out), cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert f"{len(done)} already finished" in finished.stdout
    for name, mtime in done.items():  # finished points were not run again
        assert (out / name / "summary.json").stat().st_mtime_ns == mtime
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["n_finished"] == summary["n_points"] == 4
    assert {row["settings"]["model.direction"] for row in summary["points"]} == {"denoising", "noising"}
    assert len(summary["stability"]) == 2 and len(summary["noising_vs_denoising"]) == 2
    for row in summary["points"]:
        assert (out / row["run_dir"] / "coefficients.pt").is_file()  # relative to the sweep
    # The sweep's TensorBoard: every set's Pareto front, added as points finished, the last over all 4.
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert set(events.Tags()["images"]) == {"pareto/val", "pareto/in_distribution", "pareto/held_out_names"}
    assert max(event.step for event in events.Images("pareto/val")) == 4


def test_batch_groups_hold_points_that_differ_only_in_batchable_keys():
    from ioi_superpose.cli.sweep import batch_groups

    points = grid_points(parse_grid(["model.direction=denoising,noising", "model.l1=0.1,0.2,0.3", "model.lr=1,2"]))
    groups = batch_groups(points, 4)
    assert [len(group) for group in groups] == [4, 2, 4, 2]
    for group in groups:
        assert len({dict(point.settings)["model.direction"] for point in group}) == 1
    assert [[p] for p in points] == batch_groups(points, 1)


def test_a_batched_sweep_writes_the_summaries_of_unbatched_points(tmp_path):
    config = tmp_path / "sweep.yaml"
    config.write_text(SWEEP_CONFIG.replace("MODEL", str(REPO / "checkpoints" / "toy_ioi.pt")))
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    grid = ["--grid", "model.l1=0.001,0.03"]
    for k in (1, 2):
        command = [*sweep_command(config, tmp_path / f"k{k}")[:7], *grid, "--batch_variants", str(k)]
        finished = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300)
        assert finished.returncode == 0, finished.stderr[-3000:]
    batched_logs = [path.read_text() for path in (tmp_path / "k2").glob("*/sweep_point.log")]
    assert sum("trained in a batched group" in log for log in batched_logs) == 1  # one group of two
    for single_path in (tmp_path / "k1").glob("*/summary.json"):
        single = json.loads(single_path.read_text())
        batched = json.loads((tmp_path / "k2" / single_path.parent.name / "summary.json").read_text())
        assert (tmp_path / "k2" / single_path.parent.name / "coefficients.pt").is_file()
        assert batched["l0"] == single["l0"] and batched["support"] == single["support"]
        assert batched["recovery"]["val"] == pytest.approx(single["recovery"]["val"], abs=1e-5)
        assert batched["recovery"]["test"] == pytest.approx(single["recovery"]["test"], abs=1e-5)
        for row, other in zip(batched["top_heads"], single["top_heads"], strict=True):
            assert row["alpha"] == pytest.approx(other["alpha"], abs=1e-4)
        assert batched["per_prompt_recovery"]["val"]["median"] == pytest.approx(
            single["per_prompt_recovery"]["val"]["median"], abs=1e-5
        )
        assert batched["config"]["model"] == single["config"]["model"]
    points = json.loads((tmp_path / "k2" / "sweep.json").read_text())
    assert points["n_finished"] == points["n_points"] == 2

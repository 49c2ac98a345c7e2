"""`--scheduler ray`: the sweep's points as Ray Tune trials, the same files as the local runner, resumable."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from ioi_superpose.cli.sweep import main
from tests.helpers import REPO, SWEEP_CONFIG

GRID = ["--grid", "model.init=0.5,1.0"]  # two points whose α differ, so a mix-up of points cannot pass


def sweep_command(config: Path, out: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "ioi_superpose.sweep", "--config", str(config), "--out", str(out), *GRID, *options]


def test_ray_options_are_refused_with_the_local_scheduler(tmp_path, capsys):
    config = tmp_path / "sweep.yaml"
    config.write_text(SWEEP_CONFIG)
    with pytest.raises(SystemExit) as exit_info:
        main(["--config", str(config), "--out", str(tmp_path / "out"), "--cpus_per_trial", "2"])
    assert exit_info.value.code == 1
    assert "--cpus_per_trial applies to --scheduler ray only" in capsys.readouterr().err


def test_the_sweep_imports_without_ray_and_names_the_extra_when_asked_for_it(tmp_path):
    config = tmp_path / "sweep.yaml"
    config.write_text(SWEEP_CONFIG)
    # A Python in which `import ray` fails, as where the extra is not installed.
    script = (
        "import sys; sys.modules['ray'] = None\n"
        "import ioi_superpose.cli.sweep as sweep\n"
        f"sweep.main(['--config', {str(config)!r}, '--out', {str(tmp_path / 'out')!r}, '--scheduler', 'ray'])\n"
    )
    finished = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert finished.returncode == 1, finished.stderr[-2000:]
    assert 'pip install -e ".[ray]"' in finished.stderr
    assert "Traceback" not in finished.stderr


def running_with(marker: str) -> list[int]:
    """Processes whose environment holds `marker`: everything the sweep started inherits it."""
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in environ.read_bytes():
                pids.append(int(environ.parent.name))
        except OSError:  # gone, or not ours to read
            continue
    return pids


def test_a_killed_ray_sweep_resumes_and_matches_the_local_runner(tmp_path):
    config = tmp_path / "sweep.yaml"
    config.write_text(SWEEP_CONFIG.replace("MODEL", str(REPO / "checkpoints" / "toy_ioi.pt")))
    # Ray's sockets live in its temp dir, whose path must stay short (AF_UNIX paths: 107 bytes).
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    try:
        check_a_killed_ray_sweep(config, tmp_path, ray_tmp)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def check_a_killed_ray_sweep(config: Path, tmp_path: Path, ray_tmp: str) -> None:
    environment = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "RAY_TMPDIR": ray_tmp,
        "RAY_USAGE_STATS_ENABLED": "0",
        # A 2-CPU Ray whatever the machine, and trials of 2 CPUs: the points run one after another, so the
        # kill below falls between the first point's end and the second's.
        "RAY_OVERRIDE_RESOURCES": json.dumps({"CPU": 2}),
    }
    ray_options = ("--scheduler", "ray", "--cpus_per_trial", "2", "--gpus_per_trial", "0")

    local = tmp_path / "local"
    finished = subprocess.run(
        sweep_command(config, local), cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300
    )
    assert finished.returncode == 0, finished.stderr[-3000:]

    out = tmp_path / "ray_sweep"
    first = subprocess.Popen(
        sweep_command(config, out, *ray_options),
        cwd=tmp_path,
        env=environment,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not list(out.glob("*/summary.json")) and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # the driver, Ray's processes and the point in training
    first.wait()
    deadline = time.monotonic() + 30
    while running_with(ray_tmp) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = running_with(ray_tmp)
    for pid in left:  # clean up before failing: these are this test's processes
        os.kill(pid, signal.SIGKILL)
    assert not left, "a process of the killed sweep outlived its process group"
    done = {path.parent.name: path.stat().st_mtime_ns for path in out.glob("*/summary.json")}
    assert len(done) == 1, "the kill came after the first point and before the second"

    finished = subprocess.run(
        sweep_command(config, out, *ray_options), cwd=tmp_path, env=environment, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert "1 already finished" in finished.stdout
    assert "restoring the Ray Tune experiment" in finished.stdout
    for name, mtime in done.items():  # the finished point was not trained again
        assert (out / name / "summary.json").stat().st_mtime_ns == mtime

    summary, local_summary = (
        json.loads((out / "sweep.json").read_text()),
        json.loads((local / "sweep.json").read_text()),
    )
    assert summary["n_finished"] == summary["n_points"] == 2
    # sweep.json is the local runner's, point for point (α compared to float tolerance below, not by digest).
    for rows in (summary["points"], local_summary["points"]):
        for row in rows:
            row.pop("alpha_digest")
    assert summary == local_summary
    alphas = {}
    for row in summary["points"]:
        alpha = torch.load(out / row["point"] / "coefficients.pt")["coefficients"]
        assert torch.allclose(alpha, torch.load(local / row["point"] / "coefficients.pt")["coefficients"])
        alphas[row["point"]] = alpha
    low, high = alphas.values()
    assert not torch.allclose(low, high), "the two points learn different α, so the comparison can fail"

    again = {path.parent.name: path.stat().st_mtime_ns for path in out.glob("*/summary.json")}
    finished = subprocess.run(
        sweep_command(config, out, *ray_options), cwd=tmp_path, env=environment, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "2 already finished" in finished.stdout
    assert again == {path.parent.name: path.stat().st_mtime_ns for path in out.glob("*/summary.json")}

"""The smoke subset's end-to-end checks (`pytest -m smoke`: every entry point once, under a minute on a quiet
2-core machine): a batched sweep of two points (`sweep` running `train-batched`), its report, and the benchmark on
one case. `train`, `train_toy`, `--help` and the parser's one-line errors have smoke-marked tests of their own
(tests/test_cli.py, test_toy.py, test_cli_help.py, test_console.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ioi_superpose.cli import benchmark
from ioi_superpose.results import report
from tests.helpers import REPO, SWEEP_CONFIG

pytestmark = pytest.mark.smoke


def test_a_batched_sweep_and_its_report(tmp_path, capsys):
    config = tmp_path / "sweep.yaml"
    config.write_text(SWEEP_CONFIG.replace("MODEL", str(REPO / "checkpoints" / "toy_ioi.pt")))
    out = tmp_path / "sweep"
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    finished = subprocess.run(
        [sys.executable, "-m", "ioi_superpose.sweep", "--config", str(config), "--out", str(out),
         "--grid", "model.l1=0.001,0.03", "--batch_variants", "2"],
        cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-3000:]
    sweep = json.loads((out / "sweep.json").read_text())
    assert sweep["n_finished"] == sweep["n_points"] == 2
    assert sum("trained in a batched group" in path.read_text() for path in out.glob("*/sweep_point.log")) == 1
    report.main([str(out), "--out", str(tmp_path / "report")])
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Recovery against the sparsity weight λ (sweeps)" in text and (tmp_path / "report" / "l1_sweep.png").is_file()


def test_the_benchmark_on_one_case(tmp_path, capsys):
    benchmark.main(["--out", str(tmp_path), "--cases", "or", "--directions", "denoising"])
    result = json.loads((tmp_path / "benchmark.json").read_text())
    assert list(result["cases"]) == ["or"] and (tmp_path / "benchmark.md").is_file()

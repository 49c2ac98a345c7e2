"""The report runs on finished runs and names every figure it links."""

from __future__ import annotations

import re

import pytest

from ioi_superpose.report import main as report_main
from ioi_superpose.train import main as train_main

SMALL = [
    "--data.n_train",
    "32",
    "--data.n_val",
    "16",
    "--data.n_test",
    "8",
    "--data.batch_size",
    "16",
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.enable_model_summary",
    "false",
    "--trainer.max_epochs",
    "1",
]


def test_report_on_two_tiny_runs_links_every_figure_it_writes(tiny_gpt2_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for direction in ("denoising", "noising"):
        train_main(["fit", "--model.model_name", str(tiny_gpt2_dir), "--model.direction", direction, *SMALL])
    runs = sorted((tmp_path / "runs" / "ioi_superpose").iterdir())
    report_main([*map(str, runs), "--out", str(tmp_path / "report")])
    text = (tmp_path / "report" / "report.md").read_text()
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert linked == ["pareto.png", "sets.png"]
    for name in linked:
        assert (tmp_path / "report" / name).stat().st_size > 1000
    for run in runs:
        assert f"| {run.name} | " in text  # every run has its row
    assert "No run here is of GPT-2 small" in text  # a 2-layer GPT-2-shaped model is not GPT-2 small
    assert "noising" in text and "denoising" in text


def test_report_refuses_a_directory_without_runs(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        report_main([str(tmp_path), "--out", str(tmp_path / "report")])
    assert exit_info.value.code == 1
    assert "neither a summary.json" in capsys.readouterr().err

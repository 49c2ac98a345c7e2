"""The report runs on finished runs and names every figure it links."""

from __future__ import annotations

import json
import re

import pytest

from ioi_superpose.cli.train import main as train_main
from ioi_superpose.data.datamodule import OFF_DISTRIBUTION_SETS
from ioi_superpose.results.report import main as report_main
from tests.helpers import REPO

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
    # The denoising run writes a small max-activating table, the noising run none (per_set 0); the noising
    # run has the top-k curves (in its own direction); both have every off-distribution set.
    curves = ["--trainer.callbacks+=ioi_superpose.baselines.callbacks.CombinationBaselines"]
    for direction, per_set, extra in (("denoising", "2", []), ("noising", "0", curves)):
        train_main(
            ["fit", "--model.model_name", str(tiny_gpt2_dir), "--model.direction", direction, *SMALL,
             "--max_activating.per_set", per_set, *extra]
        )  # fmt: skip
    runs = sorted((tmp_path / "runs" / "ioi_superpose").iterdir())
    names = [f"ioi_superpose/{run.name}" for run in runs]  # a run is named by its logger's name and version
    noising = json.loads((runs[1] / "summary.json").read_text())
    assert noising["direction"] == "noising"
    sets = ["val", "in_distribution", *OFF_DISTRIBUTION_SETS]
    assert list(noising["baselines"]["combinations"]["curves_by_set"]) == sets
    report_main([*map(str, runs), "--out", str(tmp_path / "report")])
    text = (tmp_path / "report" / "report.md").read_text()
    section = text.split("## Max-activating examples (off distribution)")[1].split("\n## ")[0]
    table = json.loads((runs[0] / "max_activating.json").read_text())
    n = len(table["rows"])
    for row in [*table["rows"][:2], *table["rows"][-2:]]:  # the two largest and the two smallest moves
        assert f"| {names[0]} | " in section and f"| {row['rank']} of {n} | {row['set_name']} |" in section
        assert f"| {row['prompt']} | {row['io']} / {row['s']} |" in section
        assert f"| {row['move']:.3f} |" in section
    # The link points at a copy next to the report (a committed report carries no link into runs/).
    (link,) = re.findall(r"(?<!!)\[[^\]]+\]\(([^)]+)\)", section)
    assert link == "max_activating/ioi_superpose__version_0.md"
    assert (tmp_path / "report" / link).read_text() == (runs[0] / "max_activating.md").read_text()
    assert not (runs[1] / "max_activating.json").exists()
    assert f"no table: `{names[1]}`" in section
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert linked == [*(f"pareto_{name}.png" for name in sets), "sets.png"]  # one Pareto front per set
    for name in linked:
        assert (tmp_path / "report" / name).stat().st_size > 1000
    for name, run in zip(names, runs):  # every run's row carries its own direction, L0 and recovery
        summary = json.loads((run / "summary.json").read_text())
        val = summary["recovery"]["val"]
        shown = "n/a" if val is None else f"{val:.3f}"
        assert (
            f"| {name} | {summary['direction']} | {summary['objective']} | {summary['l0']} of "
            f"{summary['n_heads_total']} | {shown} | "
        ) in text
        dist = summary["per_prompt_recovery"]["val"]
        mean = "n/a" if dist["mean"] is None else f"{dist['mean']:.3f}"
        assert f"| {name} | {summary['objective']} | " in text and f"| {shown} | {mean} | " in text
    assert "No run here is of GPT-2 small" in text  # a 2-layer GPT-2-shaped model is not GPT-2 small


def test_report_refuses_a_directory_without_runs(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        report_main([str(tmp_path), "--out", str(tmp_path / "report")])
    assert exit_info.value.code == 1
    assert "neither a summary.json" in capsys.readouterr().err


def test_committed_reports_link_only_files_in_the_repository():
    for report in (REPO / "experiments" / "reports").rglob("*.md"):
        for target in re.findall(r"\]\(([^)#]+)\)", report.read_text()):
            if not target.startswith(("http://", "https://")):
                assert (report.parent / target).is_file(), f"{report} links {target}, which is not in the repository"

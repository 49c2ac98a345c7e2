"""Issue 24, sweeps: a point's label is what it ran, equal settings are one point, identical runs are not a
stability result, a killed point finishes on re-run, a re-run with other settings is refused, a moved sweep is
read where it is, and an unfinished one names its missing points. Each test failed on the code before the fix."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from ioi_superpose.cli import sweep as sweep_cli
from ioi_superpose.cli.sweep_points import Point, grid_points, parse_grid, run_point
from ioi_superpose.errors import ConfigError
from ioi_superpose.results.report import main as report_main
from ioi_superpose.results.schema import SweepSummary
from tests.helpers import REPO, SWEEP_CONFIG, fake_summary


def fake_point(out: Path, point: Point, heads: list[list[int]], alpha: torch.Tensor, val: float = 0.9) -> Path:
    """A finished point of a sweep in `out` (summary.json and coefficients.pt) that never trained."""
    run_dir = out / point.name
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "summary.json").write_text(json.dumps(fake_summary("denoising", "scalar", val, heads)))
    torch.save({"coefficients": alpha}, run_dir / "coefficients.pt")
    return run_dir


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(SWEEP_CONFIG.replace("MODEL", str(REPO / "checkpoints" / "toy_ioi.pt")))
    return path


@pytest.fixture
def no_training(monkeypatch):
    """The sweep with its points' training replaced by a fake finished run (records the points it ran)."""
    ran: list[str] = []

    def run_group(points, config, out, extra):
        for point in points:
            ran.append(point.name)
            fake_point(out, point, [[0, 1]], torch.rand(2, 4))

    monkeypatch.setattr(sweep_cli, "run_group", run_group)
    monkeypatch.setattr(sweep_cli, "log_sweep", lambda *args: None)
    return ran


def sweep_fails(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        sweep_cli.main(args)
    assert exit_info.value.code == 1
    return capsys.readouterr().err


# ---- an option after `--` that the grid (or the sweep) also sets ------------------------------------------


@pytest.mark.parametrize(
    "extra, named",
    [
        (["--model.direction", "noising"], "--model.direction"),
        (["--model.direction=noising"], "--model.direction"),
        (["--seed_everything", "3"], "--seed_everything"),
        (["--model", "{direction: noising}"], "--model"),
        (["--trainer.logger.init_args.save_dir", "elsewhere"], "--trainer.logger.init_args.save_dir"),
    ],
)
def test_an_option_after_dashes_that_the_grid_or_the_sweep_sets_is_refused_before_any_point_runs(
    extra, named, config, tmp_path, no_training, capsys
):
    out = tmp_path / "sweep"
    grid = ["--grid", "model.direction=denoising,noising", "--grid", "seed_everything=0,1"]
    error = sweep_fails(["--config", str(config), "--out", str(out), *grid, "--", *extra], capsys)
    assert named in error and "error:" in error
    assert no_training == [] and not out.exists()


def test_a_config_after_dashes_that_sets_a_grid_key_is_refused(config, tmp_path, no_training, capsys):
    later = tmp_path / "later.yaml"
    later.write_text("model:\n  l1: 0.5\n")
    error = sweep_fails(["--config", str(config), "--out", str(tmp_path / "sweep"), "--grid", "model.l1=0.01,0.1",
                         "--", "--config", str(later)], capsys)  # fmt: skip
    assert "model.l1" in error and str(later) in error and no_training == []


def test_options_the_grid_does_not_set_pass_to_every_point(config, tmp_path, no_training):
    out = tmp_path / "sweep"
    sweep_cli.main(["--config", str(config), "--out", str(out), "--grid", "model.l1=0.01,0.1", "--",
                    "--model.direction", "noising", "--trainer.max_epochs", "2"])  # fmt: skip
    assert no_training == ["model.l1=0.01", "model.l1=0.1"]


# ---- equal values written differently; list values ------------------------------------------------------


@pytest.mark.parametrize(
    "spec", ["model.bounded=true,True", "model.mixing_target=null,~", "model.l1=1e-3,0.001", "model.lr=5e-2,0.05",
             "model.rotation_layers=[0,1],[0, 1]"]
)  # fmt: skip
def test_equal_values_written_differently_are_one_point(spec):
    with pytest.raises(ConfigError, match="repeats"):
        parse_grid([spec])


def test_values_that_differ_as_values_stay_apart():
    ((_, values),) = parse_grid(["model.init=1,true"])  # the number 1 and the boolean are different settings
    assert values == ["1", "true"]


def test_list_valued_options_are_split_at_the_commas_between_values():
    ((key, values),) = parse_grid(["model.rotation_layers=[0],[0,1],null"])
    assert key == "model.rotation_layers" and values == ["[0]", "[0,1]", "null"]
    assert [p.flags() for p in grid_points(parse_grid(["data.off_distribution=[held_out_names,baba_only],[]"]))] == [
        ["--data.off_distribution=[held_out_names,baba_only]"], ["--data.off_distribution=[]"]
    ]


def test_an_unbalanced_list_is_refused():
    with pytest.raises(ConfigError, match="bracket"):
        parse_grid(["model.rotation_layers=[0,1"])


# ---- identical runs are not a stability or agreement result ----------------------------------------------


def test_points_with_identical_alpha_are_said_plainly_and_not_shown_as_stability(tmp_path, capsys):
    out = tmp_path / "sweep"
    points = grid_points(parse_grid(["model.direction=denoising,noising", "seed_everything=0,1"]))
    same = torch.tensor([[1.0, 0.0, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0]])
    for point in points:  # every point learned the very same α: the grid changed nothing
        fake_point(out, point, [[0, 0], [0, 2]], same.clone())
    summary = sweep_cli.sweep_summary(points, out)
    assert summary.stability == [] and summary.noising_vs_denoising == []
    assert sorted(map(sorted, summary.identical_alpha)) == [sorted(p.name for p in points)]
    (out / "sweep.json").write_text(json.dumps(summary.to_dict()))
    report_main([str(out), "--out", str(tmp_path / "report")])
    text = (tmp_path / "report" / "report.md").read_text()
    stability_section = text.split("## Stability across seeds")[1]
    assert "identical α" in stability_section and "| IoU |" not in stability_section
    assert "IoU" not in text.split("## Noising against denoising")[1].split("\n## ")[0].replace("IoU |", "")


def test_stability_is_computed_across_the_runs_that_differ(tmp_path):
    out = tmp_path / "sweep"
    points = grid_points(parse_grid(["seed_everything=0,1,2"]))
    alphas = [torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 1.0]])]
    heads = [[[0, 0]], [[0, 0]], [[0, 0], [0, 1]]]
    for point, alpha, head_set in zip(points, alphas, heads):
        fake_point(out, point, head_set, alpha)
    summary = sweep_cli.sweep_summary(points, out)
    (row,) = summary.stability
    assert row.runs == ["seed_everything=0", "seed_everything=2"]  # the identical seed 1 counts once
    assert row.intersection_over_union == 0.5
    assert summary.identical_alpha == [["seed_everything=0", "seed_everything=1"]]


# ---- a re-run into the same --out with other settings -----------------------------------------------------


def test_rerunning_into_the_same_out_with_other_settings_is_refused_naming_the_difference(
    config, tmp_path, no_training, capsys
):
    out = tmp_path / "sweep"
    base = ["--config", str(config), "--out", str(out), "--grid", "model.l1=0.01,0.1"]
    sweep_cli.main([*base, "--", "--trainer.max_epochs", "2"])
    assert len(no_training) == 2
    error = sweep_fails([*base, "--", "--trainer.max_epochs", "3"], capsys)
    assert "trainer.max_epochs" in error and "2" in error and "3" in error
    other = tmp_path / "other.yaml"
    other.write_text(config.read_text().replace("n_train: 32", "n_train: 64"))
    error = sweep_fails(["--config", str(other), *base[2:], "--", "--trainer.max_epochs", "2"], capsys)
    assert "data.n_train" in error and "32" in error and "64" in error
    assert len(no_training) == 2  # nothing ran again
    # The same settings, spelled otherwise (the option moved into the config file), reuse the points.
    moved = tmp_path / "moved.yaml"
    moved.write_text(config.read_text().replace("max_epochs: 1", "max_epochs: 2"))
    sweep_cli.main(["--config", str(moved), *base[2:]])
    assert len(no_training) == 2


# ---- sweep.json: paths relative to the sweep; an unfinished sweep names its missing points -------------


def test_a_moved_sweep_is_read_where_it_is(tmp_path, capsys):
    out = tmp_path / "sweep"
    points = grid_points(parse_grid(["model.l1=0.01,0.1"]))
    for point, val in zip(points, (0.25, 0.75)):
        fake_point(out, point, [[0, 1]], torch.rand(2, 4), val=val)
    (out / "sweep.json").write_text(json.dumps(sweep_cli.sweep_summary(points, out).to_dict()))
    assert [row["run_dir"] for row in json.loads((out / "sweep.json").read_text())["points"]] == [
        p.name for p in points
    ]
    moved = tmp_path / "elsewhere" / "sweep"
    moved.parent.mkdir()
    shutil.copytree(out, moved)
    for point in points:  # the old place now holds other numbers
        (out / point.name / "summary.json").write_text(json.dumps(fake_summary("denoising", "scalar", 0.5, [])))
    report_main([str(moved), "--out", str(tmp_path / "report")])
    text = (tmp_path / "report" / "report.md").read_text()
    assert "| 0.250 |" in text and "| 0.750 |" in text and "| 0.500 |" not in text


def test_an_older_sweep_json_with_absolute_run_directories_is_read_where_the_sweep_is(tmp_path):
    old_place, new_place = tmp_path / "old" / "sweep", tmp_path / "new" / "sweep"
    points = grid_points(parse_grid(["model.l1=0.01"]))
    fake_point(new_place, points[0], [[0, 1]], torch.rand(2, 4), val=0.25)
    summary = sweep_cli.sweep_summary(points, new_place).to_dict()
    summary["points"][0]["run_dir"] = str(old_place / points[0].name)  # as older sweeps wrote it
    read = SweepSummary.from_dict(summary)
    assert read.points[0].directory(new_place) == new_place / points[0].name


def test_the_report_of_an_unfinished_sweep_names_the_missing_points(tmp_path):
    out = tmp_path / "sweep"
    points = grid_points(parse_grid(["model.l1=0.01,0.1,1.0"]))
    fake_point(out, points[1], [[0, 1]], torch.rand(2, 4))
    summary = sweep_cli.sweep_summary(points, out)
    assert summary.missing == ["model.l1=0.01", "model.l1=1.0"]
    (out / "sweep.json").write_text(json.dumps(summary.to_dict()))
    report_main([str(out), "--out", str(tmp_path / "report")])
    text = (tmp_path / "report" / "report.md").read_text()
    assert "1 of 3 points" in text and "`model.l1=0.01`" in text and "`model.l1=1.0`" in text


# ---- a point killed with SIGKILL finishes when the sweep runs again ---------------------------------------


def test_a_point_killed_with_sigkill_resumes_from_its_checkpoint_on_rerun(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    out = tmp_path / "sweep"
    (point,) = grid_points(parse_grid(["model.l1=0.01"]))
    epochs = ["--trainer.max_epochs", "2"]  # 2 steps an epoch: last.ckpt at step 2, the kill at step 3
    kill = ["--trainer.callbacks+=tests.helpers.kill.KillAtStep", "--trainer.callbacks.step", "3"]
    with pytest.raises(Exception, match="failed"):
        run_point(point, config, out, [*epochs, *kill])
    run_dir = out / point.name
    assert (run_dir / "config.yaml").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    run_point(point, config, out, epochs)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 4
    assert "Resuming exactly from the checkpoint's step 2." in (run_dir / "sweep_point.log").read_text()


def test_a_point_killed_before_a_readable_checkpoint_restarts_cleanly_on_rerun(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "sweep"
    (point,) = grid_points(parse_grid(["model.l1=0.01"]))
    run_dir = out / point.name
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.yaml").write_text("seed_everything: 0\n")  # what a kill after the config was saved leaves
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 cut short")  # a kill while saving
    run_point(point, config, out, [])
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 2


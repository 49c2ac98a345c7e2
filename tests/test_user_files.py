"""Issue 24, what the user had: a toy run writes into its run directory and replaces an existing checkpoint only when
asked; the benchmark checks --out before its work and a partial run does not replace a fuller report; a report is
written all or nothing; the report validates the runs it reads. Each test failed on the code before the fix."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

import ioi_superpose.cli.benchmark as benchmark_cli
import ioi_superpose.results.report as report_module
from ioi_superpose.cli.sweep import sweep_summary
from ioi_superpose.cli.sweep_points import grid_points, parse_grid
from ioi_superpose.cli.train_toy import main as toy_main
from ioi_superpose.results.report import main as report_main
from ioi_superpose.results.schema import SUMMARY_CHOICES
from tests.helpers import fake_summary


def fake_run(directory: Path, val: float = 0.9, **fields) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    summary = fake_summary("denoising", "scalar", val, [[0, 1]])
    summary.update(fields)
    (directory / "summary.json").write_text(json.dumps(summary))
    return directory


def fails(main, args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 1
    return capsys.readouterr().err


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


# ---- toy training: the run directory, and an existing checkpoint kept unless asked -----------------------

TOY_CONFIG = """
torch_threads: 1
trainer:
  max_steps: 2
  enable_progress_bar: false
  enable_model_summary: false
  enable_checkpointing: false
  limit_val_batches: 1
  logger:
    class_path: lightning.pytorch.loggers.TensorBoardLogger
    init_args: {save_dir: OTHER, name: toy}
  callbacks:
    - class_path: ioi_superpose.toy.ExportToyModel
      init_args: {path: SHIPPED, eval_size: 64, prompts_per_feature: 8}
model: {n_heads: 2, d_model: 16, d_head: 4}
data:
  class_path: ioi_superpose.toy.SkipTrigramDataModule
  init_args: {kind: single_source, n_b_tokens: 2, batch_size: 16, train_batches: 2, eval_batches: 1}
"""


@pytest.fixture
def toy_setup(tmp_path, monkeypatch):
    """A config like the shipped ones (an export path where a checkpoint already lies) and that checkpoint."""
    monkeypatch.chdir(tmp_path)
    shipped = tmp_path / "checkpoints" / "toy.pt"
    shipped.parent.mkdir()
    shipped.write_bytes(b"the user's trained model")
    shipped.with_suffix(".json").write_text("{}")
    config = tmp_path / "toy.yaml"
    config.write_text(TOY_CONFIG.replace("SHIPPED", str(shipped)).replace("OTHER", str(tmp_path / "other")))
    return config, shipped


def test_a_toy_run_keeps_an_existing_checkpoint_and_writes_its_model_into_its_run_directory(toy_setup, tmp_path,
                                                                                             capsys):  # fmt: skip
    config, shipped = toy_setup
    toy_main(["fit", "--config", str(config)])
    assert shipped.read_bytes() == b"the user's trained model" and shipped.with_suffix(".json").read_text() == "{}"
    (written,) = (tmp_path / "other").rglob("toy.pt")
    assert written.with_suffix(".json").is_file() and written.parent.name == "version_0"
    out = capsys.readouterr().out
    assert f"note: {shipped} exists and is kept" in out and "--replace_checkpoint true" in out


def test_a_toy_run_replaces_an_existing_checkpoint_when_asked(toy_setup, tmp_path):
    config, shipped = toy_setup
    toy_main(["fit", "--config", str(config), "--replace_checkpoint", "true"])
    (written,) = (tmp_path / "other").rglob("toy.pt")
    assert shipped.read_bytes() == written.read_bytes() != b"the user's trained model"


def test_a_toy_run_writes_a_new_export_path(toy_setup, tmp_path):
    config, shipped = toy_setup
    shipped.unlink()
    toy_main(["fit", "--config", str(config)])
    assert shipped.is_file() and shipped.with_suffix(".json").read_text() != "{}"


MIXTURE_CONFIG = """
torch_threads: 1
trainer:
  max_steps: 1
  num_sanity_val_steps: 0
  limit_val_batches: 1
  enable_progress_bar: false
  enable_model_summary: false
  enable_checkpointing: false
  logger:
    class_path: lightning.pytorch.loggers.TensorBoardLogger
    init_args: {save_dir: OTHER, name: mixture}
  callbacks:
    - class_path: ioi_superpose.toy.ExportTaskMixtureModel
      init_args: {path: SHIPPED, eval_size: 8, prompts_per_set: 4}
model: {n_layers: 1, n_heads: 2, d_model: 16, d_head: 4}
data:
  class_path: ioi_superpose.toy.TaskMixtureDataModule
  init_args: {tasks: [ioi, induction, greater_than, agreement], task_weights: [0.4, 0.35, 0.15, 0.1], batch_size: 4,
              train_batches: 2, eval_prompts_per_task: 4}
"""


def test_a_task_mixture_run_keeps_an_existing_checkpoint(toy_setup, tmp_path):
    """ExportTaskMixtureModel added its task scores by loading and rewriting its path, whether or not that file was
    this run's: the user's checkpoint was read as the trained model and written over."""
    _, shipped = toy_setup
    config = tmp_path / "mixture.yaml"
    config.write_text(MIXTURE_CONFIG.replace("SHIPPED", str(shipped)).replace("OTHER", str(tmp_path / "other")))
    toy_main(["fit", "--config", str(config)])
    assert shipped.read_bytes() == b"the user's trained model" and shipped.with_suffix(".json").read_text() == "{}"
    (written,) = (tmp_path / "other").rglob("toy.pt")
    assert "tasks" in json.loads(written.with_suffix(".json").read_text())["metrics"]


def test_the_documented_regeneration_commands_pass_the_replace_flag():
    """Every shipped config exports over its checkpoint in checkpoints/: each command that documents it says so."""
    repo = Path(__file__).resolve().parents[1]
    documents = [repo / "README.md", repo / "checkpoints" / "README.md", *(repo / "experiments").glob("*.yaml"),
                 *(repo / "ioi_superpose").rglob("*.py"), *(repo / "docs").rglob("*.md")]  # fmt: skip
    joined = {path.name: re.sub(r"\"\s*\n\s*\"", "", path.read_text()) for path in documents}  # "…" "…" strings
    commands = [(name, line) for name, text in joined.items() for line in text.splitlines()
                if "train_toy fit --config experiments/" in line]  # fmt: skip
    assert len(commands) >= 10
    for name, line in commands:
        assert "--replace_checkpoint true" in line, (name, line)


# ---- the benchmark: --out checked first; a partial run does not replace a fuller report ------------------


@pytest.fixture
def no_benchmark_work(monkeypatch):
    """The benchmark with its work replaced by a tiny fake report (records the runs it made)."""
    ran = []

    def run_benchmark(config, progress=None):
        ran.append(config)
        return {"config": {"directions": list(config.directions), "rests": list(config.rests)},
                "cases": {name: {} for name in (config.cases or ["or", "and"])}, "rests": {}}  # fmt: skip

    monkeypatch.setattr(benchmark_cli, "run_benchmark", run_benchmark)
    monkeypatch.setattr(benchmark_cli, "markdown", lambda report: f"cases {sorted(report['cases'])}\n")
    return ran


def test_the_benchmark_refuses_an_unwritable_out_before_any_work(tmp_path, no_benchmark_work, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    error = fails(benchmark_cli.main, ["--out", str(a_file / "reports")], capsys)
    assert "--out" in error and str(a_file) in error and no_benchmark_work == []


def test_a_partial_benchmark_run_does_not_replace_a_fuller_report_without_the_flag(tmp_path, no_benchmark_work,
                                                                                     capsys):  # fmt: skip
    out = tmp_path / "reports"
    benchmark_cli.main(["--out", str(out)])  # every case: the fuller report
    fuller = snapshot(out)
    error = fails(benchmark_cli.main, ["--out", str(out), "--cases", "or"], capsys)
    assert "case and" in error and "--replace" in error and len(no_benchmark_work) == 1
    error = fails(benchmark_cli.main, ["--out", str(out), "--directions", "denoising"], capsys)
    assert "direction noising" in error and len(no_benchmark_work) == 1
    assert snapshot(out) == fuller
    benchmark_cli.main(["--out", str(out), "--cases", "or", "--replace"])
    assert json.loads((out / "benchmark.json").read_text())["cases"] == {"or": {}}
    benchmark_cli.main(["--out", str(out), "--cases", "or"])  # no fuller than what is there now
    assert len(no_benchmark_work) == 3


# ---- a report is written all or nothing -----------------------------------------------------------------


def test_a_failed_report_leaves_the_earlier_report_whole(tmp_path, monkeypatch, capsys):
    run = fake_run(tmp_path / "run")
    out = tmp_path / "report"
    report_main([str(run), "--out", str(out)])
    before = snapshot(out)
    assert "report.md" in before and any(name.endswith(".png") for name in before)

    def fail(*args):  # a failure after the figures were drawn, before report.md
        raise OSError("disk full")

    monkeypatch.setattr(report_module, "max_activating_section", fail)
    fake_run(tmp_path / "run", val=0.5)
    fails(report_main, [str(run), "--out", str(out)], capsys)
    assert snapshot(out) == before
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no staging left behind


def test_a_damaged_max_activating_table_is_named_and_the_earlier_report_kept(tmp_path, capsys):
    run = fake_run(tmp_path / "run")
    out = tmp_path / "report"
    report_main([str(run), "--out", str(out)])
    before = snapshot(out)
    (run / "max_activating.json").write_text('{"rows": [')
    error = fails(report_main, [str(run), "--out", str(out)], capsys)
    assert str(run / "max_activating.json") in error and "Traceback" not in error
    assert snapshot(out) == before


def test_a_failed_first_report_leaves_no_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(report_module, "max_activating_section", lambda *args: (_ for _ in ()).throw(OSError("x")))
    fails(report_main, [str(fake_run(tmp_path / "run")), "--out", str(tmp_path / "report")], capsys)
    assert not (tmp_path / "report").exists()


# ---- the report validates what it reads ------------------------------------------------------------------


def test_a_sweep_given_twice_is_one_sweep(tmp_path):
    out = tmp_path / "sweep"
    points = grid_points(parse_grid(["model.direction=denoising,noising"]))
    for point, heads in zip(points, ([[0, 1]], [[0, 1], [1, 0]])):
        run_dir = fake_run(out / point.name, direction=point.name.split("=")[1], support=heads,
                           top_heads=[{"layer": layer, "head": head, "alpha": 1.0} for layer, head in heads])  # fmt: skip
        torch.save({"coefficients": torch.rand(2, 4)}, run_dir / "coefficients.pt")
    (out / "sweep.json").write_text(json.dumps(sweep_summary(points, out).to_dict()))
    report_main([str(out), f"{out}/", "--out", str(tmp_path / "report")])
    text = (tmp_path / "report" / "report.md").read_text()
    section = text.split("## Noising against denoising")[1].split("\n## ")[0]
    assert sum(line.startswith("| sweep | setting |") for line in section.splitlines()) == 1
    assert sum(line.startswith("| sweep | all |") and line.endswith("| 0.50 |") for line in section.splitlines()) == 1


def test_a_run_given_twice_is_one_row(tmp_path):
    """The issue's literal instance (RUN and RUN/). It passed before the fix as well: runs were already counted once;
    the sweep given twice (above) is what doubled rows. Kept so the shared de-duplication covers both."""
    run = fake_run(tmp_path / "runs" / "ioi_superpose" / "version_0", val=0.625)
    report_main([str(run), f"{run}/", "--out", str(tmp_path / "report")])
    text = (tmp_path / "report" / "report.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ioi_superpose/version_0 |")]
    assert rows and len(rows) == len(set(rows))  # one row in each table that lists runs, not two


def test_runs_with_the_same_logger_name_keep_their_own_rows_and_tables(tmp_path):
    runs = []
    for place, val in (("a", 0.25), ("b", 0.75)):
        run = fake_run(tmp_path / place / "runs" / "ioi_superpose" / "version_0", val=val)
        table = {"rows": [{"rank": 1, "set_name": "val", "corruption": "name_swap", "prompt": f"prompt of {place}",
                           "io": "A", "s": "B", "clean_logit_diff": 1.0, "corrupted_logit_diff": -1.0,
                           "patched_logit_diff": 0.5, "move": 1.5, "recovery": 0.75}]}  # fmt: skip
        (run / "max_activating.json").write_text(json.dumps(table))
        (run / "max_activating.md").write_text(f"table of {place}\n")
        runs.append(run)
    report_main([*map(str, runs), "--out", str(tmp_path / "report")])
    text = (tmp_path / "report" / "report.md").read_text()
    assert "prompt of a" in text and "prompt of b" in text
    copies = sorted(p.read_text() for p in (tmp_path / "report" / "max_activating").iterdir())
    assert copies == ["table of a\n", "table of b\n"]
    names = {line.split(" | ")[0] for line in text.splitlines() if line.startswith("| ") and "| 0.250 |" in line}
    names |= {line.split(" | ")[0] for line in text.splitlines() if line.startswith("| ") and "| 0.750 |" in line}
    assert len(names) == 2


@pytest.mark.parametrize(
    "change, named",
    [
        ({"direction": "sideways"}, "direction"),
        ({"l0": "3"}, "l0"),
        ({"recovery": {"val": "0.9", "test": {}}}, "recovery.val"),
        ({"top_heads": [{"layer": -1, "head": 0, "alpha": 1.0}]}, "top_heads layer"),
        ({"support": [["0", 1]]}, "support"),
        ({"combination": "magic"}, "combination"),
        ({"n_heads_total": 0}, "n_heads_total"),
    ],
)
def test_the_report_refuses_an_invalid_summary_field_naming_it(change, named, tmp_path, capsys):
    run = fake_run(tmp_path / "run", **change)
    error = fails(report_main, [str(run), "--out", str(tmp_path / "report")], capsys)
    assert named in error and str(run / "summary.json") in error and not (tmp_path / "report").exists()


def test_the_summary_choices_are_the_engines():
    from ioi_superpose.combinations.registry import ALL_FAMILIES
    from ioi_superpose.engine.rest import RESTS
    from ioi_superpose.engine.vocabulary import DIRECTIONS
    from ioi_superpose.fitting.objectives import OBJECTIVES

    assert SUMMARY_CHOICES == {"direction": DIRECTIONS, "objective": tuple(OBJECTIVES), "rest": RESTS,
                               "combination": ALL_FAMILIES}  # fmt: skip


def test_the_report_refuses_a_sweep_whose_point_is_gone(tmp_path, capsys):
    out = tmp_path / "sweep"
    points = grid_points(parse_grid(["model.l1=0.01"]))
    torch.save({"coefficients": torch.rand(2, 4)}, fake_run(out / points[0].name) / "coefficients.pt")
    (out / "sweep.json").write_text(json.dumps(sweep_summary(points, out).to_dict()))
    shutil.rmtree(out / points[0].name)
    error = fails(report_main, [str(out), "--out", str(tmp_path / "report")], capsys)
    assert points[0].name in error and "summary.json" in error

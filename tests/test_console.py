"""A quiet console: a fit prints our lines (the cache size, the results and where they are), not Lightning's
GPU/TPU lines, its litlogger tip, TransformerLens's device moves or dependencies' deprecation warnings; `validate`
and `test` print one line of named figures per set and log into the checkpoint's own run directory; an API call
prints nothing of its own."""

from __future__ import annotations

import os
import subprocess
import sys

from ioi_superpose import learn_combination
from ioi_superpose.data import ioi_prompts
from tests.helpers import QUIET, REPO, TOY_IOI, run_cli

NOISE = ("GPU available", "TPU available", "litlogger", "Seed set", "Moving model", "Changing model dtype",
         "Warning", "deprecated", "LeafSpec", "┏━", "Trainable params")  # fmt: skip
SMALL_MAIN_JOB = ["--data.n_train", "64", "--data.n_val", "32", "--data.n_test", "16", "--data.batch_size", "32",
                  "--max_activating.per_set", "4", "--trainer.max_epochs", "2"]  # fmt: skip


def test_the_main_jobs_console_output_fits_on_one_screen_without_dependency_noise(tmp_path):
    """The documented main job (small settings) as a user runs it: stdout and stderr together."""
    result = subprocess.run(
        [sys.executable, "-m", "ioi_superpose.train", "fit", "--config", str(REPO / "experiments" / "toy_ioi.yaml"),
         *SMALL_MAIN_JOB, "--model.model_name", TOY_IOI],
        cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert [line for line in output.splitlines() if any(noise in line for noise in NOISE)] == []
    assert output.count("Reference cache:") == 1 and "Learned α: L0 = " in output
    assert len(output.splitlines()) <= 16, output  # the old output was 36 lines (13 of them a model summary table)


def test_validate_and_test_print_named_figures_per_set_into_the_runs_own_directory(tmp_path, monkeypatch, capsys):
    args = ["--model.model_name", TOY_IOI, "--data.n_train", "32", "--data.n_val", "16", "--data.n_test", "16",
            "--data.batch_size", "16", "--data.off_distribution", "[held_out_names,objects_as_names]",
            "--max_activating.per_set", "0", *QUIET]  # fmt: skip
    run_cli(["fit", *args, "--trainer.max_epochs", "1"], tmp_path, monkeypatch)
    run = tmp_path / "runs" / "ioi_superpose" / "version_0"
    config = (run / "config.yaml").read_text()
    capsys.readouterr()
    run_cli(["test", *args, "--ckpt_path", str(run / "checkpoints" / "last.ckpt")], tmp_path, monkeypatch)
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()}
    assert rows["set"][:2] == ["recovery", "clean"]
    assert set(rows) >= {"in_distribution", "held_out_names", "objects_as_names"}
    assert rows["objects_as_names"][0] == "n/a"  # the model does not tell clean from corrupted there
    assert "Test metric" not in out and "DataLoader" not in out  # Lightning's per-dataloader tables
    run_cli(["validate", *args, "--ckpt_path", str(run / "checkpoints" / "last.ckpt")], tmp_path, monkeypatch)
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines() if line.startswith("val ")] == ["val"]
    assert f"logged to       {run.relative_to(tmp_path)}" in out
    assert sorted(path.name for path in run.parent.iterdir()) == ["version_0"]  # no version_1, version_2
    assert (run / "config.yaml").read_text() == config  # the fit's record is kept


def test_an_api_call_prints_nothing_of_its_own(capsys):
    prompts = ioi_prompts(TOY_IOI, n=8, seed=0)
    from ioi_superpose.models import load_frozen_model

    model = load_frozen_model(TOY_IOI)
    learn_combination(model, prompts.clean_tokens, prompts.corrupted_tokens, prompts.answer_tokens, steps=2)
    captured = capsys.readouterr()
    assert captured.out == "" and "Reference cache" not in captured.err and "GPU available" not in captured.err

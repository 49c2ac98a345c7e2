"""Exact resume (issue 24, item 1): every checkpoint a run writes — at a training batch's end, an epoch's end, a
validation's end (mid-epoch too), a `max_steps` stop, a Ctrl-C — resumes to the uninterrupted run's α, Adam state,
step and epoch. Each run here is 4 batches per epoch (64 prompts, batch 16)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

from ioi_superpose.callbacks.resume import align_loop_state
from tests.helpers import QUIET, TOY_IOI, run_cli

ARGS = ["fit", "--model.model_name", TOY_IOI, "--data.n_train", "64", "--data.n_val", "16", "--data.n_test", "8",
        "--data.batch_size", "16", "--data.off_distribution", "[]", "--max_activating.per_set", "0", *QUIET]  # fmt: skip
KEEP = "--trainer.callbacks+=tests.helpers.keep_checkpoints.KeepCheckpoints"


def fit(args: list[str], directory: Path, monkeypatch) -> Path:
    """Run `fit` in `directory`; its run directory (always version_0: each run gets a directory of its own)."""
    directory.mkdir(parents=True)
    run_cli([*ARGS, *args], directory, monkeypatch)
    return directory / "runs" / "ioi_superpose" / "version_0"


def final_state(run_dir: Path) -> dict:
    coefficients = torch.load(run_dir / "coefficients.pt")["coefficients"]
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    adam = checkpoint["optimizer_states"][0]["state"][0]
    return {"alpha": coefficients, "exp_avg": adam["exp_avg"], "exp_avg_sq": adam["exp_avg_sq"],
            "step": checkpoint["global_step"], "epoch": checkpoint["epoch"]}  # fmt: skip


def assert_same_final_state(resumed: Path, uninterrupted: Path) -> None:
    got, expected = final_state(resumed), final_state(uninterrupted)
    assert (got["step"], got["epoch"]) == (expected["step"], expected["epoch"])
    for key in ("alpha", "exp_avg", "exp_avg_sq"):
        assert torch.equal(got[key], expected[key]), key


@pytest.mark.parametrize(
    "schedule",
    [
        # max_steps: Lightning treats every load as a restart; epoch-end and max_steps-stop saves failed before.
        ["--trainer.max_steps", "10", "--trainer.max_epochs", "200", "--checkpoint.every_n_train_steps", "3"],
        # validation three batches into each 4-batch epoch: mid-epoch validation-end saves.
        ["--trainer.max_epochs", "3", "--trainer.val_check_interval", "3"],
    ],
    ids=["max_steps", "mid_epoch_validation"],
)
def test_every_checkpoint_a_run_writes_resumes_to_the_uninterrupted_run(schedule, tmp_path, monkeypatch):
    full = fit([*schedule, "--checkpoint.save_top_k", "-1", KEEP], tmp_path / "full", monkeypatch)
    kept = sorted((full / "checkpoints" / "kept").iterdir())
    assert len(kept) >= 5, [path.name for path in kept]
    final_step = final_state(full)["step"]
    for index, checkpoint in enumerate(kept):
        step = torch.load(checkpoint, weights_only=False)["global_step"]
        resumed = fit([*schedule, "--ckpt_path", str(checkpoint)], tmp_path / f"resumed_{index}", monkeypatch)
        if step < final_step:  # a checkpoint of the last step resumes to no step, and writes no new checkpoint
            assert_same_final_state(resumed, full)
        else:
            assert torch.equal(final_state(full)["alpha"], torch.load(resumed / "coefficients.pt")["coefficients"])


def test_extending_a_finished_max_steps_run_equals_the_longer_run(tmp_path, monkeypatch):
    """10 steps stop mid-epoch (epoch 2, batch 2); extended to 14 they continue that epoch, as a 14-step run does."""
    steps = ["--trainer.max_epochs", "200"]
    short = fit([*steps, "--trainer.max_steps", "10"], tmp_path / "short", monkeypatch)
    extended = fit([*steps, "--trainer.max_steps", "14", "--ckpt_path", str(short / "checkpoints" / "last.ckpt")],
                   tmp_path / "extended", monkeypatch)  # fmt: skip
    assert_same_final_state(extended, fit([*steps, "--trainer.max_steps", "14"], tmp_path / "long", monkeypatch))


def test_ctrl_c_saves_the_step_it_stopped_at_and_resumes_exactly(tmp_path, monkeypatch, capsys):
    schedule = ["--trainer.max_steps", "10", "--trainer.max_epochs", "200"]
    handler = signal.getsignal(signal.SIGINT)  # Lightning ignores SIGINT after a Ctrl-C: restore it
    try:
        with pytest.raises(SystemExit):
            fit([*schedule, "--trainer.callbacks+=tests.helpers.kill.InterruptAtStep", "--trainer.callbacks.step", "7"],
                tmp_path / "stopped", monkeypatch)  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, handler)
    last = tmp_path / "stopped" / "runs" / "ioi_superpose" / "version_0" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 7  # not the epoch-end save at step 4
    error = capsys.readouterr().err
    assert f"Stopped at step 7; step 7 is saved in {last.relative_to(tmp_path / 'stopped')}" in error
    resumed = fit([*schedule, "--ckpt_path", str(last)], tmp_path / "resumed", monkeypatch)
    assert_same_final_state(resumed, fit(schedule, tmp_path / "uninterrupted", monkeypatch))


def test_alignment_refuses_a_loader_position_that_contradicts_the_step():
    from ioi_superpose.errors import ConfigError

    checkpoint = {"global_step": 6, "loops": {"fit_loop": {"state_dict": {"combined_loader": [
        {"epoch": 0, "batches_yielded": 2, "batch_size": 16, "num_replicas": 1, "num_samples": 64}]}}}}  # fmt: skip
    with pytest.raises(ConfigError, match="does not match its optimiser step 6"):
        align_loop_state(checkpoint, batches=4)


def test_accumulated_gradients_are_refused_before_training(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit):
        fit(["--trainer.max_steps", "2", "--trainer.accumulate_grad_batches", "2"], tmp_path / "run", monkeypatch)
    assert "--trainer.accumulate_grad_batches 2 is not supported" in capsys.readouterr().err

import json

import pytest
import torch

from tests.helpers import QUIET, REPO, SMALL, TOY_IOI, run_cli


def test_fast_dev_run_trains_one_step_and_writes_nothing(tiny_gpt2_dir, tmp_path, monkeypatch, capsys):
    run_cli(
        ["fit", "--model.model_name", str(tiny_gpt2_dir), *SMALL, *QUIET, "--trainer.fast_dev_run", "true"],
        tmp_path,
        monkeypatch,
    )
    assert "results not written" in capsys.readouterr().out
    assert not list(tmp_path.rglob("summary.json"))
    (checkpoint,) = tmp_path.rglob("last.ckpt")  # Lightning still runs an explicit ModelCheckpoint's save_last
    assert torch.load(checkpoint, weights_only=False)["global_step"] == 1


@pytest.mark.smoke
def test_fit_writes_summary_and_coefficients(tiny_gpt2_dir, tmp_path, monkeypatch, capsys):
    run_cli(
        ["fit", "--model.model_name", str(tiny_gpt2_dir), *SMALL, *QUIET, "--trainer.max_epochs", "2"],
        tmp_path,
        monkeypatch,
    )
    run_dir = tmp_path / "runs" / "ioi_superpose" / "version_0"
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("recovery", "clean_logit_diff", "corrupted_logit_diff", "clean_accuracy", "l0", "top_heads", "config"):
        assert key in summary
    from ioi_superpose.data.datamodule import OFF_DISTRIBUTION_SETS

    assert set(summary["recovery"]["test"]) == {"in_distribution", *OFF_DISTRIBUTION_SETS}
    for name, value in summary["recovery"]["test"].items():  # null only where clean ≈ corrupted
        metrics = summary["test"][name]
        small_gap = abs(metrics["clean_logit_diff"] - metrics["corrupted_logit_diff"]) < summary["min_gap_for_recovery"]
        assert (value is None) == small_gap and isinstance(metrics["recovery"], float)
    assert summary["config"]["model"]["model_name"] == str(tiny_gpt2_dir)
    saved = torch.load(run_dir / "coefficients.pt")
    assert saved["coefficients"].shape == (2, 4)
    assert summary["l0"] == int((saved["coefficients"].abs() > summary["l0_threshold"]).sum())
    assert (run_dir / "checkpoints" / "last.ckpt").exists()
    assert (run_dir / "coefficients.png").stat().st_size > 1000
    assert "runs/ioi_superpose/version_0/summary.json" in capsys.readouterr().out


def test_fit_resumes_from_a_checkpoint(tiny_gpt2_dir, tmp_path, monkeypatch):
    args = ["fit", "--model.model_name", str(tiny_gpt2_dir), *SMALL, *QUIET]
    run_cli([*args, "--trainer.max_epochs", "1"], tmp_path, monkeypatch)
    last = tmp_path / "runs" / "ioi_superpose" / "version_0" / "checkpoints" / "last.ckpt"
    first_alpha = torch.load(last, weights_only=False)["state_dict"]["combination.coefficients"]
    run_cli([*args, "--trainer.max_epochs", "2", "--ckpt_path", str(last)], tmp_path, monkeypatch)
    resumed = torch.load(last, weights_only=False)  # the resumed run writes into its own directory
    assert not (tmp_path / "runs" / "ioi_superpose" / "version_1").exists()
    assert resumed["global_step"] == 4  # 2 steps per epoch, continued from step 2
    assert not torch.equal(resumed["state_dict"]["combination.coefficients"], first_alpha)


@pytest.mark.parametrize(
    "option, value, message",
    [("--model.l1", "-1", "--model.l1 must be >= 0"), ("--model.lr", "0", "--model.lr must be > 0")],
)
def test_bad_options_exit_non_zero_with_a_message(tiny_gpt2_dir, tmp_path, monkeypatch, capsys, option, value, message):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["fit", "--model.model_name", str(tiny_gpt2_dir), *SMALL, option, value], tmp_path, monkeypatch)
    assert exit_info.value.code == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_missing_weights_offline_exit_with_the_fix(empty_hf_cache, tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["fit", "--model.model_name", "gpt2-small", *SMALL], tmp_path, monkeypatch)
    assert exit_info.value.code == 1
    error = capsys.readouterr().err
    assert "not in the local Hugging Face cache" in error and "Traceback" not in error


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tiny_gpt2_dir, tmp_path, monkeypatch, capsys):
    from ioi_superpose.training.system import HeadSuperposition

    original = HeadSuperposition.terms_of  # what every training step's loss comes from (K >= 1 members)

    def poisoned(self, *args, **options):
        terms = original(self, *args, **options)
        if self.training and self.global_step >= 3:
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(HeadSuperposition, "terms_of", poisoned)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(
            ["fit", "--model.model_name", str(tiny_gpt2_dir), *SMALL, *QUIET, "--trainer.max_epochs", "3"],
            tmp_path,
            monkeypatch,
        )
    assert exit_info.value.code == 1
    assert "at training step 3" in capsys.readouterr().err
    run_dir = tmp_path / "runs" / "ioi_superpose" / "version_0"
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 2
    assert torch.isfinite(checkpoint["state_dict"]["combination.coefficients"]).all()
    assert not (run_dir / "summary.json").exists()




def test_summary_recovery_is_what_the_saved_alpha_gives_on_the_validation_prompts(tiny_gpt2_dir, tmp_path, monkeypatch):
    from ioi_superpose.data.datamodule import IOIDataModule
    from ioi_superpose.engine.runs import recovery_of
    from ioi_superpose.models import load_frozen_model

    run_cli(
        ["fit", "--model.model_name", str(tiny_gpt2_dir), *SMALL, *QUIET, "--trainer.max_epochs", "2"],
        tmp_path,
        monkeypatch,
    )
    run_dir = tmp_path / "runs" / "ioi_superpose" / "version_0"
    summary = json.loads((run_dir / "summary.json").read_text())
    alpha = torch.load(run_dir / "coefficients.pt")["coefficients"]
    data = IOIDataModule(model_name=str(tiny_gpt2_dir), n_train=32, n_val=16, n_test=8, batch_size=16)
    data.setup("fit")
    val = data.splits["val"].trimmed()
    recovery = recovery_of(load_frozen_model(str(tiny_gpt2_dir)), val, alpha, "denoising")
    assert summary["val"]["recovery"] == pytest.approx(float(recovery), abs=1e-4)
    assert not torch.equal(alpha, torch.ones_like(alpha))  # training moved α: the check is not of α = 1


def test_a_checkpoint_of_another_model_is_refused_naming_both(tiny_gpt2_dir, tmp_path, monkeypatch, capsys):
    run_cli(
        ["fit", "--model.model_name", str(tiny_gpt2_dir), *SMALL, *QUIET, "--trainer.max_epochs", "1"],
        tmp_path,
        monkeypatch,
    )
    last = tmp_path / "runs" / "ioi_superpose" / "version_0" / "checkpoints" / "last.ckpt"
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["fit", "--model.model_name", TOY_IOI, *SMALL, *QUIET, "--ckpt_path", str(last)], tmp_path, monkeypatch)
    assert exit_info.value.code == 1
    error = capsys.readouterr().err
    assert str(tiny_gpt2_dir) in error and TOY_IOI in error and "--model.model_name" in error
    assert not (tmp_path / "runs" / "ioi_superpose" / "version_1").exists()


def test_a_truncated_checkpoint_is_a_clear_error(tiny_gpt2_dir, tmp_path, monkeypatch, capsys):
    run_cli(
        ["fit", "--model.model_name", str(tiny_gpt2_dir), *SMALL, *QUIET, "--trainer.max_epochs", "1"],
        tmp_path,
        monkeypatch,
    )
    last = tmp_path / "runs" / "ioi_superpose" / "version_0" / "checkpoints" / "last.ckpt"
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(last.read_bytes()[:2000])
    with pytest.raises(SystemExit) as exit_info:
        run_cli(
            ["fit", "--model.model_name", str(tiny_gpt2_dir), *SMALL, *QUIET, "--ckpt_path", str(truncated)],
            tmp_path,
            monkeypatch,
        )
    assert exit_info.value.code == 1
    error = capsys.readouterr().err
    assert "not a readable checkpoint" in error and "Traceback" not in error


def test_an_uncreatable_run_directory_is_a_clear_error(tiny_gpt2_dir, tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(
            [
                "fit",
                "--model.model_name",
                str(tiny_gpt2_dir),
                *SMALL,
                *QUIET,
                "--trainer.logger.init_args.save_dir",
                "/proc/x",
            ],
            tmp_path,
            monkeypatch,
        )
    assert exit_info.value.code == 1
    error = capsys.readouterr().err
    assert "/proc/x cannot be created" in error and "--trainer.logger.init_args.save_dir" in error


def subprocess_fit(args, cwd):
    """`python -m ioi_superpose.train fit ARGS` in `cwd`, one torch thread, the repository importable."""
    import os
    import subprocess
    import sys

    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "ioi_superpose.train", "fit", *args],
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process, timeout=300):
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_runs_alpha(tmp_path):
    """SIGKILL (tests/helpers/kill.py, a test hook) right after the mid-epoch checkpoint of step 7 (5 steps
    per epoch: epoch 1, batch 2), then `--ckpt_path last.ckpt`: α, Adam's state and the step equal an
    uninterrupted run's. The loader's position is in the checkpoint; the λ warm-up reads the restored step."""
    args = ["--model.model_name", TOY_IOI, "--data.n_train", "80", "--data.n_val", "16", "--data.n_test", "8",
            "--data.batch_size", "16", "--data.off_distribution", "[]", "--trainer.max_epochs", "3",
            "--model.l1_warmup_steps", "10", "--checkpoint.every_n_train_steps", "7", *QUIET]  # fmt: skip
    uninterrupted = subprocess_fit(args, tmp_path / "uninterrupted")
    killed = subprocess_fit([*args, "--trainer.callbacks+=tests.helpers.kill.KillAtStep", "--trainer.callbacks.step", "7"],
                            tmp_path / "resumed")  # fmt: skip
    returncode, output = finish(killed)
    assert returncode == -9, output[-3000:]
    last = tmp_path / "resumed" / "runs" / "ioi_superpose" / "version_0" / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=False)
    assert saved["global_step"] == 7
    assert saved["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]["batches_yielded"] == 2  # mid-epoch
    returncode, output = finish(subprocess_fit([*args, "--ckpt_path", str(last)], tmp_path / "resumed"))
    assert returncode == 0, output[-3000:]
    assert "not resumable" not in output
    returncode, output = finish(uninterrupted)
    assert returncode == 0, output[-3000:]

    def run_dir(directory, version):
        return directory / "runs" / "ioi_superpose" / version

    expected_dir, resumed_dir = (
        run_dir(tmp_path / "uninterrupted", "version_0"),
        run_dir(tmp_path / "resumed", "version_0"),  # a resumed run continues in its own directory
    )
    expected_alpha = torch.load(expected_dir / "coefficients.pt")["coefficients"]  # after all 15 steps
    assert not torch.equal(expected_alpha, torch.ones_like(expected_alpha))
    torch.testing.assert_close(
        torch.load(resumed_dir / "coefficients.pt")["coefficients"], expected_alpha, atol=1e-6, rtol=0
    )
    # last.ckpt is the final state (step 15, written at the last epoch's end): Adam's moments too.
    expected = torch.load(expected_dir / "checkpoints" / "last.ckpt", weights_only=False)
    resumed = torch.load(resumed_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert resumed["global_step"] == expected["global_step"] == 15
    for key in ("step", "exp_avg", "exp_avg_sq"):
        torch.testing.assert_close(resumed["optimizer_states"][0]["state"][0][key],
                                   expected["optimizer_states"][0]["state"][0][key], atol=1e-6, rtol=0)  # fmt: skip


def test_ddp_with_every_main_job_callback_equals_one_process_with_exact_evaluation_sums(tmp_path):
    """Two CPU processes (gloo) at batch 16 with every callback of experiments/toy_ioi.yaml on (this hung at
    fit end) train exactly as one process at batch 32: the objectives are not means over prompts, so the
    training loss is the global batch's (statistics summed across ranks). An odd number of validation
    prompts, which the sampler must not pad: the α-independent clean and corrupted logit differences must
    equal those of one process over the same prompts, and every evaluation sum the one process's."""
    from ioi_superpose.data.datamodule import IOIDataModule
    from ioi_superpose.engine.metric import logit_diff
    from ioi_superpose.engine.runs import end_logits
    from ioi_superpose.models import load_frozen_model

    args = ["--config", str(REPO / "experiments" / "toy_ioi.yaml"), "--model.model_name", TOY_IOI,
            "--data.n_train", "64", "--data.n_val", "33", "--data.n_test", "16", "--trainer.max_epochs", "2",
            "--model.l1", "0.02", *QUIET, "--trainer.accelerator", "cpu",
            # Two off-distribution sets, not eight: each set runs the same sharded evaluation code (the sum over
            # ranks is what is checked), and every set added cost the three processes its curves and metrics.
            "--data.off_distribution", "[held_out_names,objects_as_names]"]  # fmt: skip
    ddp = subprocess_fit([*args, "--data.batch_size", "16", "--trainer.devices", "2", "--trainer.strategy", "ddp"],
                         tmp_path / "ddp")  # fmt: skip
    returncode, output = finish(ddp)
    assert returncode == 0, output[-3000:]
    one = subprocess_fit([*args, "--data.batch_size", "32", "--trainer.devices", "1"], tmp_path / "one")
    summaries = list((tmp_path / "ddp" / "runs").rglob("summary.json"))
    assert len(summaries) == 1
    summary = json.loads(summaries[0].read_text())
    assert str(summary["config"]["trainer"]["devices"]) == "2"
    assert set(summary["baselines"]) == {
        "direct_logit_attribution",
        "activation_patching",
        "attribution_patching",
        "path_patching",
        "combinations",
    }
    assert (summaries[0].parent / "baselines" / "combinations_recovery.png").exists()
    data = IOIDataModule(model_name=TOY_IOI, n_train=64, n_val=33, n_test=16)
    data.setup("fit")
    val = data.splits["val"]
    model = load_frozen_model(TOY_IOI)
    for key, tokens in (("clean_logit_diff", val.clean_tokens), ("corrupted_logit_diff", val.corrupted_tokens)):
        expected = float(logit_diff(end_logits(model, tokens, val.end_pos, val.answer_tokens)).mean())
        assert summary[key] == pytest.approx(expected, abs=1e-4)

    returncode, output = finish(one)
    assert returncode == 0, output[-3000:]
    (one_summary,) = (tmp_path / "one" / "runs").rglob("summary.json")
    single = json.loads(one_summary.read_text())
    alpha = torch.load(summaries[0].parent / "coefficients.pt")["coefficients"]
    single_alpha = torch.load(one_summary.parent / "coefficients.pt")["coefficients"]
    assert not torch.equal(single_alpha, torch.ones_like(single_alpha))
    torch.testing.assert_close(alpha, single_alpha, atol=1e-5, rtol=0)
    assert summary["recovery"]["val"] == pytest.approx(single["recovery"]["val"], abs=1e-5)
    assert summary["val"]["loss"] == pytest.approx(single["val"]["loss"], abs=1e-5)  # the whole set's loss
    for name, value in single["recovery"]["test"].items():
        assert summary["recovery"]["test"][name] == pytest.approx(value, abs=1e-5)


def test_last_ckpt_is_the_final_state_even_when_the_last_epoch_is_not_the_best(tiny_gpt2_dir, tmp_path, monkeypatch):
    # The monitored λ rises every step under warm-up, so with mode min only the first epoch is "best".
    # Stock Lightning 2.6 would leave last.ckpt at that epoch's step; it must hold the final step and α.
    run_cli(
        ["fit", "--model.model_name", str(tiny_gpt2_dir), *SMALL, *QUIET, "--trainer.max_epochs", "3",
         "--model.l1_warmup_steps", "100", "--checkpoint.monitor", "train/l1_weight", "--checkpoint.mode", "min",
         "--max_activating.per_set", "0"],
        tmp_path,
        monkeypatch,
    )  # fmt: skip
    run_dir = tmp_path / "runs" / "ioi_superpose" / "version_0"
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    (best,) = [path for path in (run_dir / "checkpoints").glob("*.ckpt") if path.name != "last.ckpt"]
    assert torch.load(best, weights_only=False)["global_step"] == 2  # 32 prompts / 16 per batch: epoch 0
    assert last["global_step"] == 6
    final = torch.load(run_dir / "coefficients.pt")["coefficients"]
    assert torch.equal(last["state_dict"]["combination.coefficients"], final)

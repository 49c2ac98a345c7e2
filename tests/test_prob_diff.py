"""The probability difference (greater-than's metric) through the engine and every method, against TransformerLens
computed by hand: softmax of the full logits at END, summed over the answer sets (data/answer_metrics.py)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from transformer_lens import patching as tl_patching

from ioi_superpose.analyses.circuit import circuit_scores
from ioi_superpose.analyses.exhaustive import patched_logit_diffs
from ioi_superpose.api import learn_combination
from ioi_superpose.baselines.circuit import acdc, eap_ig_scores
from ioi_superpose.baselines.logit_attribution import direct_logit_attribution
from ioi_superpose.baselines.path_patching import path_patch_sweep
from ioi_superpose.baselines.scorers import (
    activation_patching,
    attribution_patching,
    direct_logit_attribution_of_heads,
    patching_metric,
    path_patching,
)
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.engine.metric import MIN_GAPS, ContrastMetric, answer_metric, has_gap
from ioi_superpose.engine.patch import HeadWeights
from ioi_superpose.engine.runs import BaseRun, head_z, patched_end_logits, recovery_of, reference_runs
from ioi_superpose.errors import ConfigError
from ioi_superpose.models import HookedTransformer, load_frozen_model, load_tokenizer
from ioi_superpose.results.evaluation_table import evaluation_table
from ioi_superpose.results.summary import recovery_or_none
from ioi_superpose.tasks.datamodule import TaskDataModule
from ioi_superpose.tasks.registry import make_task
from tests.helpers import QUIET, run_cli


@pytest.fixture(scope="module")
def years_model(tiny_gpt2_dir: Path) -> HookedTransformer:
    """The random GPT-2-vocabulary model with its unembedding sharpened and the year tokens favoured, so that the
    answer sets hold most of the probability at END and their difference moves with the inputs."""
    model = load_frozen_model(str(tiny_gpt2_dir))
    years = make_task("greater_than").splits(load_tokenizer(str(tiny_gpt2_dir)), {"val": 4}, 0)["val"].batch
    with torch.no_grad():
        model.W_U.mul_(30.0)
        model.b_U[years.answer_tokens[0].unique()] += 10.0
    return model


@pytest.fixture(scope="module")
def years(tiny_gpt2_dir: Path) -> ContrastBatch:
    return make_task("greater_than").splits(load_tokenizer(str(tiny_gpt2_dir)), {"val": 12}, seed=0)["val"].batch


def by_hand(model: HookedTransformer, tokens: torch.Tensor, batch: ContrastBatch, hooks=()) -> torch.Tensor:
    """P(correct set) − P(incorrect set) per prompt: softmax of TransformerLens's logits at END, summed by hand."""
    with torch.no_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=list(hooks))
    probabilities = logits[torch.arange(len(batch)), batch.end_pos].softmax(-1)
    correct, incorrect = batch.answer_weights > 0, batch.answer_weights < 0
    answers = probabilities.gather(-1, batch.answer_tokens)
    return (answers * correct).sum(-1) - (answers * incorrect).sum(-1)


def mixing_hooks(model: HookedTransformer, alpha: torch.Tensor, source_tokens: torch.Tensor) -> list:
    """z ← z + α (z_source − z) on every head at every position, as TransformerLens hooks."""
    _, cache = model.run_with_cache(source_tokens)

    def mix(z: torch.Tensor, hook) -> torch.Tensor:
        return z + alpha[hook.layer()][None, None, :, None] * (cache[hook.name] - z)

    return [(f"blocks.{layer}.attn.hook_z", mix) for layer in range(model.cfg.n_layers)]


def test_greater_than_is_a_task_the_datamodule_takes(tiny_gpt2_dir: Path) -> None:
    datamodule = TaskDataModule(task="greater_than", model_name=str(tiny_gpt2_dir), n_train=8, n_val=4, n_test=4)
    datamodule.setup("fit")
    batch = datamodule.splits["train"]
    assert batch.metric == "prob_diff" and batch.answer_weights is not None
    assert batch[:2].metric == "prob_diff"  # slices and collated batches keep it


def test_the_prompts_tell_clean_from_corrupted(years_model, years) -> None:
    clean, corrupted = by_hand(years_model, years.clean_tokens, years), by_hand(years_model, years.corrupted_tokens, years)
    assert (clean - corrupted).abs().max() > 0.05  # the checks below compare values that differ


@pytest.mark.parametrize("runner", ["hooks", "fast"])
def test_patched_prob_diff_equals_transformer_lens_by_hand(years_model, years, runner) -> None:
    model = years_model
    alpha = torch.rand(model.cfg.n_layers, model.cfg.n_heads, generator=torch.Generator().manual_seed(0))
    expected = by_hand(model, years.corrupted_tokens, years, mixing_hooks(model, alpha, years.clean_tokens))
    with torch.no_grad():
        source_z, _ = head_z(model, years.clean_tokens)
        base = BaseRun.prepare(model, years.corrupted_tokens)
        values = patched_end_logits(base, source_z, HeadWeights(alpha[None]), years.end_pos, years.answer_tokens,
                                    runner=runner, metric="prob_diff")[0]  # fmt: skip
    ours = answer_metric(values, years.answer_weights, "prob_diff")
    assert torch.allclose(ours, expected, atol=1e-5)
    # The reference runs read the same values, and recovery normalises them between the two runs.
    reference = reference_runs(model, years.clean_tokens, years.corrupted_tokens, years.end_pos, years.answer_tokens,
                               "denoising", runner=runner, answer_weights=years.answer_weights, metric="prob_diff")  # fmt: skip
    clean, corrupted = by_hand(model, years.clean_tokens, years), by_hand(model, years.corrupted_tokens, years)
    assert torch.allclose(reference.measure(reference.source_answer_logits), clean, atol=1e-5)
    assert torch.allclose(reference.measure(reference.base_answer_logits), corrupted, atol=1e-5)
    hand_recovery = (expected.mean() - corrupted.mean()) / (clean.mean() - corrupted.mean())
    assert float(recovery_of(model, years, alpha)) == pytest.approx(float(hand_recovery), abs=1e-4)


def test_exhaustive_subsets_read_the_prob_diff(years_model, years) -> None:
    model = years_model
    subsets = torch.zeros(3, model.cfg.n_layers, model.cfg.n_heads, dtype=torch.bool)
    subsets[1, 0, 2] = subsets[2, 1] = True
    expected = torch.stack([by_hand(model, years.corrupted_tokens, years,
                                    mixing_hooks(model, subset.float(), years.clean_tokens)).mean() for subset in subsets])  # fmt: skip
    assert torch.allclose(patched_logit_diffs(model, years, subsets), expected, atol=1e-5)
    assert (expected - expected[0]).abs().max() > 1e-3


def test_activation_patching_equals_transformer_lens_under_the_prob_metric(years_model, years) -> None:
    model = years_model
    clean, corrupted = by_hand(model, years.clean_tokens, years), by_hand(model, years.corrupted_tokens, years)

    def hand_metric(logits: torch.Tensor) -> torch.Tensor:
        probabilities = logits[torch.arange(len(years)), years.end_pos].softmax(-1).gather(-1, years.answer_tokens)
        value = (probabilities * years.answer_weights.sign()).sum(-1).mean()
        return (value - corrupted.mean()) / (clean.mean() - corrupted.mean())

    with torch.no_grad():
        _, clean_cache = model.run_with_cache(years.clean_tokens)
        expected = tl_patching.get_act_patch_attn_head_out_all_pos(model, years.corrupted_tokens, clean_cache,
                                                                   hand_metric)  # fmt: skip
    ours = activation_patching(model, years, "denoising")
    assert expected.abs().max() > 0.05
    assert torch.allclose(ours, expected, atol=1e-4)
    # The project's patching metric gives TransformerLens's sweep the same values.
    metric = ContrastMetric(years.answer_tokens, years.end_pos, float(corrupted.mean()), float(clean.mean()),
                            years.answer_weights, "prob_diff")  # fmt: skip
    with torch.no_grad():
        again = tl_patching.get_act_patch_attn_head_out_all_pos(model, years.corrupted_tokens, clean_cache, metric)
    assert torch.allclose(again, expected, atol=1e-5)


def test_eap_ig_of_one_step_is_attribution_patching_of_the_prob_diff(years_model, years) -> None:
    one_step = eap_ig_scores(years_model, years, "denoising", steps=1)
    attribution = attribution_patching(years_model, years, "denoising")
    assert one_step.abs().max() > 1e-3
    assert torch.allclose(one_step, attribution.to(one_step), atol=1e-4)


def test_path_patching_reads_the_answer_values_as_the_full_logits_give_them(years_model, years) -> None:
    # The project's metric takes the sweep's fast path (the answers' log-probabilities at END only); a black-box
    # callable on the full logits takes TransformerLens's. Both must give the same scores.
    ours = path_patching(years_model, years, "denoising")
    metric = patching_metric(years_model, years, "denoising")
    black_box = path_patch_sweep(years_model, years.corrupted_tokens, years.clean_tokens, "logits",
                                 lambda logits: metric(logits))  # fmt: skip
    assert ours.abs().max() > 1e-2
    assert torch.allclose(ours, black_box, atol=1e-5)


def test_acdc_and_the_circuit_criteria_measure_the_prob_diff_as_by_hand(years_model, years) -> None:
    model = years_model
    _, corrupted_cache = model.run_with_cache(years.corrupted_tokens)
    clean, corrupted = by_hand(model, years.clean_tokens, years), by_hand(model, years.corrupted_tokens, years)

    def frozen_except(kept: set) -> list:
        """Every head outside `kept` holds its corrupted-run z, on the clean prompts (ACDC's circuit, denoising)."""
        def hook(z: torch.Tensor, hook) -> torch.Tensor:
            z = z.clone()
            for head in range(model.cfg.n_heads):
                if (hook.layer(), head) not in kept:
                    z[:, :, head] = corrupted_cache[hook.name][:, :, head]
            return z

        return [(f"blocks.{layer}.attn.hook_z", hook) for layer in range(model.cfg.n_layers)]

    # ACDC with a τ above every increase removes every head: its metric is then that empty circuit's.
    empty = by_hand(model, years.clean_tokens, years, frozen_except(set())).mean()
    result = acdc(model, years, "denoising", tau=1e9, metric="logit_diff")
    assert not result.kept.any()
    expected = abs(float(empty - clean.mean())) / abs(float(clean.mean() - corrupted.mean()))
    assert result.metric == pytest.approx(expected, abs=1e-4)
    # Circuit criteria: F(circuit) with the heads outside it at their corrupted z (the `corrupted` ablation).
    scores = circuit_scores(model, [(1, 0), (0, 3)], years)
    circuit = by_hand(model, years.clean_tokens, years, frozen_except({(1, 0), (0, 3)})).mean()
    assert scores.model_logit_diff == pytest.approx(float(clean.mean()), abs=1e-5)
    assert scores.circuit_logit_diff == pytest.approx(float(circuit), abs=1e-5)
    assert abs(float(circuit - clean.mean())) > 1e-3


def test_direct_logit_attribution_refuses_the_prob_diff(years_model, years) -> None:
    with pytest.raises(ConfigError, match="Direct logit attribution.*prob_diff.*not"):
        direct_logit_attribution_of_heads(years_model, years, "denoising")
    with pytest.raises(ConfigError, match="prob_diff"):
        direct_logit_attribution(years_model, years.clean_tokens, years.answer_tokens, years.end_pos,
                                 years.answer_weights, "prob_diff")  # fmt: skip


def test_the_minimum_gap_applies_to_the_prob_diff() -> None:
    assert MIN_GAPS["prob_diff"] == 0.05 and MIN_GAPS["logit_diff"] == 0.5
    assert not has_gap(0.30, 0.27, "prob_diff") and has_gap(0.30, 0.20, "prob_diff")
    assert not has_gap(0.30, 0.20)  # the logit difference's 0.5 by default
    figures = {"recovery": 0.9, "clean_logit_diff": 0.30, "corrupted_logit_diff": 0.27}
    assert recovery_or_none(figures, "prob_diff") is None
    assert recovery_or_none(figures | {"corrupted_logit_diff": 0.1}, "prob_diff") == 0.9
    logged = {f"val/{name}": value for name, value in figures.items()}
    table = evaluation_table(logged, "val", ["in_distribution"], "prob_diff")
    assert "clean PD" in table and "P(correct) − P(incorrect)" in table
    assert table.splitlines()[1].split()[:2] == ["val", "n/a"]
    row = evaluation_table(logged | {"val/corrupted_logit_diff": 0.1}, "val", ["in_distribution"], "prob_diff")
    assert row.splitlines()[1].split()[:2] == ["val", "0.900"]


def test_learn_combination_fits_greater_than_and_measures_it_as_by_hand(years_model, tiny_gpt2_dir) -> None:
    tokenizer = load_tokenizer(str(tiny_gpt2_dir))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the toy model's gap may be small: a warning, not the point here
        result = learn_combination(years_model, task="greater_than", n_prompts=12, tokenizer=tokenizer, steps=5,
                                   seed=0)  # fmt: skip
    prompts = make_task("greater_than").splits(tokenizer, {"train": 12}, 0)["train"].batch
    alpha = result.coefficients
    patched = by_hand(years_model, prompts.corrupted_tokens, prompts, mixing_hooks(years_model, alpha,
                                                                                    prompts.clean_tokens))  # fmt: skip
    clean, corrupted = by_hand(years_model, prompts.clean_tokens, prompts), by_hand(years_model, prompts.corrupted_tokens,
                                                                                    prompts)  # fmt: skip
    assert result.clean_logit_diff == pytest.approx(float(clean.mean()), abs=1e-5)
    assert result.patched_logit_diff == pytest.approx(float(patched.mean()), abs=1e-5)
    hand = (patched.mean() - corrupted.mean()) / (clean.mean() - corrupted.mean())
    assert result.recovery == pytest.approx(float(hand), abs=1e-4)
    assert not torch.equal(alpha, torch.ones_like(alpha))  # the fit moved α


def test_greater_than_trains_through_the_cli(tiny_gpt2_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    args = ["fit", "--model.model_name", str(tiny_gpt2_dir), "--data.task", "greater_than", "--data.n_train", "16",
            "--data.n_val", "8", "--data.n_test", "8", "--data.batch_size", "8", "--trainer.max_steps", "2", *QUIET]  # fmt: skip
    run_cli(args, tmp_path, monkeypatch)
    (path,) = tmp_path.glob("runs/**/summary.json")
    summary = json.loads(path.read_text())
    assert summary["metric"] == "prob_diff" and summary["min_gap_for_recovery"] == 0.05
    assert list(summary["recovery"]["test"]) == ["in_distribution", "other_centuries", "paraphrase"]
    clean, corrupted = summary["clean_logit_diff"], summary["corrupted_logit_diff"]
    assert -1.0 <= corrupted <= 1.0 and -1.0 <= clean <= 1.0  # probabilities, not logits
    # The random model hardly tells the years apart: below the prob_diff gap, recovery is n/a as for logit_diff.
    assert (summary["recovery"]["val"] is None) == (abs(clean - corrupted) < 0.05)
    assert (tmp_path / Path(path).parent / "coefficients.pt").exists()


def test_direct_logit_attribution_is_refused_before_a_prob_diff_run_trains(tiny_gpt2_dir, tmp_path, monkeypatch,
                                                                           capsys) -> None:  # fmt: skip
    args = ["fit", "--model.model_name", str(tiny_gpt2_dir), "--data.task", "greater_than", "--data.n_train", "8",
            "--data.n_val", "4", "--data.n_test", "4", "--trainer.max_steps", "1", *QUIET,
            "--trainer.callbacks+=ioi_superpose.baselines.callbacks.DirectLogitAttribution"]  # fmt: skip
    with pytest.raises(SystemExit):
        run_cli(args, tmp_path, monkeypatch)
    assert "Direct logit attribution" in capsys.readouterr().err
    assert not list(tmp_path.glob("runs/**/checkpoints/*.ckpt"))

"""Pareto fronts: the baselines' top-k curves on every evaluation set, and the per-set figures in a run's
TensorBoard, a sweep's and the report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ioi_superpose.baselines.top_k import top_k_curves, uniform_top_k_alphas
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.engine.metric import logit_diff
from ioi_superpose.results.pareto import log_sweep, pareto_figure
from ioi_superpose.results.schema import RunSummary
from tests.helpers import REPO, TOY_IOI, fake_summary, prompt_pairs, random_model


def image_tags(directory: Path) -> dict[str, list[int]]:
    """Every image tag in the event files under `directory`, with the steps it was written at."""
    events = EventAccumulator(str(directory), size_guidance={"images": 0})
    events.Reload()
    return {tag: [event.step for event in events.Images(tag)] for tag in events.Tags()["images"]}


def hooked_recovery(model, batch: ContrastBatch, heads: list[tuple[int, int]]) -> float:
    """Denoising recovery of patching `heads` (all positions) from clean into corrupted, with plain
    TransformerLens hooks: the reference the engine's folded runs are checked against."""
    _, cache = model.run_with_cache(batch.clean_tokens)
    rows = torch.arange(len(batch))

    def answer_diff(logits: torch.Tensor) -> float:
        end = logits[rows, batch.end_pos]
        return float(logit_diff(end.gather(-1, batch.answer_tokens)).mean())

    def patch(z: torch.Tensor, hook) -> torch.Tensor:
        layer = int(hook.name.split(".")[1])
        for head in [h for l_, h in heads if l_ == layer]:
            z[:, :, head] = cache[hook.name][:, :, head]
        return z

    hooks = [(f"blocks.{layer}.attn.hook_z", patch) for layer in {layer for layer, _ in heads}]
    patched = answer_diff(model.run_with_hooks(batch.corrupted_tokens, fwd_hooks=hooks))
    clean, corrupted = answer_diff(model(batch.clean_tokens)), answer_diff(model(batch.corrupted_tokens))
    return (patched - corrupted) / (clean - corrupted)


def test_each_sets_curve_is_the_recovery_of_its_top_k_heads_on_that_sets_prompts():
    model = random_model(n_layers=2, n_heads=3)
    sets = {name: ContrastBatch.from_tokens(*prompt_pairs(model.cfg.d_vocab, batch=8, seed=seed))
            for name, seed in (("val", 1), ("other", 2))}  # fmt: skip
    clean, _, answers = prompt_pairs(model.cfg.d_vocab, batch=8, seed=3)
    sets["no_gap"] = ContrastBatch.from_tokens(clean, clean.clone(), answers)  # clean = corrupted: gap 0
    # Two rankings with known orders: heads (layer, head) best first.
    orders = {"first": [(1, 2), (0, 0), (1, 0), (0, 2), (0, 1), (1, 1)],
              "second": [(0, 1), (1, 1), (0, 2), (1, 0), (0, 0), (1, 2)]}  # fmt: skip
    scores = {}
    for name, order in orders.items():
        scores[name] = torch.zeros(2, 3)
        for rank, (layer, head) in enumerate(order):
            scores[name][layer, head] = 6.0 - rank
    alphas = {name: uniform_top_k_alphas(score, 4) for name, score in scores.items()}

    curves = top_k_curves(model, sets, alphas, "denoising")

    assert set(curves) == {"val", "other", "no_gap"} and set(curves["val"]) == {"first", "second"}
    for set_name in ("val", "other"):
        for name, order in orders.items():
            expected = [hooked_recovery(model, sets[set_name], order[:k]) for k in range(1, 5)]
            assert curves[set_name][name] == pytest.approx(expected, abs=1e-4), (set_name, name)
    assert curves["val"]["first"] != pytest.approx(curves["other"]["first"], abs=1e-3)  # the sets differ
    assert curves["no_gap"] == {"first": [None] * 4, "second": [None] * 4}


def test_a_run_stores_every_rankings_curve_per_set_and_logs_its_fronts(tmp_path, monkeypatch):
    from ioi_superpose.baselines.patching import activation_patch
    from ioi_superpose.cli.train import main
    from ioi_superpose.data.datamodule import IOIDataModule
    from ioi_superpose.engine.metric import MIN_GAP, ContrastMetric
    from ioi_superpose.engine.runs import end_logits, recovery_of, reference_runs
    from ioi_superpose.models import load_frozen_model

    monkeypatch.chdir(tmp_path)
    # More validation / test prompts than the rankings' 64: the curves use every prompt, as the learned points.
    sizes = {"n_train": 32, "n_val": 80, "n_test": 70}
    main(["fit", "--config", str(REPO / "experiments" / "toy_ioi.yaml"), "--model.model_name", TOY_IOI,
          *(f"--data.{key}={value}" for key, value in sizes.items()), "--data.batch_size", "16",
          "--data.off_distribution", "[held_out_names, objects_as_names]", "--trainer.max_epochs", "1",
          "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"])  # fmt: skip
    (summary_path,) = (tmp_path / "runs").rglob("summary.json")
    combinations = json.loads(summary_path.read_text())["baselines"]["combinations"]
    curves = combinations["curves_by_set"]
    sets = ["val", "in_distribution", "held_out_names", "objects_as_names"]
    assert list(curves) == sets
    rankings = {"activation_patching", "attribution_patching", "path_patching", "direct_logit_attribution",
                "attention_to_io", "attention_weighted"}  # fmt: skip
    assert all(set(curves[name]) == rankings and all(len(c) == 8 for c in curves[name].values()) for name in sets)
    assert combinations["prompts_by_set"] == {"val": 80, "in_distribution": 70, "held_out_names": 70,
                                              "objects_as_names": 70}  # fmt: skip

    # Independently: activation patching on the first 64 validation prompts ranks the heads; its top-k, patched
    # on all the held-out-names prompts one k at a time, gives that set's curve.
    data = IOIDataModule(model_name=TOY_IOI, off_distribution=("held_out_names", "objects_as_names"), **sizes)
    data.setup("test")
    model = load_frozen_model(TOY_IOI)
    val = data.splits["val"][:64].trimmed()  # the rankings' prompts (the curves then use every prompt)
    reference = reference_runs(model, val.clean_tokens, val.corrupted_tokens, val.end_pos, val.answer_tokens,
                               "denoising")  # fmt: skip
    metric = ContrastMetric(val.answer_tokens, val.end_pos,  # normalised: 0 = corrupted run, 1 = clean run
                             corrupted_value=float(logit_diff(reference.base_answer_logits).mean()),
                             clean_value=float(logit_diff(reference.source_answer_logits).mean()))  # fmt: skip
    effect = activation_patch(model, val.corrupted_tokens, val.clean_tokens, metric)
    held_out = data.splits["held_out_names"].trimmed()
    expected = []
    for k in range(1, 9):
        mask = torch.zeros(8)
        mask[effect.flatten().topk(k).indices] = 1.0
        expected.append(float(recovery_of(model, held_out, mask.view(2, 4))))
    assert curves["held_out_names"]["activation_patching"] == pytest.approx(expected, abs=1e-4)
    assert curves["held_out_names"]["activation_patching"] != pytest.approx(curves["val"]["activation_patching"])

    # objects_as_names: the toy model does not tell clean from corrupted there, so every curve is null.
    objects = data.splits["objects_as_names"].trimmed()
    gap = [float(logit_diff(end_logits(model, t, objects.end_pos, objects.answer_tokens)).mean())
           for t in (objects.clean_tokens, objects.corrupted_tokens)]  # fmt: skip
    assert abs(gap[0] - gap[1]) < MIN_GAP
    assert all(value is None for curve in curves["objects_as_names"].values() for value in curve)

    tags = image_tags(summary_path.parent)
    assert {f"pareto/{name}" for name in sets} <= set(tags)
    assert len(tags["pareto/val"]) == 1  # once, at fit end




def test_the_front_draws_each_learned_alpha_by_family_and_direction():
    summaries = [RunSummary.from_dict(summary) for summary in [
        fake_summary("denoising", "scalar", 0.95, [[0, 1], [0, 2]]),
        # per_position: one head with two roles counts once.
        fake_summary("noising", "per_position", 0.1, [[1, 0, 2], [1, 0, 4], [0, 3, 4]]),
        fake_summary("denoising", "hard_concrete", None, [[0, 0]]),  # no recovery on val: not drawn
    ]]  # fmt: skip
    axes = pareto_figure(summaries, "val").axes[0]
    points = [(c.get_offsets().tolist(), c.get_facecolors().tolist()) for c in axes.collections]
    assert points == [([[2.0, 0.95]], [[0.0, 0.0, 0.0, 1.0]]), ([[2.0, 0.1]], [[1.0, 1.0, 1.0, 1.0]])]
    lines = [line for line in axes.get_lines() if line.get_label().startswith("top-k")]
    assert [(line.get_label(), line.get_linestyle()) for line in lines] == [
        ("top-k activation_patching (denoising, 64 prompts)", "-"),
        ("top-k activation_patching (noising, 64 prompts)", "--"),
    ]
    empty = pareto_figure(summaries, "held_out_names").axes[0]
    assert not empty.collections and "recovery n/a" in empty.texts[0].get_text()


def test_the_sweep_adds_every_sets_front_as_points_finish(tmp_path):
    runs = [tmp_path / "a", tmp_path / "b"]
    for run in runs:
        run.mkdir()
    (runs[0] / "summary.json").write_text(json.dumps(fake_summary("denoising", "scalar", 0.95, [[0, 1]])))
    log_sweep(tmp_path, runs)  # b has not finished
    (runs[1] / "summary.json").write_text(json.dumps(fake_summary("noising", "scalar", 0.05, [[0, 1]])))
    log_sweep(tmp_path, runs)
    assert image_tags(tmp_path / "tensorboard") == {"pareto/val": [1, 2], "pareto/held_out_names": [1, 2]}


def test_the_report_links_one_front_per_set(tmp_path):
    from ioi_superpose.results.report import main as report_main

    run = tmp_path / "run"
    run.mkdir()
    summary = fake_summary("denoising", "scalar", 0.95, [[0, 1]], top_heads=[])
    (run / "summary.json").write_text(json.dumps(summary))
    report_main([str(run), "--out", str(tmp_path / "report")])
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (tmp_path / "report" / "report.md").read_text())
    assert linked == ["pareto_val.png", "pareto_held_out_names.png", "sets.png"]
    assert all((tmp_path / "report" / name).stat().st_size > 1000 for name in linked)

"""The benchmark at 144 heads and in both notions (`rest`): a tiny run of the GPT-2-scale suite through the CLI,
checked against facts derived from the suite's construction, not from the run's own output; and the frozen
activation-patching score checked against the cut by the duality of `engine.rest`."""

from __future__ import annotations

import json

import torch

import ioi_superpose.cli.benchmark as cli
from ioi_superpose.analyses.exhaustive import head_subsets, subset_effects
from ioi_superpose.baselines.scorers import activation_patching
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.groundtruth.benchmark import Config, mask_of
from ioi_superpose.groundtruth.benchmark_cases import bench_cases
from ioi_superpose.groundtruth.planted import all_cases

TINY_GPT2 = dict(n_planted=8, steps=10, families=("scalar",), lambda_grids={"scalar": (1e-2,)}, inits=(1.0,),
                 random_orders=1, max_top_k=4, truth_check_prompts=4, score_grid=(0.5,), k_grid=(2,))  # fmt: skip


class TinyConfig(Config):
    @classmethod
    def gpt2(cls, **overrides):  # noqa: ANN206
        return Config.gpt2(**{**overrides, **TINY_GPT2})


def test_gpt2_benchmark_both_notions(tmp_path, monkeypatch, capsys):
    """`--suite gpt2 --rest both`, 2 cases, denoising. Facts from the construction (`planted_gpt2` docstring):
    the `and` pair needs both heads in both notions; `composition` is {1.8} or {6.4} as a cut (either restores
    the chain, the rest recomputing), but as a circuit only {1.8, 6.4} (6.4 reads F2, which the layer-3 MLP makes
    from 1.8's F1; a head outside the circuit is held at its corrupted value)."""
    monkeypatch.setattr(cli, "Config", TinyConfig)
    out = tmp_path / "out"
    cli.main(["--suite", "gpt2", "--rest", "both", "--cases", "and", "composition", "--directions", "denoising",
              "--out", str(out)])  # fmt: skip
    capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["benchmark_gpt2.json", "benchmark_gpt2.md"]
    report = json.loads((out / "benchmark_gpt2.json").read_text())
    assert report["config"]["suite"] == "gpt2" and report["cases"]["and"]["heads"] == 144
    assert report["cases"]["composition"]["searched"] == [[1, 8], [6, 4]]
    expected_truth = {("free", "and"): [[[4, 2], [4, 8]]], ("frozen", "and"): [[[4, 2], [4, 8]]],
                      ("free", "composition"): [[[1, 8]], [[6, 4]]], ("frozen", "composition"): [[[1, 8], [6, 4]]]}
    cases = {c.name: c for c in bench_cases(8, names=["and", "composition"], suite="gpt2")}
    for rest in ("free", "frozen"):
        block = report["rests"][rest]["denoising"]
        for name in ("and", "composition"):
            truth = block["truth"][name]
            assert truth["minimal_sets"] == expected_truth[rest, name], (rest, name)
            assert truth["distractor_checks"]["ok"], (rest, name, truth["distractor_checks"])
            assert ("promised_free" in truth) == (rest == "free") and truth.get("promised_free", True)
            results = block["results"][name]
            assert results["exhaustive oracle"]["f1"] == 1.0
            for method, choice in block["chosen"][name].items():
                assert name not in choice["chosen_on"], method
            # Control (a)'s set reaches the target on the train prompts it was pruned on, in this notion,
            # measured here by subset search's own effect function.
            control = results["all heads + step (control a)"]
            mask = mask_of(frozenset(map(tuple, control["heads"])), 12, 12)
            effect = subset_effects(cases[name].model, cases[name].splits["train"], mask[None], "denoising", rest=rest)
            assert float(effect[0]) >= 0.9, (rest, name, control)
    text = (out / "benchmark_gpt2.md").read_text()
    assert "## Denoising, rest frozen (circuits" in text and "Control (a) (all heads + step, no learning)" in text


def test_frozen_activation_patching_is_the_cut_of_the_complement_the_other_way():
    """Frozen single-head scores, denoising: effect of the circuit {h} = 1 − (noising cut of every other head),
    the duality of `engine.rest`, on a small planted model (the cut computed by subset search)."""
    case = all_cases()[2]  # composition: 4 heads over two layers, so the notions differ
    prompts = case.prompts(16, seed=3)
    batch = ContrastBatch(prompts.clean_tokens, prompts.corrupted_tokens, prompts.answer_tokens,
                          prompts.end_pos, torch.arange(16))  # fmt: skip
    frozen = activation_patching(case.model, batch, "denoising", rest="frozen")
    n_layers, n_heads = case.model.cfg.n_layers, case.model.cfg.n_heads
    singles = head_subsets(n_layers, n_heads, max_size=1)[1:]
    complement = subset_effects(case.model, prompts, ~singles, "noising", rest="free")
    torch.testing.assert_close(frozen.flatten(), 1 - complement, atol=1e-4, rtol=0)
    free = activation_patching(case.model, batch, "denoising")
    assert (free - frozen).abs().max() > 0.05  # the two notions differ on this model

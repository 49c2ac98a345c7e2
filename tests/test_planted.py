"""Planted ground truth: each case's exhaustive search (both directions) is what its construction promises."""

from __future__ import annotations

import itertools

import pytest
import torch

from ioi_superpose.analyses.exhaustive import search_subsets
from ioi_superpose.baselines.logit_attribution import direct_logit_attribution
from ioi_superpose.engine.fast_forward import disagreement
from ioi_superpose.groundtruth.planted import all_cases, decoy_case
from tests.helpers import hooks_only

CASES = {case.name: case for case in all_cases()}


def as_sets(sets):
    return {frozenset(tuple(h) for h in s) for s in sets}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("direction", ["denoising", "noising"])
def test_exhaustive_search_finds_the_planted_minimal_sets(name, direction):
    case = CASES[name]
    result = search_subsets(case.model, case.prompts(32, seed=3), direction, threshold=0.9)
    promised = case.denoising_minimal if direction == "denoising" else case.noising_minimal
    assert result.reached
    assert as_sets(result.minimal_sets) == as_sets(promised)


def test_or_and_single_heads_are_what_single_head_patching_misses():
    or_, and_ = CASES["or"], CASES["and"]
    noising_or = search_subsets(or_.model, or_.prompts(32, 0), "noising")
    assert max(noising_or.single_head_effect[0][:2]) < 0.1  # each backup head alone looks unnecessary
    denoising_and = search_subsets(and_.model, and_.prompts(32, 0), "denoising")
    assert max(denoising_and.single_head_effect[0][:2]) < 0.1  # each AND head alone looks useless
    assert denoising_and.subset_effect["0.0+0.1"] > 0.99


def test_decoy_has_the_largest_logit_attribution_and_no_causal_effect():
    case = decoy_case()
    prompts = case.prompts(32, 0)
    dla = direct_logit_attribution(case.model, prompts.clean_tokens, prompts.answer_tokens, prompts.end_pos)
    assert int(dla.heads.flatten().argmax()) == 0  # head 0.0
    search = search_subsets(case.model, prompts, "denoising")
    assert abs(search.single_head_effect[0][0]) < 0.02
    assert search.single_head_effect[1][1] > 0.95


def test_a_feature_that_never_reaches_the_threshold_is_reported():
    case = CASES["superposition_f3"]
    result = search_subsets(case.model, case.prompts(16, 0), "denoising", threshold=1.5)
    assert not result.reached and result.minimal_sets == [] and result.min_size is None


def test_prompt_seeds_differ():
    case = CASES["or"]
    assert not torch.equal(case.prompts(8, 0).clean_tokens, case.prompts(8, 1).clean_tokens)


def hooks_only_effects(model, prompts, direction):
    """Every head subset's normalised effect from the hand-written hooks-only reference (`hooks_only`)."""
    heads = [(layer, head) for layer in range(model.cfg.n_layers) for head in range(model.cfg.n_heads)]
    return {
        frozenset(subset): hooks_only(model, prompts, subset, direction)
        for size in range(len(heads) + 1) for subset in itertools.combinations(heads, size)
    }


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("direction", ["denoising", "noising"])
def test_planted_ground_truth_equals_a_hooks_only_reference(name, direction):
    """Each planted model is causal and the fast runner computes it as TransformerLens does; the engine's
    subset effects equal a hand-written hooks-only search, whose minimal sets are the promised ones."""
    case = CASES[name]
    assert all(torch.isinf(block.attn.IGNORE) for block in case.model.blocks)
    assert disagreement(case.model) is None
    prompts = case.prompts(16, seed=5)
    reference = hooks_only_effects(case.model, prompts, direction)
    engine = search_subsets(case.model, prompts, direction, threshold=0.9)
    for subset, effect in reference.items():
        name_ = "+".join(f"{layer}.{head}" for layer, head in sorted(subset)) or "none"
        assert engine.subset_effect[name_] == pytest.approx(effect, abs=1e-4), name_
    reaching = [s for s, e in reference.items() if e >= 0.9]
    smallest = min(len(s) for s in reaching)
    promised = case.denoising_minimal if direction == "denoising" else case.noising_minimal
    assert {s for s in reaching if len(s) == smallest} == as_sets(promised)


def test_superposition_f3_needs_both_heads_in_the_causal_model():
    case = CASES["superposition_f3"]
    for direction, alone in (("denoising", 0.70), ("noising", 0.30)):
        effects = hooks_only_effects(case.model, case.prompts(16, seed=1), direction)
        assert effects[frozenset({(0, 0)})] == pytest.approx(alone, abs=0.03)
        assert effects[frozenset({(1, 0)})] == pytest.approx(alone, abs=0.03)

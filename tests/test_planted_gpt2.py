"""The GPT-2-scale planted suite: its ground truth verified by patching, not assumed from the construction.

`experiments/planted_gpt2_verify.py` runs the full check (32 prompts, every single distractor added to
every minimal set of every case); these tests run the same checks on fewer prompts and cases.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from ioi_superpose.analyses.exhaustive import search_head_subsets, search_subsets, subset_effects
from ioi_superpose.baselines.logit_attribution import direct_logit_attribution
from ioi_superpose.engine.fast_forward import disagreement
from ioi_superpose.groundtruth.planted import or_case
from ioi_superpose.groundtruth.planted_gpt2 import END_POS, SRC_POS, case_mask, gpt2_cases, suite_model
from tests.helpers import hooks_only

CASES = {case.name: case for case in gpt2_cases()}
MODEL = next(iter(CASES.values())).model
PLANTED = {head for case in CASES.values() for head in case.heads}
RANDOM = [(layer, head) for layer in range(12) for head in range(12) if (layer, head) not in PLANTED]


def as_sets(sets):
    return {frozenset(tuple(h) for h in s) for s in sets}


def test_the_suite_is_gpt2_shaped_deterministic_and_fast():
    cfg = MODEL.cfg
    assert (cfg.n_layers, cfg.n_heads, cfg.attn_only, cfg.normalization_type, cfg.act_fn) == (
        12, 12, False, "LN", "gelu_new"
    )  # fmt: skip
    assert len(RANDOM) >= 100
    again = suite_model()
    for key, value in MODEL.state_dict().items():
        # Equal up to float rounding: another test in this process may have changed torch's thread count,
        # which changes how the builder's matrix products are summed.
        torch.testing.assert_close(value, again.state_dict()[key], rtol=0, atol=1e-6, msg=key)
    assert not torch.equal(suite_model(seed=1).blocks[0].attn.W_V, MODEL.blocks[0].attn.W_V)
    assert all(torch.isinf(block.attn.IGNORE) for block in MODEL.blocks)


def test_distractors_do_real_work():
    """Every random head has non-zero weights, attends over several positions and writes a non-trivial,
    prompt-dependent output at END; the MLPs write at the filler positions."""
    for layer, head in RANDOM:
        attn = MODEL.blocks[layer].attn
        for weight in (attn.W_Q, attn.W_K, attn.W_V, attn.W_O):
            assert weight[head].abs().sum() > 0
    prompts = CASES["or"].prompts(16, seed=0)
    with torch.no_grad():
        _, cache = MODEL.run_with_cache(prompts.clean_tokens)
    for layer, head in RANDOM:
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"][:, head, END_POS]
        assert float(pattern.max(-1).values.mean()) < 0.95, (layer, head)  # not one-hot
        out = cache[f"blocks.{layer}.attn.hook_z"][:, END_POS, head] @ MODEL.blocks[layer].attn.W_O[head]
        assert float(out.norm(dim=-1).mean()) > 0.02, (layer, head)
        assert float(out.std(0).norm()) > 1e-3, (layer, head)  # depends on the prompt
    for layer in range(12):
        assert float(cache[f"blocks.{layer}.hook_mlp_out"][:, 1:END_POS].norm(dim=-1).mean()) > 0.05


def test_distractors_never_attend_the_source_or_end():
    prompts = CASES["composition"].prompts(16, seed=0)
    with torch.no_grad():
        _, cache = MODEL.run_with_cache(prompts.clean_tokens)
    for layer, head in RANDOM:
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"][:, head, 1:]  # queries at positions 1..END
        assert float(pattern[..., [SRC_POS, END_POS]].max()) < 1e-6


def test_fast_runner_agrees_with_transformer_lens():
    assert disagreement(MODEL) is None


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("direction", ["denoising", "noising"])
def test_planted_ground_truth(name, direction):
    """Exhaustive search over the case's planted heads gives the promised minimal sets; patching all
    distractors at once moves recovery < 0.01; the engine equals a hooks-only computation; in the run with
    a minimal set patched, every random distractor's z equals its source-run z (so adding it is a no-op)."""
    case = CASES[name]
    prompts = case.prompts(16, seed=3)
    search = search_head_subsets(case.model, prompts, case.heads, direction, threshold=0.9)
    promised = case.denoising_minimal if direction == "denoising" else case.noising_minimal
    assert search.reached and as_sets(search.minimal_sets) == as_sets(promised)
    everything_else = subset_effects(case.model, prompts, case_mask(case.distractors)[None], direction)
    assert abs(float(everything_else[0])) < 0.01
    assert hooks_only(case.model, prompts, case.distractors, direction) == pytest.approx(
        float(everything_else[0]), abs=1e-4
    )
    layers, heads = zip(*RANDOM)
    for minimal in search.minimal_sets:
        name_ = "+".join(f"{layer}.{head}" for layer, head in sorted(minimal))
        effect, patched_z, source_z = hooks_only(case.model, prompts, minimal, direction, capture=True)
        assert search.subset_effect[name_] == pytest.approx(effect, abs=1e-4)
        assert float((patched_z[list(layers), :, :, list(heads)] - source_z[list(layers), :, :, list(heads)])
                     .abs().max()) < 1e-4  # fmt: skip


@pytest.mark.parametrize(("name", "direction"), [("or", "noising"), ("and", "denoising"), ("decoy", "denoising")])
def test_adding_any_single_distractor_to_a_minimal_set_moves_recovery_less_than_0_01(name, direction):
    case = CASES[name]
    prompts = case.prompts(8, seed=4)
    minimal = (case.denoising_minimal if direction == "denoising" else case.noising_minimal)[0]
    masks = torch.stack([case_mask(minimal)] + [case_mask([*minimal, d]) for d in case.distractors])
    effects = subset_effects(case.model, prompts, masks, direction)
    assert effects[0] >= 0.9
    assert float((effects[1:] - effects[0]).abs().max()) < 0.01


def test_the_planted_roles_single_head_methods_get_wrong():
    """AND heads alone look useless (denoising), OR and backup heads alone look unnecessary (noising), the
    negative head's single-head effect is negative, and the decoy has the largest direct logit attribution."""
    effect = {}
    for name, direction in (("and", "denoising"), ("or", "noising"), ("backup", "noising"), ("negative", "denoising")):
        case = CASES[name]
        effect[name] = search_head_subsets(case.model, case.prompts(16, 1), case.heads, direction).single_head_effect
    (a1, a2), (o1, o2), (b1, b2) = CASES["and"].heads, CASES["or"].heads, CASES["backup"].heads
    assert max(effect["and"][a1[0]][a1[1]], effect["and"][a2[0]][a2[1]]) < 0.05
    assert max(effect["or"][o1[0]][o1[1]], effect["or"][o2[0]][o2[1]]) < 0.1
    assert max(effect["backup"][b1[0]][b1[1]], effect["backup"][b2[0]][b2[1]]) < 0.1
    (_, _), (ln, hn) = CASES["negative"].heads
    assert effect["negative"][ln][hn] < -0.5
    decoy = CASES["decoy"]
    prompts = decoy.prompts(16, 0)
    dla = direct_logit_attribution(decoy.model, prompts.clean_tokens, prompts.answer_tokens, prompts.end_pos)
    top = divmod(int(dla.heads.flatten().argmax()), 12)
    assert top == decoy.heads[0] and top not in decoy.denoising_minimal[0]


def test_the_trap_defeats_the_minimal_set_step_from_all_heads():
    """At 144 heads too: the step from all heads with α = 1 (no learning; the benchmark's control a) keeps the
    strong pair's second head and weak heads, never the minimal {0.0, 0.1}."""
    from ioi_superpose.analyses.pruning import minimal_set
    from ioi_superpose.groundtruth.benchmark import all_ones

    case = CASES["trap_8"]
    prompts = case.prompts(16, seed=0)
    result = minimal_set(case.model, [prompts], "denoising", all_ones(12, 12), 0.9, 0.05)
    kept = {tuple(unit) for unit in result.support}
    assert result.reached
    assert (0, 0) not in kept and (0, 1) in kept and len(kept) >= 3
    assert kept < set(case.heads)


def test_search_head_subsets_searches_only_the_candidates():
    case = or_case()
    prompts = case.prompts(16, seed=0)
    full = search_subsets(case.model, prompts, "noising")
    part = search_head_subsets(case.model, prompts, [(0, 1), (0, 0)], "noising")
    assert set(part.subset_effect) == {"none", "0.0", "0.1", "0.0+0.1"}
    for key, value in part.subset_effect.items():
        assert full.subset_effect[key] == pytest.approx(value, abs=1e-6)
    assert math.isnan(part.single_head_effect[0][2])
    as_json = json.loads(json.dumps(part.to_dict(), allow_nan=False))  # not searched: null, not NaN
    assert as_json["single_head_effect"][0][2] is None and as_json["single_head_effect"][0][0] is not None
    with pytest.raises(ValueError, match="outside the model"):
        search_head_subsets(case.model, prompts, [(1, 0)], "noising")
    with pytest.raises(ValueError, match="max_heads"):
        search_head_subsets(MODEL, CASES["or"].prompts(4, 0), RANDOM[:20], "noising")

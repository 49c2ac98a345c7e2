"""Combination families: shapes, the α = 0 / α = 1 identities, gradients, deterministic evaluation, the
minimal-set step, and the must-show OR results."""

from __future__ import annotations

import itertools
import logging
import warnings

import pytest
import torch

from ioi_superpose.api import learn_combination
from ioi_superpose.combinations import FAMILIES, build_combination
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.data.roles import ROLE_INDEX, ROLES, batch_roles, position_roles
from ioi_superpose.engine.runs import BaseRun, end_logits, head_z, patched_end_logits
from ioi_superpose.errors import ConfigError
from ioi_superpose.groundtruth.planted import and_case, or_case
from ioi_superpose.training.system import HeadSuperposition

warnings.filterwarnings("ignore", message=".*val_dataloader.*")
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)


HEAD_FAMILIES = [family for family in FAMILIES if family != "mixing"]
"""Families whose units are heads (or head, role pairs) kept at weight 1; `mixing` (a map across heads,
pruned at its learned values) has its own tests in tests/test_mixing.py."""


@pytest.fixture(scope="module")
def planted():
    case = or_case()
    prompts = case.prompts(16, 0)
    return case, ContrastBatch.from_tokens(prompts.clean_tokens, prompts.corrupted_tokens, prompts.answer_tokens)


def patched(model, batch, combination):
    source_z, _ = head_z(model, batch.clean_tokens)
    base = BaseRun.prepare(model, batch.corrupted_tokens, prefixes=False)
    return patched_end_logits(base, source_z, combination, batch.end_pos, batch.answer_tokens,
                              roles=batch_roles(batch))[0]  # fmt: skip


@pytest.mark.parametrize("family", HEAD_FAMILIES)
def test_shapes_initial_values_and_support(family):
    combination = build_combination(family, 2, 3, init=0.3).eval()
    expected = (2, 3, len(ROLES)) if family == "per_position" else (2, 3)
    assert tuple(combination.coefficients.shape) == expected
    torch.testing.assert_close(combination.head_coefficients(), torch.full((2, 3), 0.3))  # every unit starts at init
    assert combination.l0(0.5) == 0 and list(combination.support(0.5)) == []  # none above a higher threshold
    units = sorted(itertools.product(*map(range, expected)))  # every (layer, head[, role]) above a lower one
    assert sorted(map(tuple, combination.support(0.2))) == units and combination.l0(0.2) == len(units)


@pytest.mark.parametrize("family", FAMILIES)
def test_zero_is_the_base_run_and_one_the_source_run(planted, family):
    case, batch = planted
    combination = build_combination(family, 1, 3).eval()
    combination.set_mask_(torch.zeros_like(combination.coefficients, dtype=torch.bool))
    base = end_logits(case.model, batch.corrupted_tokens, batch.end_pos, batch.answer_tokens)
    torch.testing.assert_close(patched(case.model, batch, combination), base, atol=1e-4, rtol=1e-4)
    combination = build_combination(family, 1, 3).eval()  # mixing's set_mask_ keeps its values: a fresh init 1
    combination.set_mask_(torch.ones_like(combination.coefficients, dtype=torch.bool))
    source = end_logits(case.model, batch.clean_tokens, batch.end_pos, batch.answer_tokens)
    torch.testing.assert_close(patched(case.model, batch, combination), source, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_gradients_reach_only_the_combination(planted, family):
    case, batch = planted
    combination = build_combination(family, 1, 3, init=0.5).train()
    patched(case.model, batch, combination)[:, 0].sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in combination.parameters())
    assert all(not p.requires_grad for p in case.model.parameters())


def hooks_reference(model, batch, gates):
    """TransformerLens hooks alone: every head's z at every position moved from the corrupted run towards the
    clean one by its gate [layer, head]; the answers' logits at END."""
    _, clean_cache = model.run_with_cache(batch.clean_tokens)

    def move(z, hook):
        return z + gates[hook.layer()][None, None, :, None] * (clean_cache[hook.name] - z)

    with torch.no_grad():
        logits = model.run_with_hooks(batch.corrupted_tokens, fwd_hooks=[(lambda name: name.endswith("hook_z"), move)])
    return logits[torch.arange(len(logits)), batch.end_pos].gather(-1, batch.answer_tokens)


@pytest.mark.parametrize("family", FAMILIES)
def test_evaluation_is_deterministic(planted, family):
    """Two combinations built alike (the global RNG moved in between) evaluate alike, run after run; a head
    family's evaluation is the hooks reference at its deterministic gates."""
    case, batch = planted
    torch.manual_seed(1)
    first = build_combination(family, 1, 3, init=0.5).eval()
    torch.manual_seed(2)
    second = build_combination(family, 1, 3, init=0.5).eval()
    out = patched(case.model, batch, first)
    torch.testing.assert_close(patched(case.model, batch, second), out, rtol=0, atol=0)
    torch.testing.assert_close(patched(case.model, batch, first), out, rtol=0, atol=0)
    if family in HEAD_FAMILIES:  # uniform init: per_position's roles agree, so one gate per head
        reference = hooks_reference(case.model, batch, first.head_coefficients())
        torch.testing.assert_close(out, reference, atol=1e-4, rtol=1e-4)


def test_hard_concrete_sampling_is_seeded_and_stochastic(planted):
    case, batch = planted
    a, b = (build_combination("hard_concrete", 1, 3, init=0.5, seed=7).train() for _ in range(2))
    first = patched(case.model, batch, a)
    torch.testing.assert_close(first, patched(case.model, batch, b))
    assert not torch.equal(first, patched(case.model, batch, a))  # fresh noise each run


def test_roles_of_ioi_positions():
    roles = position_roles(8, torch.tensor([7]), io_pos=torch.tensor([2]), s1_pos=torch.tensor([1]),
                           s2_pos=torch.tensor([5]))  # fmt: skip
    names = [ROLES[i] for i in roles[0].tolist()]
    assert names == ["other", "S1", "IO", "other", "other", "S2", "other", "END"]
    assert ROLE_INDEX["S1+1"] not in roles.tolist()  # S1+1 = IO here: IO wins


def test_per_position_needs_roles(planted):
    case, batch = planted
    combination = build_combination("per_position", 1, 3)
    source_z, _ = head_z(case.model, batch.clean_tokens)
    base = BaseRun.prepare(case.model, batch.corrupted_tokens, prefixes=False)
    with pytest.raises(ValueError, match="roles"):
        patched_end_logits(base, source_z, combination, batch.end_pos, batch.answer_tokens)


@pytest.mark.parametrize(
    "kwargs, name",
    [({"combination": "dense"}, "combination"), ({"prune_target": 0.0}, "prune_target"),
     ({"combination": "hard_concrete", "temperature": 0.0}, "temperature"), ({"prune_prompts": 0}, "prune_prompts")],
)  # fmt: skip
def test_bad_options_name_the_argument(kwargs, name):
    """Built from Python, the module names its argument; the CLI renames it to the flag (tests/test_config.py)."""
    with pytest.raises(ConfigError, match=f"^{name}") as error:
        HeadSuperposition(preloaded_model=or_case().model, **kwargs)
    assert "--model." not in str(error.value)


def learn(case, prompts, **kwargs):
    return learn_combination(case.model, prompts.clean_tokens, prompts.corrupted_tokens, prompts.answer_tokens,
                             steps=80, l1=1e-2, **kwargs)  # fmt: skip


def test_or_denoising_with_pruning_ends_with_one_head():
    case = or_case()
    result = learn(case, case.prompts(32, 0), prune_target=0.9)
    assert result.l0 == 1 and result.support[0] in [(0, 0), (0, 1)]
    assert result.recovery >= 0.9
    assert result.prune["reached"] and result.prune["l0"] == 1


def test_or_noising_keeps_both_heads_and_no_other():
    case = or_case()
    result = learn(case, case.prompts(32, 0), direction="noising")
    assert result.coefficients[0, 0] > 0.5 and result.coefficients[0, 1] > 0.5
    assert result.support == [(0, 0), (0, 1)]


@pytest.mark.parametrize("family", HEAD_FAMILIES)
def test_minimal_set_step_on_a_planted_case(family):
    """AND: the pruned set is exactly the pair (nothing can be dropped); weights are 0/1."""
    case = and_case()
    result = learn(case, case.prompts(32, 0), combination=family, prune_target=0.9)
    heads = {unit[:2] for unit in result.support}
    assert heads == {(0, 0), (0, 1)}
    assert result.prune["effect"] >= 0.9 and result.recovery >= 0.9
    assert set(result.coefficients.unique().tolist()) <= {0.0, 1.0}

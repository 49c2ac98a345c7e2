"""K combinations in one batched forward: the stacked forward equals each member's own, a batched fit
equals K separate runs, each member keeps its own lr, and unbatchable settings are refused."""

from __future__ import annotations

import logging
import warnings

import pytest
import torch

from ioi_superpose import learn_combination, learn_combinations
from ioi_superpose.combinations import FAMILIES, StackedCombination, build_combination
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.data.roles import batch_roles
from ioi_superpose.engine.runs import BaseRun, head_z, patched_end_logits
from ioi_superpose.errors import ConfigError
from ioi_superpose.training.system import HeadSuperposition
from tests.helpers import prompt_pairs, random_model

warnings.filterwarnings("ignore", message=".*(val_dataloader|num_workers|LightningModule.log).*")
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)


@pytest.fixture(scope="module")
def model():
    return random_model(n_layers=2, n_heads=4, d_model=32)


@pytest.fixture(scope="module")
def batch(model):
    clean, corrupted, answers = prompt_pairs(model.cfg.d_vocab, batch=6, length=7)
    return ContrastBatch.from_tokens(clean, corrupted, answers)


def members(family: str, seeds: tuple[int, ...] = (0, 1, 2)) -> list:
    """Members with different weights (and, for hard_concrete, gate seeds), in training mode (gates sample)."""
    built = []
    for k, seed in enumerate(seeds):
        member = build_combination(family, 2, 4, bounded=False, gate_seed=seed)
        with torch.no_grad():
            for parameter in member.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=torch.Generator().manual_seed(10 + k)))
        built.append(member.train())
    return built


def run(model, batch, combination, runner, max_rows=128):
    source_z, _ = head_z(model, batch.clean_tokens)
    base = BaseRun.prepare(model, batch.corrupted_tokens, prefixes=False)
    return patched_end_logits(base, source_z, combination, batch.end_pos, batch.answer_tokens,
                              roles=batch_roles(batch), max_rows=max_rows, runner=runner)  # fmt: skip


@pytest.mark.parametrize("runner", ["fast", "hooks"])
@pytest.mark.parametrize("family", FAMILIES)
def test_the_stacked_forward_equals_each_members_own(model, batch, family, runner):
    singles = [run(model, batch, member, runner)[0] for member in members(family)]  # member k alone
    # Fresh copies (hard_concrete: their generators start again at the same seeds); 2 rows per chunk of
    # 6 prompts would be 1 member per forward, so also check all 3 in one forward and a 2 + 1 split.
    for max_rows in (18, 12):
        stacked = run(model, batch, StackedCombination(members(family)), runner, max_rows)
        assert stacked.shape == (3, *singles[0].shape)
        for k, single in enumerate(singles):
            torch.testing.assert_close(stacked[k], single, atol=1e-5, rtol=1e-5)


def test_the_vectorised_scalar_path_equals_the_generic_one(model, batch):
    vectorised = run(model, batch, StackedCombination(members("scalar")), "fast")
    generic = run(model, batch, StackedCombination(members("scalar"), vectorise=False), "fast")
    torch.testing.assert_close(vectorised, generic, atol=1e-6, rtol=1e-6)


# Three members that differ in λ, init and lr; everything else shared.
MEMBERS = [dict(l1=0.0, init=1.0, lr=0.05), dict(l1=0.02, init=0.5, lr=0.1), dict(l1=0.005, init=0.8, lr=0.02)]


@pytest.mark.parametrize(("family", "prune_target"), [*((family, None) for family in FAMILIES), ("scalar", 0.8)])
def test_a_batched_fit_equals_separate_single_runs(model, batch, family, prune_target):
    shared = dict(steps=25, combination=family, seed=3, prune_target=prune_target)  # and the minimal-set step
    batched = learn_combinations(model, batch.clean_tokens, batch.corrupted_tokens, batch.answer_tokens,
                                 members=MEMBERS, **shared)  # fmt: skip
    for member, result in zip(MEMBERS, batched):
        single = learn_combination(model, batch.clean_tokens, batch.corrupted_tokens, batch.answer_tokens,
                                   **member, **shared)  # fmt: skip
        torch.testing.assert_close(result.coefficients, single.coefficients, atol=1e-5, rtol=1e-5)
        assert result.recovery == pytest.approx(single.recovery, abs=1e-5)
        assert result.support == single.support
        assert result.prune == single.prune and (result.prune is None) == (prune_target is None)
    if prune_target is None:  # the members really differ: λ, init and lr moved them apart
        for a, b in ((0, 1), (1, 2), (0, 2)):
            assert not torch.allclose(batched[a].coefficients, batched[b].coefficients, atol=1e-3)


def test_each_member_steps_with_its_own_lr(model, batch):
    """Adam's first step moves every parameter whose gradient is non-zero by lr (m̂/√v̂ = sign of g)."""
    lrs = [0.01, 0.1, 0.3]
    results = learn_combinations(model, batch.clean_tokens, batch.corrupted_tokens, batch.answer_tokens,
                                 members=[dict(lr=lr, l1=0.0, init=0.5) for lr in lrs], steps=1)  # fmt: skip
    for lr, result in zip(lrs, results):
        moved = (result.coefficients - 0.5).abs()
        torch.testing.assert_close(moved, torch.full_like(moved, lr), atol=1e-5, rtol=1e-4)


def test_members_that_differ_in_unbatchable_settings_are_refused(model):
    def system(**settings):
        return HeadSuperposition(model_name="tiny", preloaded_model=model, **settings)

    with pytest.raises(ConfigError, match="direction"):
        HeadSuperposition.batched([system(), system(direction="noising")])
    with pytest.raises(ConfigError, match="family"):
        StackedCombination([build_combination("scalar", 2, 4), build_combination("hard_concrete", 2, 4)])
    with pytest.raises(ConfigError, match="may only set"):
        learn_combinations(model, *prompt_pairs(model.cfg.d_vocab), members=[dict(seed=1)])
    HeadSuperposition.batched([system(l1=0.0, init=0.5), system(l1=0.1, lr=0.2)])  # batchable: accepted
    gates = dict(combination="hard_concrete")  # gate_seed is hard_concrete's own setting
    HeadSuperposition.batched([system(**gates, init=0.5), system(**gates, l1=0.1, lr=0.2, gate_seed=4)])


def test_hard_concrete_members_with_their_own_gate_seeds_equal_single_runs_seeded_so(model, batch):
    tokens = (batch.clean_tokens, batch.corrupted_tokens, batch.answer_tokens)
    seeds = [0, 5]
    batched = learn_combinations(model, *tokens, members=[dict(gate_seed=s, l1=0.01) for s in seeds],
                                 combination="hard_concrete", steps=20)  # fmt: skip
    for gate_seed, result in zip(seeds, batched):
        single = learn_combination(model, *tokens, combination="hard_concrete", steps=20, seed=gate_seed, l1=0.01)
        torch.testing.assert_close(result.coefficients, single.coefficients, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(batched[0].coefficients, batched[1].coefficients, atol=1e-4)  # the noise differs

"""`rest="free"` (a cut) and `rest="frozen"` (a circuit): a hand-computed two-layer case where they differ,
plain TransformerLens hooks as the independent reference, and the two identities that tie the notions."""

from __future__ import annotations

import pytest
import torch

from ioi_superpose.analyses.exhaustive import search_subsets
from ioi_superpose.analyses.pruning import minimal_set
from ioi_superpose.combinations import ScalarCombination
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.engine.metric import logit_diff
from ioi_superpose.engine.patch import HeadWeights
from ioi_superpose.engine.rest import FrozenRest, check_rest
from ioi_superpose.engine.runs import BaseRun, patched_end_logits, recovery_of, reference_runs
from ioi_superpose.errors import ConfigError
from ioi_superpose.models import HookedTransformer, HookedTransformerConfig, freeze
from ioi_superpose.training.system import HeadSuperposition
from tests.helpers import random_model


def chain_model() -> HookedTransformer:
    """Two layers, one head each, no LayerNorm, one-position prompts (attention is then 1 on itself):

        x = embedding of the token: clean (token 0) (1, 0, 0), corrupted (token 1) (−1, 0, 0)
        head 0.0: z = x[0],       writes z into coordinate 1
        head 1.0: z = resid[1],   writes z into coordinate 2      (it reads head 0.0's output)
        logit diff (answer 0 − answer 1) = resid[2] + 0.5 · resid[0]   (the direct path counts too)

    Clean: z = (1, 1), LD = 1.5; corrupted: z = (−1, −1), LD = −1.5; denoising effect = (LD + 1.5) / 3.
    """
    cfg = HookedTransformerConfig(
        n_layers=2, n_heads=1, d_model=3, d_head=1, d_vocab=3, n_ctx=4, attn_only=True, normalization_type=None,
        act_fn=None,
    )  # fmt: skip
    model = HookedTransformer(cfg)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.embed.W_E[0] = torch.tensor([1.0, 0.0, 0.0])
        model.embed.W_E[1] = torch.tensor([-1.0, 0.0, 0.0])
        model.blocks[0].attn.W_V[0, 0, 0] = 1.0  # reads x[0]
        model.blocks[0].attn.W_O[0, 0, 1] = 1.0  # writes coordinate 1
        model.blocks[1].attn.W_V[0, 1, 0] = 1.0  # reads coordinate 1
        model.blocks[1].attn.W_O[0, 0, 2] = 1.0  # writes coordinate 2
        model.unembed.W_U[2, 0] = 1.0
        model.unembed.W_U[0, 0] = 0.5
    return freeze(model)


def chain_prompts(n: int = 3) -> ContrastBatch:
    return ContrastBatch.from_tokens(torch.zeros(n, 1, dtype=torch.long), torch.ones(n, 1, dtype=torch.long),
                                     torch.tensor([[0, 1]] * n))  # fmt: skip


# By hand (chain_model's docstring). Cut: corrupted tokens, the set's z = clean, the rest recomputes.
# Frozen: clean tokens, heads outside the set at their corrupted z, the set computes.
#   cut {0.0}:    z0 = 1, z1 = 1 (recomputed)          final (−1, 1, 1)   LD  0.5  effect 2/3
#   cut {1.0}:    z0 = −1, z1 = 1                      final (−1, −1, 1)  LD  0.5  effect 2/3
#   cut {both}:                                        final (−1, 1, 1)   LD  0.5  effect 2/3
#   frozen {0.0}: z0 = 1, z1 = −1 (frozen)             final (1, 1, −1)   LD −0.5  effect 1/3
#   frozen {1.0}: z0 = −1 (frozen), z1 = −1 (reads it) final (1, −1, −1)  LD −0.5  effect 1/3
#   frozen {both}: the clean run                                          LD  1.5  effect 1
#   frozen ∅:     the clean tokens' direct path only   final (1, −1, −1)  LD −0.5  effect 1/3
# Soft α = (0.25, 0.25): cut z0 = −0.5, z1 = −0.5 + 0.25·1.5 = −0.125, LD = −0.625 (effect 0.875/3);
# frozen z0 = −0.5, z1 = −1 + 0.25·(−0.5 + 1) = −0.875, LD = −0.375 (effect 1.125/3).
HAND = {
    "free": {(1, 0): 2 / 3, (0, 1): 2 / 3, (1, 1): 2 / 3, (0, 0): 0.0, (0.25, 0.25): 0.875 / 3},
    "frozen": {(1, 0): 1 / 3, (0, 1): 1 / 3, (1, 1): 1.0, (0, 0): 1 / 3, (0.25, 0.25): 1.125 / 3},
}


def hooks_effect(model, clean, corrupted, answers, alpha, rest, direction="denoising"):
    """The effect of α by plain TransformerLens hooks (independent of the package's engine)."""
    base, source = (corrupted, clean) if direction == "denoising" else (clean, corrupted)
    _, base_cache = model.run_with_cache(base)
    _, source_cache = model.run_with_cache(source)
    recorded, tokens = (source_cache, base) if rest == "free" else (base_cache, source)
    hooks = []
    for layer in range(model.cfg.n_layers):
        name = f"blocks.{layer}.attn.hook_z"
        weight = alpha[layer].float()[None, None, :, None]

        def hook(z, hook, name=name, weight=weight):
            # free: z_current + α (z_source − z_current); frozen: z_base + α (z_current − z_base)
            return z + weight * (recorded[name] - z) if rest == "free" else recorded[name] + weight * (z - recorded[name])

        hooks.append((name, hook))
    patched = model.run_with_hooks(tokens, fwd_hooks=hooks)[:, -1]

    def ld(logits):
        return (logits.gather(-1, answers[:, :1]) - logits.gather(-1, answers[:, 1:])).mean()

    base_ld, source_ld = ld(model(base)[:, -1]), ld(model(source)[:, -1])
    return float((ld(patched) - base_ld) / (source_ld - base_ld))


@pytest.mark.parametrize("rest", ["free", "frozen"])
def test_hand_computed_two_layer_case(rest):
    model, prompts = chain_model(), chain_prompts()
    alphas = torch.tensor(list(HAND[rest]), dtype=torch.float32)[:, :, None]  # [variants, layer, head]
    expected = torch.tensor(list(HAND[rest].values()))
    torch.testing.assert_close(recovery_of(model, prompts, alphas, rest=rest), expected, atol=1e-5, rtol=0)
    for alpha, value in zip(alphas, expected.tolist()):  # the independent hooks agree with the hand numbers
        got = hooks_effect(model, prompts.clean_tokens, prompts.corrupted_tokens, prompts.answer_tokens, alpha, rest)
        assert got == pytest.approx(value, abs=1e-5)


def test_the_notions_differ_on_the_chain_and_the_circuit_needs_the_whole_path():
    model, prompts = chain_model(), chain_prompts()
    cases = ContrastBatch.from_tokens(prompts.clean_tokens, prompts.corrupted_tokens, prompts.answer_tokens,
                                      prompts.end_pos, name="chain")  # fmt: skip
    cut = search_subsets(model, cases, "denoising", threshold=0.6, rest="free")
    circuit = search_subsets(model, cases, "denoising", threshold=0.6, rest="frozen")
    assert sorted(map(sorted, cut.minimal_sets)) == [[(0, 0)], [(1, 0)]]  # either head alone: 2/3
    assert circuit.minimal_sets == [[(0, 0), (1, 0)]] and circuit.rest == "frozen"  # only the whole path
    assert circuit.subset_effect["1.0"] == pytest.approx(1 / 3, abs=1e-5)


@pytest.mark.parametrize("runner", ["fast", "hooks"])
def test_both_runners_run_the_frozen_notion(runner):
    model = random_model(n_layers=2, n_heads=3, d_model=24, seed=4)
    clean, corrupted, answers = _pairs(model)
    alpha = torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.0, 0.3]])
    reference = reference_runs(model, clean, corrupted, torch.full((len(clean),), clean.shape[1] - 1), answers,
                               "denoising", rest="frozen", runner=runner)  # fmt: skip
    run = BaseRun.prepare(model, clean)  # denoising: a circuit runs on the clean (source) tokens
    ends = torch.full((len(clean),), clean.shape[1] - 1)
    logits = patched_end_logits(run, reference.source_z, FrozenRest(HeadWeights(alpha)), ends, answers, runner=runner)
    effect = float((logit_diff(logits).mean() - logit_diff(reference.base_answer_logits).mean())
                   / (logit_diff(reference.source_answer_logits).mean() - logit_diff(reference.base_answer_logits).mean()))
    assert effect == pytest.approx(hooks_effect(model, clean, corrupted, answers, alpha, "frozen"), abs=1e-4)


def _pairs(model, n=6, length=5, seed=1, changed=slice(1, 3)):
    generator = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, model.cfg.d_vocab, (n, length), generator=generator)
    corrupted = clean.clone()
    corrupted[:, changed] = torch.randint(0, model.cfg.d_vocab, corrupted[:, changed].shape, generator=generator)
    answers = torch.randint(0, model.cfg.d_vocab, (n, 2), generator=generator)
    return clean, corrupted, answers


def test_a_circuit_is_the_cut_of_its_complement_in_the_other_direction():
    """frozen-denoising(S) = 1 − cut-noising(complement of S), subset by subset (the same forward)."""
    model = random_model(n_layers=2, n_heads=2, d_model=16, seed=2)
    clean, corrupted, answers = _pairs(model)
    prompts = ContrastBatch.from_tokens(clean, corrupted, answers, name="random")
    frozen = search_subsets(model, prompts, "denoising", threshold=0.5, rest="frozen").subset_effect
    cut = search_subsets(model, prompts, "noising", threshold=0.5, rest="free").subset_effect
    heads = {"0.0", "0.1", "1.0", "1.1"}
    for name, value in frozen.items():
        members = set() if name == "none" else set(name.split("+"))
        complement = "+".join(sorted(heads - members)) or "none"
        assert value == pytest.approx(1 - cut[complement], abs=2e-4), name


def test_one_layer_without_layernorm_the_notions_differ_by_the_direct_path():
    """One attention layer, no LayerNorm: frozen(S) − cut(S) is the same for every S, the effect of the
    source tokens' direct path alone (= frozen(∅)): the notions differ even where heads read embeddings only."""
    cfg = HookedTransformerConfig(n_layers=1, n_heads=3, d_model=12, d_head=4, d_vocab=20, n_ctx=8, attn_only=True,
                                  normalization_type=None, act_fn=None, seed=3)  # fmt: skip
    model = freeze(HookedTransformer(cfg))
    clean, corrupted, answers = _pairs(model, changed=slice(2, 5))  # END's token too: its direct path differs
    prompts = ContrastBatch.from_tokens(clean, corrupted, answers, name="one_layer")
    frozen = search_subsets(model, prompts, "denoising", threshold=0.5, rest="frozen").subset_effect
    cut = search_subsets(model, prompts, "denoising", threshold=0.5, rest="free").subset_effect
    direct = frozen["none"]
    assert abs(direct) > 1e-2  # the direct path moves the answer: the notions really differ
    for name in frozen:
        assert frozen[name] - cut[name] == pytest.approx(direct, abs=1e-4), name


def test_pruning_in_both_notions_on_the_chain():
    model, prompts = chain_model(), chain_prompts()
    cut = minimal_set(model, [prompts], "denoising", ScalarCombination(2, 1), 0.6, 0.05, rest="free")
    circuit = minimal_set(model, [prompts], "denoising", ScalarCombination(2, 1), 0.6, 0.05, rest="frozen")
    assert len(cut.support) == 1 and cut.effect == pytest.approx(2 / 3, abs=1e-5)
    assert circuit.support == [(0, 0), (1, 0)] and circuit.effect == pytest.approx(1.0, abs=1e-5)
    assert circuit.to_dict()["rest"] == "frozen"


def test_the_module_trains_a_circuit_and_rejects_unknown_rests():
    from ioi_superpose.api import learn_combination

    model, prompts = chain_model(), chain_prompts(4)
    result = learn_combination(model, prompts.clean_tokens, prompts.corrupted_tokens, prompts.answer_tokens,
                               steps=60, l1=1e-3, rest="frozen", prune_target=0.9)  # fmt: skip
    assert result.prune["rest"] == "frozen" and result.prune["support"] == [[0, 0], [1, 0]]
    assert result.recovery == pytest.approx(1.0, abs=1e-4)  # the pruned circuit, evaluated as a circuit
    with pytest.raises(ConfigError, match="^rest must be one of"):
        HeadSuperposition(preloaded_model=model, rest="open")
    with pytest.raises(ConfigError, match="'free'"):
        check_rest("cut")


@pytest.mark.parametrize("family", ["scalar", "per_position", "hard_concrete", "mixing"])
@pytest.mark.parametrize("rest", ["free", "frozen"])
def test_every_family_runs_both_notions(family, rest):
    """At init 0.25 every family is the weight 0.25 on every head (per_position: on every role; hard_concrete:
    its deterministic gate; mixing: diag(0.25)), so each must give the chain's hand-computed value."""
    from ioi_superpose.api import learn_combination

    model, prompts = chain_model(), chain_prompts(4)
    result = learn_combination(model, prompts.clean_tokens, prompts.corrupted_tokens, prompts.answer_tokens,
                               steps=1, lr=1e-7, l1=0.0, init=0.25, combination=family, rest=rest)  # fmt: skip
    assert result.recovery == pytest.approx(HAND[rest][(0.25, 0.25)], abs=1e-4)

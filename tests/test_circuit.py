"""Circuit criteria: a planted model whose heads add independent, hand-computable contributions to the logit
difference (one attention layer, uniform attention, no layer norm; head h adds w_h × the share of the answer tokens
among the tokens it reads), so F(S) under every ablation, the incompleteness of every K (= |F(M) − F(C)|) and each
head's minimality (= |Δ_v|) are known by construction; and checks on the toy IOI checkpoint."""

from __future__ import annotations

import pytest
import torch

from ioi_superpose.analyses.circuit import all_ablations, circuit_scores
from ioi_superpose.data.ioi import IOIBatch
from ioi_superpose.engine.ablations import ABLATIONS, ablation_values, derangement, resampled
from ioi_superpose.errors import ConfigError
from ioi_superpose.models import HookedTransformer, HookedTransformerConfig

VOCAB, N_HEADS, LENGTH, BATCH = 6, 4, 7, 10
WEIGHTS = torch.tensor([3.0, -2.0, 1.5, 0.5])  # w_h: head h writes w_h × (token histogram) into the logits


def additive_model() -> HookedTransformer:
    cfg = HookedTransformerConfig(n_layers=1, n_heads=N_HEADS, d_model=VOCAB, d_head=VOCAB, d_vocab=VOCAB,
                                  n_ctx=16, attn_only=True, normalization_type=None, act_fn=None)  # fmt: skip
    model = HookedTransformer(cfg)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()  # Q = K = 0: uniform causal attention; all biases 0
        model.W_E.copy_(torch.eye(VOCAB))
        model.W_U.copy_(torch.eye(VOCAB))
        for head in range(N_HEADS):
            model.blocks[0].attn.W_V[head] = torch.eye(VOCAB)
            model.blocks[0].attn.W_O[head] = WEIGHTS[head] * torch.eye(VOCAB)
    model.eval()
    return model


def prompts(seed: int = 0) -> IOIBatch:
    generator = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, VOCAB, (BATCH, LENGTH), generator=generator)
    answers = torch.stack([torch.randperm(VOCAB, generator=generator)[:2] for _ in range(BATCH)])
    clean[:, 1] = answers[:, 0]  # the IO position holds the correct answer: the clean share leans to A
    # Name swap: the corrupted prompt exchanges A and B, so its share is minus the clean one.
    a, b = answers[:, :1], answers[:, 1:]
    corrupted = torch.where(clean == a, b, torch.where(clean == b, a, clean))
    full = lambda value: torch.full((BATCH,), value)  # noqa: E731
    return IOIBatch(clean_tokens=clean, corrupted_tokens=corrupted, answer_tokens=answers, end_pos=full(LENGTH - 1),
                    index=torch.arange(BATCH), io_pos=full(1), s1_pos=full(2), s2_pos=full(4),
                    template_id=full(0))  # fmt: skip


def share(tokens: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """Per row: (#answer A − #answer B) / length among the tokens a uniform head reads at END (all of them)."""
    a = (tokens == answers[:, :1]).float().sum(-1)
    b = (tokens == answers[:, 1:]).float().sum(-1)
    return (a - b) / tokens.shape[1]


def expected_contributions(batch: IOIBatch, ablation: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(intact, ablated) contribution of each head to the mean logit difference, from the construction alone."""
    answers = batch.answer_tokens
    intact = share(batch.clean_tokens, answers).mean()
    if ablation == "zero":
        ablated = torch.tensor(0.0)
    elif ablation == "corrupted":
        ablated = share(batch.corrupted_tokens, answers).mean()
    elif ablation == "resample":
        ablated = share(batch.clean_tokens[derangement(BATCH, 0)], answers).mean()
    else:  # mean over the prompts' END z: the END z of a uniform head is the row's token histogram / length
        histogram = torch.nn.functional.one_hot(batch.clean_tokens, VOCAB).float().mean(1).mean(0)  # [vocab]
        ablated = (histogram[answers[:, 0]] - histogram[answers[:, 1]]).mean()
    return WEIGHTS * intact, WEIGHTS * ablated


@pytest.mark.parametrize("ablation", ABLATIONS)
@pytest.mark.parametrize("circuit", [[(0, 0), (0, 2)], [(0, 1)], [(0, 0), (0, 1), (0, 3)]])
def test_additive_model_by_construction(ablation, circuit):
    model, batch = additive_model(), prompts()
    intact, ablated = expected_contributions(batch, ablation)
    # The construction must tell the ablations apart, or this test could not catch one computed wrongly.
    values = [float(expected_contributions(batch, kind)[1][0]) for kind in ABLATIONS]
    assert min(abs(x - y) for i, x in enumerate(values) for y in values[i + 1 :]) > 0.01
    assert abs(float(intact[0] - ablated[0])) > 0.05
    direct = ((batch.clean_tokens[:, -1:] == batch.answer_tokens).float() @ torch.tensor([1.0, -1.0])).mean()
    f_model = direct + intact.sum()
    delta = ablated - intact  # change of F when head h alone is ablated
    outside = [h for h in range(N_HEADS) if (0, h) not in circuit]
    f_circuit = f_model + delta[outside].sum()
    scores = circuit_scores(model, circuit, batch, ablation)
    assert scores.model_logit_diff == pytest.approx(float(f_model), abs=1e-4)
    assert scores.circuit_logit_diff == pytest.approx(float(f_circuit), abs=1e-4)
    assert scores.faithfulness_gap == pytest.approx(abs(float(f_model - f_circuit)), abs=1e-4)
    # Additive heads: every K has incompleteness |F(M) − F(C)|; the greedy search can find nothing larger.
    assert scores.completeness["score"] == pytest.approx(abs(float(delta[outside].sum())), abs=1e-4)
    for step in scores.completeness["trajectory"]:
        assert step["score"] == pytest.approx(abs(float(delta[outside].sum())), abs=1e-4)
    for layer, head in circuit:
        assert scores.minimality[f"{layer}.{head}"]["score"] == pytest.approx(abs(float(delta[head])), abs=1e-4)


def test_ablations_differ_and_are_as_defined():
    """The four ablations give four different F(∅) on the planted model (the verdict can depend on the ablation)."""
    model, batch = additive_model(), prompts()
    empty = {a: circuit_scores(model, [], batch, a).circuit_logit_diff for a in ABLATIONS}
    assert len({round(v, 4) for v in empty.values()}) == 4
    zero = ablation_values(model, batch, "zero")
    assert zero.shape == (1, BATCH, LENGTH, N_HEADS, VOCAB) and not zero.any()


def test_derangement_has_no_fixed_point():
    for n, seed in [(2, 0), (5, 1), (64, 3)]:
        target = derangement(n, seed)
        assert sorted(target.tolist()) == list(range(n)) and (target != torch.arange(n)).all()
    assert torch.equal(derangement(9, 4), derangement(9, 4))


def test_resample_aligns_prompts_at_end():
    """Row b reads row π(b) at p − END_b + END_π(b): END reads END, and equal ENDs read index for index."""
    end_pos = torch.tensor([5, 7, 5, 7, 7, 5, 9, 9])
    z = torch.arange(8 * 10).float().view(1, 8, 10, 1, 1)  # z[b, p] = 10 b + p
    out = resampled(z, end_pos, seed=2)
    source = derangement(8, 2)
    for row in range(8):
        src = int(source[row])
        assert out[0, row, int(end_pos[row]), 0, 0] == 10 * src + int(end_pos[src])
        if end_pos[src] == end_pos[row]:
            assert torch.equal(out[0, row, :, 0, 0], z[0, src, :, 0, 0])


def test_bad_input_is_named():
    model, batch = additive_model(), prompts()
    with pytest.raises(ConfigError, match="ablation must be one of"):
        circuit_scores(model, [(0, 0)], batch, "gaussian")
    with pytest.raises(ConfigError, match="heads must be distinct"):
        circuit_scores(model, [(0, 0), (0, 0)], batch)
    with pytest.raises(ConfigError, match="heads must be distinct"):
        circuit_scores(model, [(1, 0)], batch)
    with pytest.raises(ConfigError, match="at least 2 prompts"):
        circuit_scores(model, [(0, 0)], batch[:1], "resample")


def test_toy_ioi_whole_model_is_faithful_and_complete():
    """Non-exact checks on the toy IOI model: the set of all heads is the model (faithfulness 1, incompleteness 0)."""
    from ioi_superpose.data.prompts import ioi_prompts
    from ioi_superpose.models import load_frozen_model

    model = load_frozen_model("checkpoints/toy_ioi.pt")
    batch = ioi_prompts("checkpoints/toy_ioi.pt", n=16, seed=1)
    every = [(layer, head) for layer in range(2) for head in range(4)]
    scores = all_ablations(model, every, batch)
    for result in scores.values():
        assert result.faithfulness == pytest.approx(1.0, abs=1e-5)
        assert result.completeness["score"] == pytest.approx(0.0, abs=1e-4)


def test_learned_set_is_scored_after_fit():
    """`circuit_criteria`: the learned head set (α above the L0 threshold) is scored under every ablation."""
    from ioi_superpose.api import learn_combination
    from tests.helpers import prompt_pairs, random_model

    model = random_model(n_layers=2, n_heads=2, d_model=16, seed=3)
    clean, corrupted, answers = prompt_pairs(model.cfg.d_vocab, batch=6, length=6, seed=1)
    result = learn_combination(model, clean, corrupted, answers, steps=3, circuit_criteria=True)
    assert set(result.circuit) == set(ABLATIONS)
    heads = sorted(tuple(h) for h in result.support)
    for ablation, scores in result.circuit.items():
        assert sorted(tuple(h) for h in scores["heads"]) == heads, ablation
        assert set(scores["minimality"]) == {f"{l}.{h}" for l, h in heads}


@pytest.mark.parametrize("ablation", ["zero", "mean"])
def test_model_ablation_is_the_noising_source(ablation):
    """--model.ablation: the source z are the ablation's values; α = 1 on every head is the fully ablated run
    (recovery 0), checked against TransformerLens hooks that write the same values; α = 0 is the clean run."""
    from ioi_superpose.data.batch import ContrastBatch
    from ioi_superpose.engine.vocabulary import hook_name
    from ioi_superpose.training.system import HeadSuperposition
    from tests.helpers import prompt_pairs, random_model

    model = random_model(n_layers=2, n_heads=2, d_model=16, seed=5)
    clean, corrupted, answers = prompt_pairs(model.cfg.d_vocab, batch=6, length=6, seed=2)
    batch = ContrastBatch.from_tokens(clean, corrupted, answers)
    system = HeadSuperposition(direction="noising", ablation=ablation, preloaded_model=model, init=1.0)
    reference = system.reference(batch)
    values = ablation_values(model, batch, ablation)
    assert torch.equal(reference.source_z, values)
    if ablation == "zero":
        assert not values.any()
    hooks = [(hook_name("z", layer), lambda z, hook, layer=layer: values[layer]) for layer in range(2)]
    with torch.no_grad():
        ablated = model.run_with_hooks(clean, fwd_hooks=hooks)[:, -1].gather(-1, answers)
    assert torch.allclose(reference.source_answer_logits, ablated, atol=1e-4)
    with torch.no_grad():
        patched = system.patched_end_logits(batch, reference)
        assert torch.allclose(patched, ablated, atol=1e-4)
        assert float(reference.recovery(patched)) == pytest.approx(0.0, abs=1e-4)
        system.combination.coefficients.zero_()
        assert float(reference.recovery(system.patched_end_logits(batch, reference))) == pytest.approx(1.0, abs=1e-4)


def test_model_ablation_needs_noising():
    from ioi_superpose.training.system import HeadSuperposition
    from tests.helpers import random_model

    with pytest.raises(ConfigError, match="Set direction noising"):
        HeadSuperposition(direction="denoising", ablation="zero", preloaded_model=random_model())
    with pytest.raises(ConfigError, match="^ablation must be one of"):
        HeadSuperposition(direction="noising", ablation="gauss", preloaded_model=random_model())


# --------------------------------------------------------------------------------------------------
# Ablation kinds as the source of the ground truth's and the activation-patching scorer's noising patches.


def test_exhaustive_zero_ablation_by_construction():
    """Zero ablation on the additive model: removing head h moves F by −w_h × the clean share (its contribution
    vanishes), removing every head by −Σ w × share, so the noising effect of S is Σ_S w / Σ w — from the weights
    alone. (The corrupted source normalises by the corrupted run, whose direct path differs: not this ratio.)"""
    from ioi_superpose.analyses.exhaustive import head_subsets, search_subsets, subset_effects

    model, batch = additive_model(), prompts()
    subsets = head_subsets(1, N_HEADS)
    expected = torch.stack([WEIGHTS[mask[0]].sum() for mask in subsets]) / WEIGHTS.sum()
    zero = subset_effects(model, batch, subsets, "noising", ablation="zero")
    assert torch.allclose(zero, expected, atol=1e-4)
    corrupted = subset_effects(model, batch, subsets, "noising")
    assert (corrupted - expected).abs().max() > 0.05  # the ablation argument changes what is computed
    search = search_subsets(model, batch, "noising", 0.9, ablation="zero")
    # Σ w = 3: {0} alone reaches 1.0 (w_0 = 3); nothing else of size 1 reaches 0.9.
    assert search.minimal_sets == [[(0, 0)]] and search.ablation == "zero"
    assert search.single_head_effect[0] == pytest.approx((WEIGHTS / WEIGHTS.sum()).tolist(), abs=1e-4)


def ioi_like_batch(d_vocab: int) -> IOIBatch:
    """Random equal-length prompts with IOI roles at fixed columns (IO 1, S1 2, S1+1 3, S2 4, END 6)."""
    from tests.helpers import prompt_pairs

    clean, corrupted, answers = prompt_pairs(d_vocab, batch=8, length=7, seed=4)
    full = lambda value: torch.full((8,), value)  # noqa: E731
    return IOIBatch(clean_tokens=clean, corrupted_tokens=corrupted, answer_tokens=answers, end_pos=full(6),
                    index=torch.arange(8), io_pos=full(1), s1_pos=full(2), s2_pos=full(4),
                    template_id=full(0))  # fmt: skip


def hand_ablation_values(model: HookedTransformer, batch: IOIBatch, ablation: str) -> torch.Tensor:
    """[layer, batch, pos, head, d_head] from the definitions, written independently of `ablation_values`: with
    one END column the resample needs no alignment, and each IOI role is one column (other: columns 0 and 5)."""
    with torch.no_grad():
        _, cache = model.run_with_cache(batch.clean_tokens)
    z = torch.stack([cache[f"blocks.{layer}.attn.hook_z"] for layer in range(model.cfg.n_layers)])
    if ablation == "zero":
        return torch.zeros_like(z)
    if ablation == "resample":
        return z[:, derangement(len(batch), 0)]
    out = torch.empty_like(z)
    for column in (1, 2, 3, 4, 6):
        out[:, :, column] = z[:, :, column].mean(1, keepdim=True)
    out[:, :, [0, 5]] = z[:, :, [0, 5]].flatten(1, 2).mean(1)[:, None, None]
    return out


def hooked_noising_effect(model: HookedTransformer, batch: IOIBatch, values: torch.Tensor, heads: list) -> float:
    """TransformerLens forward of the clean prompts with `heads`' z set to `values`: 0 = clean, 1 = every head."""

    def logit_diff(ablated: list) -> float:
        def hook(z, hook):
            layer = int(hook.name.split(".")[1])
            for patched_layer, head in ablated:
                if patched_layer == layer:
                    z[:, :, head] = values[layer][:, :, head]
            return z

        names = [f"blocks.{layer}.attn.hook_z" for layer in range(model.cfg.n_layers)]
        with torch.no_grad():
            logits = model.run_with_hooks(batch.clean_tokens, fwd_hooks=[(n, hook) for n in names])[:, -1]
        at_answers = logits.gather(-1, batch.answer_tokens)
        return float((at_answers[:, 0] - at_answers[:, 1]).mean())

    every = [(layer, head) for layer in range(model.cfg.n_layers) for head in range(model.cfg.n_heads)]
    clean, ablated = logit_diff([]), logit_diff(every)
    return (logit_diff(heads) - clean) / (ablated - clean)


@pytest.mark.parametrize("ablation", ["resample", "mean", "zero"])
def test_ablation_sources_agree_with_direct_hooks(ablation):
    """A two-layer model with MLPs and LayerNorm (nothing additive): the exhaustive search's subset effects and
    the activation-patching scorer's single-head effects equal a plain TransformerLens forward whose hook sets
    the patched heads' z to the ablation's values computed by hand."""
    from ioi_superpose.analyses.exhaustive import head_subsets, subset_effects
    from ioi_superpose.baselines.scorers import activation_patching
    from tests.helpers import random_model

    model = random_model(n_layers=2, n_heads=4, seed=7)
    batch = ioi_like_batch(model.cfg.d_vocab)
    values = hand_ablation_values(model, batch, ablation)
    subsets = head_subsets(2, 4)
    effects = subset_effects(model, batch, subsets, "noising", ablation=ablation)
    for index in (1, 6, 30, 100, 200, 255):  # singles, pairs, and every head (effect 1 by definition)
        heads = [tuple(h) for h in subsets[index].nonzero().tolist()]
        assert float(effects[index]) == pytest.approx(hooked_noising_effect(model, batch, values, heads), abs=2e-4)
    scores = activation_patching(model, batch, "noising", ablation=ablation)
    expected = torch.tensor([[hooked_noising_effect(model, batch, values, [(layer, head)]) for head in range(4)]
                             for layer in range(2)])  # fmt: skip
    assert torch.allclose(scores.cpu(), expected, atol=2e-4)
    # The default source is still the paired corrupted prompt, and it is a different patch.
    assert (activation_patching(model, batch, "noising").cpu() - expected).abs().max() > 0.01


def test_ablation_refused_where_it_makes_no_sense():
    from ioi_superpose.analyses.exhaustive import search_subsets
    from ioi_superpose.baselines.scorers import activation_patching

    model, batch = additive_model(), prompts()
    with pytest.raises(ConfigError, match="Pass direction='noising'"):
        search_subsets(model, batch, "denoising", ablation="zero")
    with pytest.raises(ConfigError, match="no source tokens for rest='frozen'"):
        search_subsets(model, batch, "noising", rest="frozen", ablation="mean")
    with pytest.raises(ConfigError, match="Pass direction='noising'"):
        activation_patching(model, batch, "denoising", ablation="resample")
    with pytest.raises(ConfigError, match="ablation must be one of"):
        activation_patching(model, batch, "noising", ablation="gaussian")


def test_model_ablation_needs_a_cut():
    """--model.ablation with --model.rest frozen used to train silently on a meaningless mix (a circuit runs on the
    source prompt, which an ablation has none of: α = 1 on every head read recovery 6.4 on a random model)."""
    from ioi_superpose.training.system import HeadSuperposition
    from tests.helpers import random_model

    with pytest.raises(ConfigError, match="has no source prompt for rest frozen"):
        HeadSuperposition(direction="noising", ablation="zero", rest="frozen", preloaded_model=random_model())
    HeadSuperposition(direction="noising", ablation="corrupted", rest="frozen", preloaded_model=random_model())

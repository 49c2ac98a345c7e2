import pytest
import torch

from ioi_superpose.baselines.logit_attribution import direct_logit_attribution
from tests.helpers import random_model


@pytest.mark.parametrize("attn_only", [False, True])
def test_components_add_up_to_the_logit_difference(attn_only):
    model = random_model(n_layers=2, n_heads=3, attn_only=attn_only)
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, model.cfg.d_vocab, (5, 9), generator=generator)
    answers = torch.randint(0, model.cfg.d_vocab, (5, 2), generator=generator)
    end = torch.tensor([8, 4, 6, 8, 2])
    result = direct_logit_attribution(model, tokens, answers, end)
    assert abs(result.logit_diff) > 0.1
    # The decomposition is exact: components + constant = the model's logit difference.
    assert result.decomposed.sum().item() + result.constant == pytest.approx(result.logit_diff, abs=1e-4)
    # The logit lens read at the end of the model is the logit difference too.
    assert result.accumulated[-1].item() + result.constant == pytest.approx(result.logit_diff, abs=1e-4)
    # Summed heads plus b_O equal each layer's attention output.
    for layer in range(model.cfg.n_layers):
        attn_out = result.decomposed[result.decomposed_labels.index(f"{layer}_attn_out")]
        b_o_only = direct_logit_attribution_of_bias(model, tokens, answers, end, layer)
        assert result.heads[layer].sum().item() + b_o_only == pytest.approx(attn_out.item(), abs=1e-4)


def direct_logit_attribution_of_bias(model, tokens, answers, end, layer):
    """The direct effect of `b_O` alone, computed independently from a cached run."""
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    rows = torch.arange(len(tokens))
    direction = (model.W_U[:, answers[:, 0]] - model.W_U[:, answers[:, 1]]).T * model.ln_final.w
    bias = model.blocks[layer].attn.b_O
    centred = bias - bias.mean()
    scale = cache["ln_final.hook_scale"][rows, end]
    return float(((centred / scale) * direction).sum(-1).mean())


def test_models_without_normalisation_decompose_exactly():
    from ioi_superpose.models import HookedTransformer, HookedTransformerConfig, freeze

    cfg = HookedTransformerConfig(
        n_layers=2, n_heads=2, d_model=16, d_head=8, d_vocab=30, n_ctx=16, attn_only=True,
        normalization_type=None, act_fn=None, seed=0,
    )  # fmt: skip
    model = freeze(HookedTransformer(cfg))
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 30, (4, 7), generator=generator)
    answers = torch.randint(0, 30, (4, 2), generator=generator)
    result = direct_logit_attribution(model, tokens, answers, torch.tensor([6, 3, 5, 6]))
    assert result.decomposed.sum().item() + result.constant == pytest.approx(result.logit_diff, abs=1e-4)
    assert result.heads.shape == (2, 2)


# ---------------------------------------------------------------------------------------------
# Per-head values against TransformerLens's own direct logit attribution.


def folded_copy(model):
    """The same network with LayerNorm folded (normalization_type becomes LNPre) and writing
    weights / unembedding centred: what `from_pretrained` gives by default."""
    from ioi_superpose.models import HookedTransformer, HookedTransformerConfig, freeze

    cfg = HookedTransformerConfig(**{**model.cfg.to_dict(), "normalization_type": "LN"})
    folded = HookedTransformer(cfg)
    folded.load_and_process_state_dict(
        model.state_dict(), fold_ln=True, center_writing_weights=True, center_unembed=True
    )
    return freeze(folded)


def transformer_lens_head_attribution(model, tokens, answers, end):
    """Mean over prompts of TransformerLens's per-head DLA at each prompt's own END position.

    Prompts are right-padded with different ENDs: each prompt is run alone, cut after its END (causal
    attention: nothing at or before END changes), and read at its last position.
    """
    values = []
    for i in range(len(tokens)):
        with torch.no_grad():
            _, cache = model.run_with_cache(tokens[i : i + 1, : int(end[i]) + 1])
        stack = cache.stack_head_results(layer=-1, pos_slice=-1)  # [layer*head, 1, d_model]
        scaled = cache.apply_ln_to_stack(stack, layer=-1, pos_slice=-1)
        direction = model.tokens_to_residual_directions(answers[i, 0]) - model.tokens_to_residual_directions(
            answers[i, 1]
        )
        if model.cfg.normalization_type == "LN":  # unfolded: TransformerLens leaves the LN weight out
            direction = direction * model.ln_final.w
        values.append((scaled[:, 0] * direction).sum(-1))
    return torch.stack(values).mean(0).view(model.cfg.n_layers, model.cfg.n_heads)


def dla_inputs(d_vocab, batch=5, length=9, seed=0):
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, d_vocab, (batch, length), generator=generator)
    answers = torch.randint(0, d_vocab, (batch, 2), generator=generator)
    end = torch.tensor([8, 4, 6, 8, 2][:batch])
    return tokens, answers, end


@pytest.mark.parametrize("attn_only", [False, True])
def test_head_attribution_equals_transformer_lens_unfolded_and_folded(attn_only):
    unfolded = random_model(n_layers=2, n_heads=3, attn_only=attn_only)
    folded = folded_copy(unfolded)
    assert unfolded.cfg.normalization_type == "LN" and folded.cfg.normalization_type == "LNPre"
    tokens, answers, end = dla_inputs(unfolded.cfg.d_vocab)
    with torch.no_grad():  # folding must not change the network
        torch.testing.assert_close(folded(tokens).log_softmax(-1), unfolded(tokens).log_softmax(-1), atol=1e-4, rtol=0)
    results = {}
    for name, model in (("unfolded", unfolded), ("folded", folded)):
        ours = direct_logit_attribution(model, tokens, answers, end).heads
        reference = transformer_lens_head_attribution(model, tokens, answers, end)
        assert ours.shape == (2, 3)
        assert reference.abs().max() > 0.1 and reference.std() > 0.05
        torch.testing.assert_close(ours, reference, atol=1e-4, rtol=1e-4, msg=f"{name}: per-head DLA")
        results[name] = ours
    # Folding LayerNorm (and centring W_O) leaves each head's direct effect unchanged.
    torch.testing.assert_close(results["folded"], results["unfolded"], atol=1e-4, rtol=1e-4)


def test_head_attribution_equals_transformer_lens_on_a_loaded_gpt2(tiny_gpt2_dir):
    """GPT-2 shapes and vocabulary, loaded the way users load GPT-2 (LayerNorm folded)."""
    from ioi_superpose.models import load_frozen_model

    model = load_frozen_model(str(tiny_gpt2_dir))
    assert model.cfg.normalization_type == "LNPre"
    tokens, answers, end = dla_inputs(model.cfg.d_vocab, seed=1)
    ours = direct_logit_attribution(model, tokens, answers, end).heads
    reference = transformer_lens_head_attribution(model, tokens, answers, end)
    assert reference.abs().max() > 5e-3  # random GPT-2 init (std 0.02): small, yet 500× atol
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-4)

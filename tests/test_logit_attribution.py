import pytest
import torch

from conftest import random_model
from ioi_superpose.logit_attribution import direct_logit_attribution


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

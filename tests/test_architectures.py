"""Nothing assumes GPT-2: small random-weight models of two other TransformerLens architectures — NeoX-style (rotary,
parallel attention and MLP) and Llama-style (rotary, RMSNorm, gated MLP, grouped-query attention) — through the engine,
direct logit attribution, a learned fit, and the fast runner's allow-list, agreement check and loud fallback."""

from __future__ import annotations

import warnings

import pytest
import torch

from ioi_superpose.api import learn_combination
from ioi_superpose.baselines.logit_attribution import direct_logit_attribution
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.engine import fast_forward
from ioi_superpose.engine.fast_forward import FastRunnerWarning, disagreement, resolve_runner, unsupported
from ioi_superpose.engine.metric import logit_diff
from ioi_superpose.engine.runs import recovery_of
from ioi_superpose.errors import ConfigError
from ioi_superpose.models import HookedTransformer, HookedTransformerConfig, freeze

SHARED = dict(n_layers=2, n_heads=4, d_model=32, d_head=8, d_mlp=64, d_vocab=50, n_ctx=16, seed=0)
ARCHITECTURES = {
    "neox": dict(act_fn="gelu", normalization_type="LN", positional_embedding_type="rotary", rotary_dim=8,
                 parallel_attn_mlp=True, original_architecture="GPTNeoXForCausalLM"),
    "llama_gqa": dict(act_fn="silu", normalization_type="RMS", positional_embedding_type="rotary", rotary_dim=8,
                      gated_mlp=True, n_key_value_heads=2, original_architecture="LlamaForCausalLM"),
}  # fmt: skip


def build(name: str, **overrides: object) -> HookedTransformer:
    model = HookedTransformer(HookedTransformerConfig(**{**SHARED, **ARCHITECTURES[name], **overrides}))
    with torch.no_grad():  # larger weights: patches have visible effects
        for parameter in model.parameters():
            parameter.mul_(3.0)
    return freeze(model)


def contrast(n: int = 6, length: int = 8) -> ContrastBatch:
    generator = torch.Generator().manual_seed(0)
    clean = torch.randint(0, 50, (n, length), generator=generator)
    corrupted = clean.clone()
    corrupted[:, 3] = torch.randint(0, 50, (n,), generator=generator)
    answers = torch.randint(0, 50, (n, 2), generator=generator)
    return ContrastBatch.from_tokens(clean, corrupted, answers)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_the_fast_runner_falls_back_loudly_and_the_engine_patches_as_transformer_lens_does(name: str) -> None:
    model, batch = build(name), contrast()
    assert "rotary" in unsupported(model)
    with pytest.warns(FastRunnerWarning, match="rotary"):
        assert resolve_runner(model, "auto") == "hooks"
    with pytest.raises(ConfigError, match="runner='fast' cannot run"):
        resolve_runner(model, "fast")
    alpha = torch.rand(3, 2, 4, generator=torch.Generator().manual_seed(1))
    alpha[0], alpha[1] = 1.0, 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FastRunnerWarning)
        ours = recovery_of(model, batch, alpha)
    # The same patches by hand with TransformerLens hooks: z = z_corrupted + α (z_clean − z_corrupted).
    _, clean_cache = model.run_with_cache(batch.clean_tokens, names_filter=lambda n: n.endswith("hook_z"))
    rows = torch.arange(len(batch))

    def mean_diff(tokens: torch.Tensor, hooks: list) -> torch.Tensor:
        logits = model.run_with_hooks(tokens, fwd_hooks=hooks)[rows, batch.end_pos]
        return logit_diff(logits.gather(-1, batch.answer_tokens)).mean()

    clean, corrupted = mean_diff(batch.clean_tokens, []), mean_diff(batch.corrupted_tokens, [])
    expected = []
    for weights in alpha:
        hooks = [(f"blocks.{layer}.attn.hook_z",
                  lambda z, hook, layer=layer, w=weights: z + w[layer][:, None] * (clean_cache[hook.name] - z))
                 for layer in range(2)]  # fmt: skip
        expected.append((mean_diff(batch.corrupted_tokens, hooks) - corrupted) / (clean - corrupted))
    assert torch.allclose(ours, torch.stack(expected), atol=1e-4), (ours, expected)
    assert ours[0] == pytest.approx(1.0, abs=1e-5) and ours[1] == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_direct_logit_attribution_decomposes_the_logit_difference(name: str) -> None:
    model, batch = build(name), contrast()
    result = direct_logit_attribution(model, batch.clean_tokens, batch.answer_tokens, batch.end_pos)
    assert all(not label.endswith("_mid") for label in result.accumulated_labels) == (name == "neox")
    assert float(result.decomposed.sum()) + float(result.constant) == pytest.approx(result.logit_diff, abs=1e-3)
    assert result.heads.shape == (2, 4)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_a_combination_is_learned_on_the_architecture(name: str) -> None:
    model, batch = build(name), contrast(n=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FastRunnerWarning)
        warnings.simplefilter("ignore", UserWarning)  # a small clean − corrupted gap on random weights
        result = learn_combination(model, batch.clean_tokens, batch.corrupted_tokens, batch.answer_tokens, steps=5,
                                   prune_target=None)  # fmt: skip
    assert result.coefficients.shape == (2, 4) and torch.isfinite(result.coefficients).all()
    assert not torch.equal(result.coefficients, torch.ones(2, 4))  # it took steps


@pytest.mark.parametrize(("name", "field", "value"), [
    ("neox", "positional_embedding_type", "rotary"),
    ("neox", "parallel_attn_mlp", True),
])  # fmt: skip
def test_the_agreement_check_catches_what_a_too_wide_allow_list_would_let_through(name, field, value, monkeypatch):
    # Were the allow-list to accept rotary or parallel attention, the fast forward would compute GPT-2's blocks:
    # the agreement check (one batch through both runners) must see it and fall back, loudly.
    overrides = {} if field == "positional_embedding_type" else {"positional_embedding_type": "standard"}
    if field == "positional_embedding_type":
        overrides["parallel_attn_mlp"] = False
    model = build(name, **overrides)
    widened = {**fast_forward._REQUIRED_CONFIG, field: (*fast_forward._REQUIRED_CONFIG[field], value)}
    monkeypatch.setattr(fast_forward, "_REQUIRED_CONFIG", widened)
    assert unsupported(model) is None
    assert "differ from TransformerLens's" in disagreement(model)
    with pytest.warns(FastRunnerWarning, match="differ from TransformerLens's"):
        assert resolve_runner(model, "auto") == "hooks"


def test_grouped_query_attention_is_refused_by_its_class_even_with_the_config_allowed(monkeypatch) -> None:
    model = build("llama_gqa", positional_embedding_type="standard", normalization_type="LN", gated_mlp=False,
                  act_fn="gelu")  # fmt: skip
    assert "n_key_value_heads" in unsupported(model)
    widened = {**fast_forward._REQUIRED_CONFIG, "n_key_value_heads": (None, 2)}
    monkeypatch.setattr(fast_forward, "_REQUIRED_CONFIG", widened)
    assert "GroupedQueryAttention" in unsupported(model)

"""The fast runner equals TransformerLens (hooks) to 1e-4 on the architectures it supports."""

import warnings

import pytest
import torch

from ioi_superpose.combinations import HeadCombination
from ioi_superpose.engine.fast_forward import FastRunnerWarning, resolve_runner, unsupported
from ioi_superpose.engine.patch import HeadWeights
from ioi_superpose.engine.runs import BaseRun, patched_end_logits, reference_runs
from ioi_superpose.errors import ConfigError
from ioi_superpose.models import HookedTransformer, HookedTransformerConfig, freeze
from tests.helpers import hooks_attached, prompt_pairs

ATOL = 1e-4

ARCHITECTURES = {
    "ln_gelu_new": dict(normalization_type="LN", act_fn="gelu_new"),
    "ln_gelu": dict(normalization_type="LN", act_fn="gelu"),
    "lnpre_folded": dict(normalization_type="LN", act_fn="gelu_new", fold=True),
    "lnpre_cfg": dict(normalization_type="LNPre", act_fn="gelu"),
    "attn_only": dict(normalization_type="LN", attn_only=True),
    "attn_only_no_norm": dict(normalization_type=None, attn_only=True),
    "shortformer": dict(normalization_type="LN", act_fn="gelu_new", positional_embedding_type="shortformer"),
    "shortformer_relu_no_norm": dict(normalization_type=None, act_fn="relu", positional_embedding_type="shortformer"),
    "shortformer_attn_only_lnpre": dict(
        normalization_type="LNPre", attn_only=True, positional_embedding_type="shortformer"
    ),
}


def tiny(name: str, seed: int = 0) -> HookedTransformer:
    settings = dict(ARCHITECTURES[name])
    fold = settings.pop("fold", False)
    attn_only = settings.get("attn_only", False)
    cfg = HookedTransformerConfig(
        n_layers=3, n_heads=4, d_model=32, d_head=8, d_mlp=None if attn_only else 64, d_vocab=40, n_ctx=32,
        seed=seed, **settings,
    )  # fmt: skip
    model = HookedTransformer(cfg)
    scale = 1.0 if cfg.normalization_type is None else 3.0  # visible patch effects; no LN: logits stay O(10)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim > 1:
                parameter.mul_(scale)
            elif parameter.ndim == 1 and parameter.shape[0] == cfg.d_model:
                parameter.add_(0.1 * torch.randn_like(parameter))  # non-trivial LN weights and biases
    if fold:
        model.process_weights_(fold_ln=True, center_writing_weights=True, center_unembed=True)
        assert cfg.normalization_type == "LNPre"
    return freeze(model)


def padded_base(model: HookedTransformer, tokens: torch.Tensor) -> tuple[BaseRun, torch.Tensor]:
    """A base run of left-padded prompts (rows pad 0..3 tokens), as TransformerLens masks them."""
    mask = torch.ones_like(tokens)
    for row in range(len(tokens)):
        mask[row, : row % 4] = 0
    embed, _, shortformer, attention_mask = model.input_to_embed(tokens, attention_mask=mask)
    base = BaseRun(model, tokens.shape[0], tokens.shape[1], embed, shortformer, attention_mask, {})
    return base, torch.full((len(tokens),), tokens.shape[1] - 1)


def alphas(model: HookedTransformer) -> torch.Tensor:
    shape = (model.cfg.n_layers, model.cfg.n_heads)
    random = torch.rand(2, *shape, generator=torch.Generator().manual_seed(1))
    return torch.stack([torch.zeros(shape), torch.ones(shape), *random])


def both_runners(base, source_z, combination, end, vocab_index=None):
    return [
        patched_end_logits(base, source_z, combination, end, vocab_index, runner=runner, max_rows=12)
        for runner in ("fast", "hooks")
    ]


@pytest.mark.parametrize("name", ARCHITECTURES)
@pytest.mark.parametrize("padding", [False, True])
def test_patched_end_logits_equal_transformer_lens(name, padding):
    model = tiny(name)
    assert unsupported(model) is None
    clean, corrupted, answers = prompt_pairs(model.cfg.d_vocab, batch=6, length=8)
    end = torch.full((len(clean),), clean.shape[1] - 1)
    with torch.no_grad():
        reference = reference_runs(model, clean, corrupted, end, answers, "denoising", runner="hooks")
        if padding:
            base, end = padded_base(model, corrupted)
        else:
            base = BaseRun.prepare(model, corrupted)
        # α = 0, α = 1 and random α, folded as variants (and chunked: max_rows=12 is two variants).
        fast, hooks = both_runners(base, reference.source_z, HeadWeights(alphas(model)), end)
    assert fast.shape == hooks.shape == (4, len(clean), model.cfg.d_vocab)
    assert hooks.std() > 0.1 and (hooks[0] - hooks[1]).abs().max() > 1e-2  # the comparison has teeth
    assert torch.allclose(fast, hooks, atol=ATOL), (fast - hooks).abs().max()
    if not padding:  # α = 0 is the unpatched base run, TransformerLens's own forward
        with torch.no_grad():
            assert torch.allclose(fast[0], model(corrupted)[:, -1], atol=ATOL)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_reference_runs_equal_transformer_lens(name):
    model = tiny(name)
    clean, corrupted, answers = prompt_pairs(model.cfg.d_vocab, batch=5, length=7)
    end = torch.tensor([6, 5, 6, 3, 6])
    runs = [reference_runs(model, clean, corrupted, end, answers, "noising", True, runner=r) for r in ("fast", "hooks")]
    fast, hooks = runs
    for field in ("source_z", "source_answer_logits", "base_answer_logits", "source_log_probs"):
        assert torch.allclose(getattr(fast, field), getattr(hooks, field), atol=ATOL), field
    _, cache = model.run_with_cache(corrupted)
    assert torch.allclose(fast.source_z[2], cache["blocks.2.attn.hook_z"], atol=ATOL)


@pytest.mark.parametrize("name", ["ln_gelu_new", "lnpre_folded", "attn_only", "shortformer"])
@pytest.mark.parametrize("padding", [False, True])
def test_gradients_wrt_alpha_equal_transformer_lens(name, padding):
    model = tiny(name, seed=3)
    clean, corrupted, answers = prompt_pairs(model.cfg.d_vocab, batch=6, length=8, seed=2)
    end = torch.full((len(clean),), clean.shape[1] - 1)
    reference = reference_runs(model, clean, corrupted, end, answers, "denoising")
    base, end = padded_base(model, corrupted) if padding else (BaseRun.prepare(model, corrupted, prefixes=False), end)
    grads = []
    for runner in ("fast", "hooks"):
        combination = HeadCombination(model.cfg.n_layers, model.cfg.n_heads, bounded=False)
        with torch.no_grad():
            combination.coefficients.copy_(alphas(model)[2])
        logits = patched_end_logits(base, reference.source_z, combination, end, answers, runner=runner)[0]
        (logits[:, 0] - 0.5 * logits[:, 1]).pow(2).mean().backward()
        grads.append(combination.coefficients.grad)
    assert grads[1].abs().max() > 1e-3
    assert torch.allclose(grads[0], grads[1], atol=ATOL, rtol=1e-4), (grads[0] - grads[1]).abs().max()
    assert hooks_attached(model) == 0


def test_unsupported_models_fall_back_loudly():
    model = tiny("ln_gelu_new")
    model.cfg.act_fn = "silu"  # an architecture the runner was not tested on
    assert "act_fn" in unsupported(model)
    with pytest.warns(FastRunnerWarning, match="act_fn"):
        assert resolve_runner(model, "auto") == "hooks"
    with pytest.raises(ConfigError, match="runner='fast' cannot run"):
        resolve_runner(model, "fast")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_runner(model, "hooks") == "hooks"
    with pytest.raises(ConfigError, match="runner must be one of"):
        resolve_runner(model, "fastest")


def test_attached_hooks_make_auto_use_transformer_lens():
    model = tiny("attn_only")
    clean, corrupted, answers = prompt_pairs(model.cfg.d_vocab)
    end = torch.full((len(clean),), clean.shape[1] - 1)
    model.add_hook("blocks.0.hook_resid_pre", lambda act, hook: act * 0.5)
    try:
        with pytest.warns(FastRunnerWarning, match="hooks are attached"):
            halved = reference_runs(model, clean, corrupted, end, answers, "denoising")
    finally:
        model.reset_hooks()
    plain = reference_runs(model, clean, corrupted, end, answers, "denoising")
    assert not torch.allclose(halved.base_answer_logits, plain.base_answer_logits, atol=1e-3)  # the hook fired
    assert resolve_runner(model, "auto") == "fast"


def test_head_superposition_trains_on_the_fast_runner(monkeypatch):
    from ioi_superpose.data.batch import ContrastBatch
    from ioi_superpose.engine import fast_forward
    from ioi_superpose.training.system import HeadSuperposition

    model = tiny("ln_gelu_new")
    assert fast_forward.disagreement(model) is None  # the once-per-model agreement check, before counting
    calls = []
    real = fast_forward.end_residual
    monkeypatch.setattr(fast_forward, "end_residual", lambda *args, **kwargs: calls.append(1) or real(*args, **kwargs))
    system = HeadSuperposition(model_name="test", preloaded_model=model, cache_source_activations=False)
    batch = ContrastBatch.from_tokens(*prompt_pairs(model.cfg.d_vocab))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FastRunnerWarning)
        system.loss_terms(batch, system.reference(batch, cached_rows=True))["loss"].backward()
    assert len(calls) == 2  # the reference runs (one folded forward) and the patched run
    assert system.combination.coefficients.grad.abs().sum() > 0
    assert hooks_attached(model) == 0


def test_a_model_the_fast_runner_computes_differently_falls_back_to_transformer_lens():
    # The allow-list reads config and classes only: a zeroed IGNORE buffer (TransformerLens then attends to
    # future positions) passes it, so the engine must compare the two runners on the model itself.
    model = tiny("ln_gelu_new")
    assert unsupported(model) is None
    for block in model.blocks:
        block.attn.IGNORE.fill_(0.0)
    clean, corrupted, answers = prompt_pairs(model.cfg.d_vocab)
    end = torch.full((len(clean),), clean.shape[1] - 1)
    with pytest.warns(FastRunnerWarning, match=r"differ from TransformerLens's by up to \d"):
        auto = reference_runs(model, clean, corrupted, end, answers, "denoising")
    hooks = reference_runs(model, clean, corrupted, end, answers, "denoising", runner="hooks")
    torch.testing.assert_close(auto.source_answer_logits, hooks.source_answer_logits, atol=ATOL, rtol=0)
    torch.testing.assert_close(auto.base_answer_logits, hooks.base_answer_logits, atol=ATOL, rtol=0)
    with pytest.raises(ConfigError, match="runner='fast' cannot run this model: its END logits differ"):
        reference_runs(model, clean, corrupted, end, answers, "denoising", runner="fast")


def test_models_the_fast_runner_computes_exactly_pass_the_agreement_check():
    from ioi_superpose.engine.fast_forward import disagreement

    for name in ARCHITECTURES:
        assert disagreement(tiny(name)) is None, name

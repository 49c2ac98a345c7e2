"""Patching: drop-ins equal TransformerLens, attribution equals gradient × delta, path patching
reduces to activation patching in the cases where it must."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import pytest
import torch
from torch import Tensor

# The reference implementation our drop-ins must equal (the package itself touches TransformerLens
# only inside ioi_superpose.models).
from transformer_lens import patching as tl_patching
from transformer_lens import utils as tl_utils

from ioi_superpose.baselines import patching
from ioi_superpose.engine import runs
from ioi_superpose.engine.metric import ContrastMetric
from ioi_superpose.models import ActivationCache, HookedTransformer, HookedTransformerConfig, freeze
from tests.helpers import prompt_pairs, random_model

ATOL = 1e-4

DROP_INS = [
    "get_act_patch_attn_head_out_all_pos",
    "get_act_patch_attn_head_out_by_pos",
    "get_act_patch_resid_pre",
    "get_act_patch_resid_mid",
    "get_act_patch_attn_out",
    "get_act_patch_mlp_out",
    "get_act_patch_attn_head_q_all_pos",
    "get_act_patch_attn_head_k_all_pos",
    "get_act_patch_attn_head_v_all_pos",
    "get_act_patch_attn_head_pattern_all_pos",
    "get_act_patch_attn_head_q_by_pos",
    "get_act_patch_attn_head_k_by_pos",
    "get_act_patch_attn_head_v_by_pos",
    "get_act_patch_attn_head_pattern_by_pos",
]
MLP_ONLY = {"get_act_patch_resid_mid", "get_act_patch_mlp_out"}

CONFIGS = {
    # The brief's main shape: MLPs, LayerNorm.
    "mlp": dict(
        n_layers=2, n_heads=3, d_model=24, d_head=8, d_mlp=32, d_vocab=50, n_ctx=32,
        act_fn="gelu", normalization_type="LN",
    ),
    "attn_only": dict(
        n_layers=2, n_heads=4, d_model=16, d_head=4, d_vocab=40, n_ctx=32, attn_only=True,
        normalization_type="LN",
    ),
    # No final norm (ContrastMetric falls back to full logits) and shortformer positions (passed
    # separately when a forward starts at a later layer).
    "shortformer_nonorm": dict(
        n_layers=3, n_heads=2, d_model=16, d_head=8, d_mlp=16, d_vocab=30, n_ctx=32, act_fn="relu",
        normalization_type=None, positional_embedding_type="shortformer", initializer_range=0.3,
    ),
}  # fmt: skip
SEQ_LEN = {"mlp": 7, "attn_only": 9, "shortformer_nonorm": 7}


@dataclass
class Setup:
    model: HookedTransformer
    clean: Tensor
    corrupted: Tensor
    clean_cache: ActivationCache
    corrupted_cache: ActivationCache
    metrics: dict[str, Callable[[Tensor], Tensor]]


def make_model(name: str, seed: int = 0) -> HookedTransformer:
    torch.manual_seed(seed)
    cfg = HookedTransformerConfig(**{"initializer_range": 0.5, **CONFIGS[name]}, seed=seed)
    return freeze(HookedTransformer(cfg))


def make_metrics(answers: Tensor, ends: Tensor) -> dict[str, Callable[[Tensor], Tensor]]:
    rows = torch.arange(len(ends))
    return {
        "logit_diff": ContrastMetric(answers, ends),
        # A black box for our code: log-probability of the correct answer at END.
        "log_prob": lambda logits: logits.log_softmax(-1)[rows, ends, answers[:, 0]].mean(),
    }




@pytest.fixture(scope="module", params=list(CONFIGS))
def setup(request: pytest.FixtureRequest) -> Setup:
    model = make_model(request.param)
    torch.manual_seed(1)
    batch, seq = 3, SEQ_LEN[request.param]
    vocab = model.cfg.d_vocab
    clean = torch.randint(0, vocab, (batch, seq))
    corrupted = clean.clone()
    corrupted[:, [1, seq - 3]] = torch.randint(0, vocab, (batch, 2))
    ends = torch.tensor([seq - 1, seq - 2, seq - 3])  # right-padded prompts
    answers = torch.randint(0, vocab, (batch, 2))
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(clean)
        _, corrupted_cache = model.run_with_cache(corrupted)
    return Setup(model, clean, corrupted, clean_cache, corrupted_cache, make_metrics(answers, ends))


def no_hooks_left(model: HookedTransformer) -> bool:
    return all(len(hp.fwd_hooks) == 0 and len(hp.bwd_hooks) == 0 for hp in model.hook_dict.values())


def metric_of(model: HookedTransformer, tokens: Tensor, metric: Callable, hooks: list = []) -> float:
    with torch.no_grad():
        return float(metric(model.run_with_hooks(tokens, fwd_hooks=hooks)))


# ---------------------------------------------------------------------------------------------
# Exact activation patching: drop-ins for TransformerLens.


@pytest.mark.parametrize("direction", ["denoising", "noising"])
@pytest.mark.parametrize("metric_name", ["logit_diff", "log_prob"])
@pytest.mark.parametrize("name", DROP_INS)
def test_drop_in_equals_transformer_lens(setup: Setup, name: str, metric_name: str, direction: str) -> None:
    if name in MLP_ONLY and setup.model.cfg.attn_only:
        with pytest.raises(ValueError, match="no hook point"):
            getattr(patching, name)(setup.model, setup.corrupted, setup.clean_cache, setup.metrics[metric_name])
        return
    # Noising = TransformerLens called with clean and corrupted swapped.
    base, source_cache = (
        (setup.corrupted, setup.clean_cache) if direction == "denoising" else (setup.clean, setup.corrupted_cache)
    )
    metric = setup.metrics[metric_name]
    ours = getattr(patching, name)(setup.model, base, source_cache, metric, max_batch=7)
    reference = getattr(tl_patching, name)(setup.model, base, source_cache, metric)
    assert no_hooks_left(setup.model)
    assert ours.shape == reference.shape
    assert ours.std() > 1e-3, "patching effects too small for the comparison to mean anything"
    torch.testing.assert_close(ours, reference, atol=ATOL, rtol=0)


def test_pattern_dest_src_equals_transformer_lens() -> None:
    model = make_model("attn_only")
    torch.manual_seed(2)
    clean = torch.randint(0, model.cfg.d_vocab, (2, 5))
    corrupted = torch.randint(0, model.cfg.d_vocab, (2, 5))
    _, cache = model.run_with_cache(clean)
    metric = make_metrics(torch.tensor([[1, 2], [3, 4]]), torch.tensor([4, 3]))["logit_diff"]
    ours = patching.get_act_patch_attn_head_pattern_dest_src_pos(model, corrupted, cache, metric)
    reference = tl_patching.get_act_patch_attn_head_pattern_dest_src_pos(model, corrupted, cache, metric)
    assert ours.shape == (2, 4, 5, 5)
    torch.testing.assert_close(ours, reference, atol=ATOL, rtol=0)


@pytest.mark.parametrize("activation", ["z", "resid_pre", "pattern", "v"])
def test_chunking_does_not_change_results(setup: Setup, activation: str) -> None:
    metric = setup.metrics["logit_diff"]
    runs = [
        patching.activation_patch(setup.model, setup.corrupted, setup.clean, metric, activation, by_pos=True, max_batch=m)
        for m in (1, 7, 10_000)
    ]  # fmt: skip
    for other in runs[1:]:
        torch.testing.assert_close(other, runs[0], atol=1e-5, rtol=0)


def test_source_tokens_equal_source_cache(setup: Setup) -> None:
    metric = setup.metrics["log_prob"]
    from_tokens = patching.activation_patch(setup.model, setup.corrupted, setup.clean, metric, "z", by_pos=True)
    from_cache = patching.activation_patch(setup.model, setup.corrupted, setup.clean_cache, metric, "z", by_pos=True)
    torch.testing.assert_close(from_tokens, from_cache, atol=1e-6, rtol=0)


def test_patching_from_the_base_run_changes_nothing(setup: Setup) -> None:
    metric = setup.metrics["logit_diff"]
    base_value = metric_of(setup.model, setup.corrupted, metric)
    for activation in ("z", "q", "pattern", "resid_pre", "attn_out"):
        result = patching.activation_patch(setup.model, setup.corrupted, setup.corrupted_cache, metric, activation)
        torch.testing.assert_close(result, torch.full_like(result, base_value), atol=1e-5, rtol=0)


@pytest.mark.parametrize("direction", ["denoising", "noising"])
def test_resid_patching_at_the_only_changed_position(direction: str) -> None:
    """Clean and corrupted differ at one position p: patching resid_pre[0, p] swaps the whole input
    (full recovery), any earlier position changes nothing at any layer (causal attention)."""
    model = make_model("mlp")
    torch.manual_seed(3)
    clean = torch.randint(0, model.cfg.d_vocab, (3, 9))
    corrupted = clean.clone()
    corrupted[:, 4] = (clean[:, 4] + 1) % model.cfg.d_vocab
    raw = make_metrics(torch.randint(0, model.cfg.d_vocab, (3, 2)), torch.tensor([8, 7, 6]))["logit_diff"]
    clean_value, corrupted_value = metric_of(model, clean, raw), metric_of(model, corrupted, raw)
    metric = ContrastMetric(raw.answer_tokens, raw.end_positions, corrupted_value, clean_value)
    base, source = runs.base_and_source(clean, corrupted, direction)  # type: ignore[arg-type]
    result = patching.activation_patch(model, base, source, metric, "resid_pre")
    base_value = 0.0 if direction == "denoising" else 1.0  # normalised: corrupted 0, clean 1
    torch.testing.assert_close(result[0, 4], torch.tensor(1.0 - base_value), atol=1e-4, rtol=0)
    torch.testing.assert_close(result[:, :4], torch.full((2, 4), base_value), atol=1e-4, rtol=0)
    torch.testing.assert_close(result[0, 5:], torch.full((4,), base_value), atol=1e-4, rtol=0)
    assert (result[1, 5:] - base_value).abs().max() > 1e-3  # later positions at layer 1 do carry it


def test_bad_inputs_raise_clear_errors(setup: Setup) -> None:
    metric = setup.metrics["logit_diff"]
    short = setup.corrupted[:, :-1]
    with pytest.raises(ValueError, match=r"shape \(3, 6, .*\(3, 5\)|does not match"):
        patching.get_act_patch_attn_head_out_all_pos(setup.model, short, setup.clean_cache, metric)
    with pytest.raises(ValueError, match="direction"):
        runs.base_and_source(setup.clean, setup.corrupted, "sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="source tokens have shape"):
        patching.activation_patch(setup.model, setup.corrupted, short, metric)
    with pytest.raises(ValueError, match="unknown activation"):
        patching.activation_patch(setup.model, setup.corrupted, setup.clean, metric, "zz")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_batch"):
        patching.activation_patch(setup.model, setup.corrupted, setup.clean, metric, max_batch=0)
    assert no_hooks_left(setup.model)


# ---------------------------------------------------------------------------------------------
# Attribution patching.


def autograd_gradient(model: HookedTransformer, tokens: Tensor, name: str, metric: Callable) -> tuple[Tensor, Tensor]:
    """Base activation at `name` and ∂metric/∂activation, by replacing that one activation with a leaf."""
    _, cache = model.run_with_cache(tokens, names_filter=name)
    leaf = cache[name].clone().requires_grad_(True)
    with torch.enable_grad():
        value = metric(model.run_with_hooks(tokens, fwd_hooks=[(name, lambda act, hook: leaf)]))
        (grad,) = torch.autograd.grad(value, leaf)
    return cache[name], grad


@pytest.mark.parametrize("metric_name", ["logit_diff", "log_prob"])
@pytest.mark.parametrize(("activation", "by_pos", "sum_dims"), [
    ("z", False, (0, 1, 3)), ("z", True, (0, 3)), ("resid_pre", True, (0, 2)), ("pattern", False, (0, 2, 3)),
])  # fmt: skip
def test_attribution_equals_gradient_times_delta(
    setup: Setup, metric_name: str, activation: str, by_pos: bool, sum_dims: tuple[int, ...]
) -> None:
    model, metric = setup.model, setup.metrics[metric_name]
    for base, source, cache in ((setup.corrupted, setup.clean_cache, setup.clean_cache),
                                (setup.clean, setup.corrupted, setup.corrupted_cache)):  # fmt: skip
        with torch.no_grad():  # attribution enables gradients itself
            ours = patching.attribution_patch(model, base, source, metric, activation, by_pos=by_pos)  # type: ignore[arg-type]
        expected = []
        for layer in range(model.cfg.n_layers):
            name = runs.hook_name(activation, layer)
            base_act, grad = autograd_gradient(model, base, name, metric)
            expected.append(((cache[name] - base_act) * grad).sum(sum_dims))
        torch.testing.assert_close(ours, torch.stack(expected), atol=1e-5, rtol=1e-4)
        assert ours.abs().max() > 1e-3
    assert no_hooks_left(model)


def test_attribution_approximates_exact_patching_for_small_deltas(setup: Setup) -> None:
    """With a source a small step from the base run, exact effect = attribution + O(step²)."""
    model, metric = setup.model, setup.metrics["logit_diff"]
    torch.manual_seed(4)
    names = [runs.hook_name("z", layer) for layer in range(model.cfg.n_layers)]
    nudged = {n: setup.corrupted_cache[n] + 2e-3 * torch.randn_like(setup.corrupted_cache[n]) for n in names}
    base_value = metric_of(model, setup.corrupted, metric)
    exact = patching.get_act_patch_attn_head_out_by_pos(model, setup.corrupted, nudged, metric) - base_value
    approx = patching.attribution_patch(model, setup.corrupted, nudged, metric, "z", by_pos=True)
    assert (exact - approx).abs().max() < 0.05 * exact.abs().max()
    assert patching.attribution_agreement(approx, exact + base_value) > 0.99


# ---------------------------------------------------------------------------------------------
# Path patching.


def patch_heads_hook(source: Tensor, heads: list[int]) -> Callable:
    def hook(act: Tensor, hook: object) -> Tensor:
        act = act.clone()
        act[:, :, heads] = source[:, :, heads]
        return act

    return hook


@pytest.mark.parametrize("receiver_input", ["q", "k", "v", ("k", "v")])
def test_path_patching_from_everything_equals_patching_receiver_inputs(setup: Setup, receiver_input) -> None:
    """Senders = every head and the embeddings (MLPs recompute): the receivers read exactly the
    source run's q/k/v, so path patching = activation patching of those inputs."""
    model, metric = setup.model, setup.metrics["logit_diff"]
    last = model.cfg.n_layers - 1
    receivers = [(last, 0), (last, 1), (last - 1, 1)]
    everything = ["embed"] + [(layer, h) for layer in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)]
    ours = patching.path_patch(
        model, setup.corrupted, setup.clean_cache, everything, receivers, metric, receiver_input=receiver_input
    )
    inputs = [receiver_input] if isinstance(receiver_input, str) else receiver_input
    hooks = [
        (runs.hook_name(i, layer), patch_heads_hook(setup.clean_cache[runs.hook_name(i, layer)], heads))
        for layer, heads in ((last, [0, 1]), (last - 1, [1]))
        for i in inputs
    ]
    expected = metric_of(model, setup.corrupted, metric, hooks)
    assert abs(expected - metric_of(model, setup.corrupted, metric)) > 1e-3
    torch.testing.assert_close(ours, torch.tensor(expected), atol=ATOL, rtol=0)
    assert no_hooks_left(model)


@pytest.mark.parametrize("metric_name", ["logit_diff", "log_prob"])
def test_path_patching_last_layer_to_logits_equals_patching_z(setup: Setup, metric_name: str) -> None:
    model, metric = setup.model, setup.metrics[metric_name]
    last = model.cfg.n_layers - 1
    heads = list(range(model.cfg.n_heads))
    z_name = runs.hook_name("z", last)
    ours = patching.path_patch(model, setup.corrupted, setup.clean, [(last, h) for h in heads], "logits", metric)
    expected = metric_of(model, setup.corrupted, metric, [(z_name, patch_heads_hook(setup.clean_cache[z_name], heads))])
    torch.testing.assert_close(ours, torch.tensor(expected), atol=ATOL, rtol=0)
    # One sender at a time: the last row of TransformerLens's head sweep.
    sweep = patching.path_patch_sweep(model, setup.corrupted, setup.clean_cache, "logits", metric)
    reference = tl_patching.get_act_patch_attn_head_out_all_pos(model, setup.corrupted, setup.clean_cache, metric)
    torch.testing.assert_close(sweep[last], reference[last], atol=ATOL, rtol=0)


def test_path_patching_attn_only_matches_residual_arithmetic() -> None:
    """2-layer attention-only: the only path layer-0 head h → layer 1 is its W_O write into resid_pre[1];
    its direct path to the logits is that write added to the final residual."""
    model = make_model("attn_only")
    torch.manual_seed(5)
    clean = torch.randint(0, model.cfg.d_vocab, (3, 9))
    corrupted = torch.randint(0, model.cfg.d_vocab, (3, 9))
    metric = make_metrics(torch.randint(0, model.cfg.d_vocab, (3, 2)), torch.tensor([8, 6, 7]))["logit_diff"]
    _, clean_cache = model.run_with_cache(clean)
    _, corrupted_cache = model.run_with_cache(corrupted)
    sender, receivers = 2, [(1, 0), (1, 3)]
    delta_z = clean_cache["blocks.0.attn.hook_z"][:, :, sender] - corrupted_cache["blocks.0.attn.hook_z"][:, :, sender]
    write = delta_z @ model.W_O[0, sender]  # [batch, pos, d_model]

    def add_write(act: Tensor, hook: object) -> Tensor:
        return act + write

    # Stage 1 by hand: q of layer 1 read from the corrupted residual plus the sender's write.
    with model.hooks(fwd_hooks=[("blocks.1.hook_resid_pre", add_write)]):
        _, stage1 = model.run_with_cache(corrupted, names_filter="blocks.1.attn.hook_q")
    q_hook = patch_heads_hook(stage1["blocks.1.attn.hook_q"], [0, 3])
    expected_q = metric_of(model, corrupted, metric, [("blocks.1.attn.hook_q", q_hook)])
    ours_q = patching.path_patch(model, corrupted, clean_cache, [(0, sender)], receivers, metric)
    torch.testing.assert_close(ours_q, torch.tensor(expected_q), atol=ATOL, rtol=0)

    expected_direct = metric_of(model, corrupted, metric, [("blocks.1.hook_resid_post", add_write)])
    ours_direct = patching.path_patch(model, corrupted, clean, [(0, sender)], "logits", metric)
    torch.testing.assert_close(ours_direct, torch.tensor(expected_direct), atol=ATOL, rtol=0)
    assert abs(expected_q - metric_of(model, corrupted, metric)) > 1e-3
    assert abs(expected_direct - metric_of(model, corrupted, metric)) > 1e-3


def reference_path_patch(
    model: HookedTransformer,
    base: Tensor,
    source: Tensor,
    senders: list[tuple[int, int]],
    receivers: list[tuple[int, int]] | str,
    metric: Callable,
    receiver_input: str = "q",
    frozen_layers: set[int] | None = None,
) -> float:
    """Path patching written out with TransformerLens hooks only (no code of ours but the metric).

    Stage 1: the base run with the senders' z from the source run and every other head's z (of the
    layers in `frozen_layers`, all layers by default) set to its base-run value; MLPs recompute.
    For receivers = "logits" the answer is the metric of that run. Otherwise the receivers' q/k/v are
    recorded there, and stage 2 is the base run with only those receivers' inputs replaced.
    """
    frozen = set(range(model.cfg.n_layers)) if frozen_layers is None else frozen_layers
    is_z = lambda name: name.endswith("hook_z")  # noqa: E731
    with torch.no_grad():
        _, source_cache = model.run_with_cache(source, names_filter=is_z)
        _, base_cache = model.run_with_cache(base, names_filter=is_z)

    def freeze_hook(z: Tensor, hook: object, layer: int) -> Tensor:
        z = z.clone()
        for head in range(model.cfg.n_heads):
            if (layer, head) in senders:
                z[:, :, head] = source_cache["z", layer][:, :, head]
            elif layer in frozen:
                z[:, :, head] = base_cache["z", layer][:, :, head]
        return z

    stage1 = [
        (tl_utils.get_act_name("z", layer), partial(freeze_hook, layer=layer)) for layer in range(model.cfg.n_layers)
    ]
    if receivers == "logits":
        return metric_of(model, base, metric, stage1)
    recorded: dict[str, Tensor] = {}

    def record(act: Tensor, hook) -> None:
        recorded[hook.name] = act.clone()

    layers = sorted({layer for layer, _ in receivers})
    names = {layer: tl_utils.get_act_name(receiver_input, layer) for layer in layers}
    with torch.no_grad():
        model.run_with_hooks(base, fwd_hooks=stage1 + [(names[layer], record) for layer in layers])
    stage2 = [
        (names[layer], patch_heads_hook(recorded[names[layer]], [h for l, h in receivers if l == layer]))
        for layer in layers
    ]
    return metric_of(model, base, metric, stage2)


@pytest.mark.parametrize("direction", ["denoising", "noising"])
@pytest.mark.parametrize("receiver_input", ["q", "k", "v"])
@pytest.mark.parametrize(("attn_only", "seed"), [(True, 0), (False, 3)], ids=["attn_only", "mlp"])
def test_path_patching_three_layers_freezes_the_intermediate_layer(
    attn_only: bool, seed: int, receiver_input: str, direction: str
) -> None:
    """Sender in layer 0, receivers in layer 2: the layer-1 heads must be frozen in stage 1, so only
    the direct path (and, with MLPs, the path through the recomputed MLPs) reaches the receivers."""
    model = random_model(n_layers=3, n_heads=4, attn_only=attn_only, seed=seed)
    clean, corrupted, answers = prompt_pairs(model.cfg.d_vocab, batch=6, length=7, seed=seed)
    ends = torch.tensor([6, 5, 6, 4, 6, 3])  # right-padded prompts
    raw = ContrastMetric(answers, ends)
    clean_value, corrupted_value = metric_of(model, clean, raw), metric_of(model, corrupted, raw)
    assert abs(clean_value - corrupted_value) > 0.5  # normalisation well conditioned
    metric = ContrastMetric(answers, ends, corrupted_value, clean_value)
    base, source = (corrupted, clean) if direction == "denoising" else (clean, corrupted)
    senders, receivers = [(0, 1)], [(2, 0), (2, 2)]
    args = (model, base, source, senders, receivers, metric, receiver_input)

    frozen = reference_path_patch(*args)
    unfrozen_layer_1 = reference_path_patch(*args, frozen_layers={0, 2})
    # The reference is sensitive to the freeze: an implementation that forgot layer 1 would fail.
    assert abs(frozen - unfrozen_layer_1) > 0.05
    assert abs(frozen - metric_of(model, base, metric)) > 1e-2  # the path has an effect at all
    ours = patching.path_patch(model, base, source, senders, receivers, metric, receiver_input=receiver_input)
    torch.testing.assert_close(ours, torch.tensor(frozen), atol=ATOL, rtol=0)
    assert no_hooks_left(model)


@pytest.mark.parametrize("receivers", [[(1, 1), (1, 0)], "logits"])
@pytest.mark.parametrize("metric_name", ["logit_diff", "log_prob"])
def test_path_patch_sweep_equals_the_hook_reference(setup: Setup, receivers, metric_name: str) -> None:
    """Every single-head sender (chunked across layers by max_batch=5) against the TransformerLens-hook
    reference; senders at or after the receivers' layer change nothing."""
    model, metric = setup.model, setup.metrics[metric_name]
    sweep = patching.path_patch_sweep(model, setup.corrupted, setup.clean_cache, receivers, metric, max_batch=5)
    expected = torch.tensor([
        [reference_path_patch(model, setup.corrupted, setup.clean, [(layer, h)], receivers, metric)
         for h in range(model.cfg.n_heads)]
        for layer in range(model.cfg.n_layers)
    ])  # fmt: skip
    torch.testing.assert_close(sweep, expected, atol=ATOL, rtol=0)
    assert sweep.std() > 1e-3
    if receivers != "logits":
        torch.testing.assert_close(sweep[1:], torch.full_like(sweep[1:], metric_of(model, setup.corrupted, metric)))
    assert no_hooks_left(model)


def test_path_patching_rejects_bad_arguments(setup: Setup) -> None:
    metric = setup.metrics["logit_diff"]
    args = (setup.model, setup.corrupted, setup.clean_cache)
    with pytest.raises(ValueError, match="bad sender"):
        patching.path_patch(*args, [(9, 0)], "logits", metric)
    with pytest.raises(ValueError, match="outside the model"):
        patching.path_patch(*args, [(0, 0)], [(0, 99)], metric)
    with pytest.raises(ValueError, match="receiver_input"):
        patching.path_patch(*args, [(0, 0)], [(1, 0)], metric, receiver_input="z")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="receivers must be"):
        patching.path_patch(*args, [(0, 0)], "resid", metric)  # type: ignore[arg-type]
    assert no_hooks_left(setup.model)

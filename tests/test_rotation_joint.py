"""The joint rotation (`rotation_joint`: one R over several layers' z, patched from fixed activations): the
identity / empty / full mask cases against the unpatched runs, a hand-built two-layer case against TransformerLens
hooks that set each layer's z by hand (the fixed-activation semantics, and that it differs from letting the later
layer recompute), the one-layer case against the per-layer family, orthogonality, gradients only on R and the
mask, invariance under a function-preserving per-head rotation, the settings' checks, and a fit's report."""

from __future__ import annotations

import copy
import logging
import warnings

import pytest
import torch

from ioi_superpose.api import learn_combination
from ioi_superpose.combinations import build_combination
from ioi_superpose.combinations.rotation import JointRotationCombination
from ioi_superpose.engine.patch import HeadWeights
from ioi_superpose.engine.runs import BaseRun, head_z, patched_end_logits
from ioi_superpose.errors import ConfigError
from ioi_superpose.training.system import HeadSuperposition
from tests.helpers import prompt_pairs, random_model

warnings.filterwarnings("ignore", message=".*val_dataloader.*")
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

N_LAYERS, N_HEADS, D_MODEL = 2, 3, 24
D_HEAD = D_MODEL // N_HEADS
D = N_HEADS * D_HEAD  # one layer's z


@pytest.fixture(scope="module")
def model():
    return random_model(n_layers=N_LAYERS, n_heads=N_HEADS, d_model=D_MODEL, seed=2)


@pytest.fixture(scope="module")
def prompts(model):
    clean, corrupted, answers = prompt_pairs(model.cfg.d_vocab, batch=5, length=6, seed=4)
    return clean, corrupted, answers, torch.full((5,), 5)


def joint(layers=(0, 1), seed=0) -> JointRotationCombination:
    return build_combination("rotation", N_LAYERS, N_HEADS, d_head=D_HEAD, gate_seed=seed, rotation_layers=list(layers),
                             rotation_joint=True)  # fmt: skip


def patched(model, base_tokens, source_tokens, answers, ends, combination):
    """Our engine (fast runner where it applies): the base run with z mixed by `combination`."""
    source_z, _ = head_z(model, source_tokens)
    base = BaseRun.prepare(model, base_tokens, prefixes=False)
    return patched_end_logits(base, source_z, combination, ends, answers)


def by_hand(model, base_tokens, answers, z_of_layer: dict[int, torch.Tensor]):
    """TransformerLens hooks that set each given layer's z to the given tensor: the reference."""
    hooks = [(f"blocks.{layer}.attn.hook_z", lambda z, hook, value=value: value) for layer, value in z_of_layer.items()]
    with torch.no_grad():
        logits = model.run_with_hooks(base_tokens, fwd_hooks=hooks)
    return logits[:, -1].gather(-1, answers)


def fixed_runs(model, clean, corrupted):
    """The unpatched base (corrupted) and source (clean) runs' z of every layer: [layer, batch, pos, head, d_head]."""
    return head_z(model, corrupted)[0], head_z(model, clean)[0]


def test_joint_rotation_is_orthogonal_seeded_and_random():
    combination = joint()
    r = combination.joint_rotation().detach()
    assert r.shape == (N_LAYERS * D, N_LAYERS * D)
    assert torch.allclose(r @ r.T, torch.eye(N_LAYERS * D), atol=1e-5)
    assert torch.allclose(r.T @ r, torch.eye(N_LAYERS * D), atol=1e-5)
    assert not torch.allclose(r, torch.eye(N_LAYERS * D), atol=0.1)
    # Directions really mix the layers: a random R's rows put weight on both layers' blocks.
    shares = combination.shares().sum(-1)  # [dim, slot]
    assert (shares > 0.05).all()
    assert torch.equal(joint(seed=3).joint_rotation(), joint(seed=3).joint_rotation())
    assert not torch.allclose(joint(seed=3).joint_rotation(), joint(seed=4).joint_rotation())


def test_full_and_empty_masks_are_the_source_and_base_runs(model, prompts):
    """All on: both layers' z = the source run's (= `scalar` α = 1 on both layers); all off: the base run."""
    clean, corrupted, answers, ends = prompts
    combination = joint().eval()
    with torch.no_grad():
        combination.set_mask_(torch.ones(N_LAYERS, D, dtype=torch.bool))
        full = patched(model, corrupted, clean, answers, ends, combination)
        combination.set_mask_(torch.zeros(N_LAYERS, D, dtype=torch.bool))
        empty = patched(model, corrupted, clean, answers, ends, combination)
        both = patched(model, corrupted, clean, answers, ends, HeadWeights(torch.ones(N_LAYERS, N_HEADS)))
        base = patched(model, corrupted, clean, answers, ends, HeadWeights(torch.zeros(N_LAYERS, N_HEADS)))
    assert torch.allclose(full, both, atol=1e-4)
    assert torch.allclose(empty, base, atol=1e-4)
    assert not torch.allclose(full, base, atol=1e-3)


def test_two_layers_by_hand_fixed_activations(model, prompts):
    """R = I, mask on layer 0's block only: layer 0's z is the source run's, layer 1's is the *unpatched base
    run's* (fixed, not recomputed) — checked against TransformerLens hooks that set both by hand. Letting layer 1
    recompute (`scalar` α = 1 on layer 0 only) gives another answer: the caveat is real on this model."""
    clean, corrupted, answers, ends = prompts
    z_base, z_source = fixed_runs(model, clean, corrupted)
    combination = joint().eval()
    with torch.no_grad():
        combination.rotations[0].weight = torch.eye(N_LAYERS * D)
        mask = torch.zeros(N_LAYERS, D, dtype=torch.bool)
        mask[0] = True  # joint dims 0 … D-1: layer 0's z under R = I
        combination.set_mask_(mask)
        ours = patched(model, corrupted, clean, answers, ends, combination)
        alpha = torch.zeros(N_LAYERS, N_HEADS)
        alpha[0] = 1.0
        recomputed = patched(model, corrupted, clean, answers, ends, HeadWeights(alpha))
    expected = by_hand(model, corrupted, answers, {0: z_source[0], 1: z_base[1]})
    assert torch.allclose(ours[0], expected, atol=1e-4)
    assert not torch.allclose(ours[0], recomputed[0], atol=1e-3)


def test_random_rotation_and_mask_by_hand(model, prompts):
    """A random R and 0/1 mask: the joint vector built by concatenating the two layers' flattened z by hand,
    z_base + Rᵀ diag(m) R (z_source − z_base), split back and set into each layer with hooks."""
    clean, corrupted, answers, ends = prompts
    z_base, z_source = fixed_runs(model, clean, corrupted)
    combination = joint(seed=7).eval()
    mask = torch.rand(N_LAYERS, D, generator=torch.Generator().manual_seed(8)) > 0.5
    with torch.no_grad():
        combination.set_mask_(mask)
        ours = patched(model, corrupted, clean, answers, ends, combination)
        r = combination.joint_rotation()
        flat = lambda z: torch.cat([z[0].flatten(-2), z[1].flatten(-2)], dim=-1)  # noqa: E731  [batch, pos, 2D]
        delta = flat(z_source) - flat(z_base)
        joint_patched = flat(z_base) + (delta @ r.T * mask.flatten().float()) @ r
        layer0, layer1 = joint_patched[..., :D], joint_patched[..., D:]
        shape = z_base.shape[1:]
        expected = by_hand(model, corrupted, answers, {0: layer0.reshape(shape), 1: layer1.reshape(shape)})
    assert torch.allclose(ours[0], expected, atol=1e-4)


def test_one_layer_is_the_per_layer_family(model, prompts):
    """With one selected layer there is nothing to hold fixed: the joint family patches as the per-layer one."""
    clean, corrupted, answers, ends = prompts
    single = build_combination("rotation", N_LAYERS, N_HEADS, d_head=D_HEAD, gate_seed=5, rotation_layers=[1]).eval()
    combination = joint(layers=[1], seed=5).eval()
    with torch.no_grad():
        combination.rotations[0].weight = single.rotation(0).detach()
        logits = torch.randn(1, D, generator=torch.Generator().manual_seed(9))
        single.mask_logits.copy_(logits)
        combination.mask_logits.copy_(logits)
        assert torch.equal(single.coefficients, combination.coefficients)
        ours = patched(model, corrupted, clean, answers, ends, combination)
        theirs = patched(model, corrupted, clean, answers, ends, single)
    assert torch.allclose(ours, theirs, atol=1e-4)
    assert torch.allclose(combination.head_coefficients(), single.head_coefficients(), atol=1e-5)


def test_gradients_reach_only_the_joint_rotation_and_mask(model, prompts):
    clean, corrupted, answers, ends = prompts
    combination = joint().train()
    combination.mask_logits.data.normal_(generator=torch.Generator().manual_seed(0))
    logits = patched(model, corrupted, clean, answers, ends, combination)
    (logits[..., 0] - logits[..., 1]).mean().backward()
    assert all(p.grad is None and not p.requires_grad for p in model.parameters())
    named = dict(combination.named_parameters())
    assert set(named) == {"mask_logits", "rotations.0.parametrizations.weight.original"}
    for name, parameter in named.items():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_invariant_under_a_function_preserving_rotation_of_a_head(model, prompts):
    """z of head (1, 2) → z Q (W_V Q, Qᵀ W_O): R · blockdiag(I, …, Q) patches the rotated model as R the original,
    with the same loadings on every (layer, head); the unchanged R does not."""
    clean, corrupted, answers, ends = prompts
    q, _ = torch.linalg.qr(torch.randn(D_HEAD, D_HEAD, generator=torch.Generator().manual_seed(5)))
    rotated_model = copy.deepcopy(model)
    attn = rotated_model.blocks[1].attn
    with torch.no_grad():
        attn.W_V[2] = attn.W_V[2] @ q
        attn.b_V[2] = attn.b_V[2] @ q
        attn.W_O[2] = q.T @ attn.W_O[2]
        assert torch.allclose(rotated_model(clean), model(clean), atol=1e-4)
    block = torch.block_diag(torch.eye(N_LAYERS * D - D_HEAD), q)  # the last d_head coordinates: head (1, 2)
    original, transformed = joint(seed=1).eval(), joint(seed=1).eval()
    mask = torch.rand(N_LAYERS, D, generator=torch.Generator().manual_seed(6)) > 0.5
    with torch.no_grad():
        transformed.rotations[0].weight = original.joint_rotation() @ block
        original.set_mask_(mask)
        transformed.set_mask_(mask)
        before = patched(model, corrupted, clean, answers, ends, original)
        after = patched(rotated_model, corrupted, clean, answers, ends, transformed)
        naive = patched(rotated_model, corrupted, clean, answers, ends, original)
    assert torch.allclose(before, after, atol=1e-4)
    assert torch.allclose(original.shares(), transformed.shares(), atol=1e-5)
    assert torch.allclose(original.head_coefficients(), transformed.head_coefficients(), atol=1e-5)
    assert not torch.allclose(before, naive, atol=1e-3)


def test_settings_are_checked(model):
    with pytest.raises(ConfigError, match="rotation_joint"):
        HeadSuperposition(combination="scalar", rotation_joint=True, preloaded_model=model)
    with pytest.raises(ConfigError, match="rest"):
        HeadSuperposition(combination="rotation", rotation_joint=True, rest="frozen", preloaded_model=model)
    with pytest.raises(ConfigError, match="base run"):
        joint().bind(torch.zeros(N_LAYERS, 1, 2, N_HEADS, D_HEAD))  # only patched_end_logits supplies base_z


def test_fit_reports_loadings_across_layers(model, prompts):
    clean, corrupted, answers, _ = prompts
    result = learn_combination(model, clean, corrupted, answers, combination="rotation", steps=6, l1=1e-2,
                               rotation_joint=True, init=0.5)  # fmt: skip
    report = result.rotation
    assert report is not None and report["joint"] is True and set(report["layers"]) == {"0", "1"}
    assert report["temperature"] == pytest.approx(0.05, rel=1e-4)
    assert len(report["effect_of_top_k"]) == N_LAYERS * D + 1
    if report["dims_needed"]:
        layers = report["layers"].values()
        # Each kept direction's loadings sum to 1 over all (layer, head): the layers' shares sum to 1, and the
        # loadings summed over kept directions add up to the number of kept directions.
        assert sum(layer["layer_share"] for layer in layers) == pytest.approx(1.0, abs=1e-3)
        assert sum(sum(layer["head_loading_sum"]) for layer in layers) == pytest.approx(report["dims_needed"], abs=1e-2)


def test_state_dict_round_trip_restores_the_joint_rotation_and_mask():
    """What a checkpoint restores: the joint R, the mask, the annealing step (a fresh module of another seed)."""
    trained = joint(seed=1)
    with torch.no_grad():
        trained.mask_logits.normal_(generator=torch.Generator().manual_seed(2))
    trained.set_total_steps(10)
    for _ in range(3):
        trained.project_()
    fresh = joint(seed=9)
    fresh.set_total_steps(10)
    fresh.load_state_dict(trained.state_dict())
    assert torch.allclose(fresh.joint_rotation(), trained.joint_rotation(), atol=1e-6)
    assert torch.equal(fresh.coefficients, trained.coefficients) and int(fresh.step) == 3

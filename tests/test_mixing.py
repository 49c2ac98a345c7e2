"""The `mixing` family: shapes, identity at initialisation = `scalar` (both runners, both directions),
gradients only on the allowed entries, a hand-computed two-layer case against TransformerLens's own
forward, folded and later-starting variants, projection, options, pruning, and the CLI."""

from __future__ import annotations

import json
import logging
import warnings

import pytest
import torch

from ioi_superpose.analyses.pruning import minimal_set
from ioi_superpose.api import learn_combination
from ioi_superpose.combinations import build_combination
from ioi_superpose.combinations.mixing import MixingWeights, allowed_entries
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.engine.patch import HeadWeights
from ioi_superpose.engine.runs import BaseRun, head_z, patched_end_logits, reference_runs, unembed_at_end
from ioi_superpose.engine.vocabulary import hook_name
from ioi_superpose.errors import ConfigError
from ioi_superpose.groundtruth.planted import and_case
from ioi_superpose.training.system import HeadSuperposition
from tests.helpers import QUIET, REPO, SMALL, TOY_IOI, prompt_pairs, random_model, run_cli

warnings.filterwarnings("ignore", message=".*val_dataloader.*")
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

N_LAYERS, N_HEADS = 3, 3


@pytest.fixture(scope="module")
def model():
    return random_model(n_layers=N_LAYERS, n_heads=N_HEADS, d_model=24, attn_only=True, seed=1)


@pytest.fixture(scope="module")
def prompts(model):
    clean, corrupted, answers = prompt_pairs(model.cfg.d_vocab, batch=5, length=6, seed=3)
    return clean, corrupted, answers, torch.full((5,), 5)


def patched(model, base_tokens, source_tokens, answers, ends, combination, runner="auto", prefixes=False, **kw):
    source_z, _ = head_z(model, source_tokens)
    base = BaseRun.prepare(model, base_tokens, prefixes=prefixes)
    return patched_end_logits(base, source_z, combination, ends, answers, runner=runner, **kw)


def test_shapes_and_allowed_entries():
    combination = build_combination("mixing", N_LAYERS, N_HEADS, init=0.5)
    assert tuple(combination.coefficients.shape) == (N_LAYERS, N_HEADS, N_LAYERS, N_HEADS)
    assert tuple(combination.head_coefficients().shape) == (N_LAYERS, N_HEADS)
    assert combination.unit_names() == ("layer", "head", "source_layer", "source_head")
    # layer l receives from (l + 1) layers of N_HEADS heads, for each of its N_HEADS heads
    assert int(combination.allowed.sum()) == N_HEADS * N_HEADS * (1 + 2 + 3)
    for layer, source_layer in [(0, 1), (0, 2), (1, 2)]:
        assert not combination.allowed[layer, :, source_layer].any()
    assert combination.l0(0.1) == N_LAYERS * N_HEADS  # the diagonal only
    assert combination.support(0.1) == [(l, h, l, h) for l in range(N_LAYERS) for h in range(N_HEADS)]
    assert float(combination.penalty().detach()) == pytest.approx(0.5 * N_LAYERS * N_HEADS)
    target = build_combination("mixing", N_LAYERS, N_HEADS, mixing_target=1)
    assert int(target.allowed.sum()) == N_HEADS * N_HEADS * 2 and target.allowed[1].all(dim=(0, 2)).tolist() == [
        True, True, False]  # fmt: skip
    assert target.support(0.1) == [(1, h, 1, h) for h in range(N_HEADS)]


@pytest.mark.parametrize("runner", ["fast", "hooks"])
@pytest.mark.parametrize("direction", ["denoising", "noising"])
def test_identity_init_is_the_scalar_family(model, prompts, runner, direction):
    clean, corrupted, answers, ends = prompts
    base, source = (corrupted, clean) if direction == "denoising" else (clean, corrupted)
    for init in (0.6, 1.0):
        mixing = build_combination("mixing", N_LAYERS, N_HEADS, init=init)
        scalar = build_combination("scalar", N_LAYERS, N_HEADS, init=init)
        expected = patched(model, base, source, answers, ends, scalar, runner)
        torch.testing.assert_close(patched(model, base, source, answers, ends, mixing, runner), expected,
                                   atol=1e-6, rtol=0)  # fmt: skip
    # mixing_target 1: exactly scalar α = init on layer 1 alone
    alpha = torch.zeros(N_LAYERS, N_HEADS)
    alpha[1] = 0.7
    mixing = build_combination("mixing", N_LAYERS, N_HEADS, init=0.7, mixing_target=1)
    expected = patched(model, base, source, answers, ends, HeadWeights(alpha), runner)
    torch.testing.assert_close(patched(model, base, source, answers, ends, mixing, runner), expected,
                               atol=1e-6, rtol=0)  # fmt: skip
    assert not torch.allclose(expected, patched(model, base, source, answers, ends, scalar, runner), atol=1e-3)


@pytest.mark.parametrize("target", [None, 1])
def test_gradients_reach_every_allowed_entry_and_no_other(model, prompts, target):
    clean, corrupted, answers, ends = prompts
    combination = build_combination("mixing", N_LAYERS, N_HEADS, init=0.5, mixing_target=target).train()
    logits = patched(model, corrupted, clean, answers, ends, combination)
    (logits[..., 0] - logits[..., 1]).mean().backward()
    grad, allowed = combination.coefficients.grad, combination.allowed
    assert (grad[allowed] != 0).all()  # the off-diagonal entries included, at their initial 0
    assert (grad[~allowed] == 0).all()
    if target == 1:
        assert allowed[1, :, :2].all() and not allowed[[0, 2]].any()
    # an Adam step and the projection leave the disallowed entries exactly 0
    torch.optim.Adam(combination.parameters(), lr=0.1).step()
    combination.project_()
    assert (combination.coefficients[~allowed] == 0).all() and (combination.coefficients[allowed] != 0).any()


def test_a_hand_computed_two_layer_map_equals_transformer_lens_forward():
    """M with within-layer and cross-layer entries; the mixed z written by hand (loops over heads), run
    through TransformerLens's own forward with replacement hooks, against the engine (both runners)."""
    model = random_model(n_layers=2, n_heads=2, d_model=16, attn_only=True, seed=4)
    clean, corrupted, answers = prompt_pairs(model.cfg.d_vocab, batch=4, length=5, seed=5)
    ends = torch.full((4,), 4)
    m = torch.zeros(2, 2, 2, 2)
    m[0, 0, 0, 0], m[0, 0, 0, 1], m[0, 1, 0, 0] = 0.9, -0.4, 0.3  # layer 0 within itself
    m[1, 0, 0, 1], m[1, 1, 0, 0], m[1, 1, 1, 1], m[1, 0, 1, 1] = 0.8, -0.6, 0.5, 0.2  # layer 1 from 0 and 1
    z_clean = [head_z(model, clean)[0][layer] for layer in range(2)]

    def z_at(layer, replace):  # z of `layer` in the corrupted run with earlier layers' z replaced
        store = {}
        hooks = [(hook_name("z", l), lambda z, hook, l=l: replace[l]) for l in replace]
        hooks.append((hook_name("z", layer), lambda z, hook: store.setdefault("z", z.clone())))
        model.run_with_hooks(corrupted, fwd_hooks=hooks)
        return store["z"]

    def mixed(layer, z_cur, deltas):
        out = z_cur.clone()
        for h in range(2):
            for source_layer, delta in enumerate(deltas):
                for s in range(2):
                    out[:, :, h] += m[layer, h, source_layer, s] * delta[:, :, s]
        return out

    z0 = z_at(0, {})
    delta0 = z_clean[0] - z0
    patched0 = mixed(0, z0, [delta0])
    z1 = z_at(1, {0: patched0})
    patched1 = mixed(1, z1, [delta0, z_clean[1] - z1])
    final = model.run_with_hooks(
        corrupted, stop_at_layer=2,
        fwd_hooks=[(hook_name("z", 0), lambda z, hook: patched0), (hook_name("z", 1), lambda z, hook: patched1)],
    )  # fmt: skip
    expected = unembed_at_end(model, final, ends, answers)
    combination = build_combination("mixing", 2, 2, bounded=False)
    with torch.no_grad():
        combination.coefficients.copy_(m)
    assert not torch.allclose(expected, patched(model, corrupted, clean, answers, ends, HeadWeights(torch.ones(2, 2)))[0])
    for runner in ("fast", "hooks"):
        torch.testing.assert_close(patched(model, corrupted, clean, answers, ends, combination, runner)[0], expected,
                                   atol=1e-5, rtol=1e-5)  # fmt: skip
        torch.testing.assert_close(patched(model, corrupted, clean, answers, ends, combination.fixed(m), runner)[0],
                                   expected, atol=1e-5, rtol=1e-5)  # fmt: skip


def test_folded_variants_and_later_starts_equal_single_runs(model, prompts):
    """Fixed maps folded into one run (chunked, each chunk from its first source layer) = one run each."""
    clean, corrupted, answers, ends = prompts
    generator = torch.Generator().manual_seed(0)
    allowed = allowed_entries(N_LAYERS, N_HEADS)
    maps = torch.randn(4, N_LAYERS, N_HEADS, N_LAYERS, N_HEADS, generator=generator) * 0.5 * allowed
    maps[1, :1] = maps[1, :, :, :1] = 0  # reads layers 1, 2 only: starts at layer 1
    maps[2, :2] = maps[2, :, :, :2] = 0  # layer 2 from itself: starts at layer 2
    variants = MixingWeights(maps)
    assert [variants.select(range(v, v + 1)).first_layer() for v in range(4)] == [0, 1, 2, 0]
    batch = len(clean)
    folded = patched(model, corrupted, clean, answers, ends, variants, prefixes=True, max_rows=batch)
    for v in range(4):
        single = patched(model, corrupted, clean, answers, ends, MixingWeights(maps[v]))[0]
        torch.testing.assert_close(folded[v], single, atol=1e-5, rtol=1e-5)
    together = patched(model, corrupted, clean, answers, ends, variants, prefixes=True, max_rows=4 * batch)
    torch.testing.assert_close(together, folded, atol=1e-5, rtol=1e-5)


def test_a_forward_must_start_where_the_map_reads_and_see_every_layer(model, prompts):
    clean, corrupted, _, _ = prompts
    z = head_z(model, clean)[0]
    combination = build_combination("mixing", N_LAYERS, N_HEADS)
    with pytest.raises(ValueError, match="started at layer 1"):
        combination.bind(z)(1, z[1])
    forward = combination.bind(z)  # one forward's function: its record of differences lives in it
    forward(0, z[0])
    with pytest.raises(ValueError, match="every layer in order"):
        forward(2, z[2])
    with pytest.raises(TypeError, match="bind"):  # the module itself holds no per-forward state to call
        combination(0, z[0][None], z[0])
    with pytest.raises(ValueError, match="later layer"):
        MixingWeights(torch.ones(N_LAYERS, N_HEADS, N_LAYERS, N_HEADS))


def test_bounded_projection():
    combination = build_combination("mixing", 2, 2)
    with torch.no_grad():
        combination.coefficients.fill_(-3.0)
        combination.coefficients[1, 0, 1, 0] = 2.0
    combination.project_()
    m, allowed = combination.coefficients, combination.allowed
    diagonal = torch.eye(4, dtype=torch.bool).view(2, 2, 2, 2)
    assert (m[diagonal] == torch.tensor([0.0, 0.0, 1.0, 0.0])).all()  # the diagonal in [0, 1]
    assert (m[allowed & ~diagonal] == -1.0).all() and (m[~allowed] == 0).all()  # off it in [-1, 1]; masked 0
    free = build_combination("mixing", 2, 2, bounded=False)
    with torch.no_grad():
        free.coefficients.fill_(-3.0)
    free.project_()
    assert (free.coefficients[free.allowed] == -3.0).all() and (free.coefficients[~free.allowed] == 0).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [({"combination": "mixing", "mixing_target": 2}, r"^mixing_target=2 .*\[0, 1\]"),
     ({"combination": "mixing", "mixing_target": -1}, r"^mixing_target=-1 .*\[0, 1\]"),
     ({"combination": "scalar", "mixing_target": 1}, "only applies to combination mixing"),
     ({"combination": "mixing", "init": 1.5}, "^init")],
)  # fmt: skip
def test_bad_options_name_the_argument(kwargs, message):
    """Built from Python, the module names its argument; the CLI renames it to the flag (tests/test_config.py)."""
    model = random_model(n_layers=2, n_heads=2, d_model=16, attn_only=True)
    with pytest.raises(ConfigError, match=message) as error:
        HeadSuperposition(preloaded_model=model, **kwargs)
    assert "--model." not in str(error.value)


def test_pruning_keeps_learned_values_on_a_minimal_support():
    """AND (1 layer × 3 heads; both heads 0.0, 0.1 are needed): the minimal-set step keeps the learned
    map's values on its kept entries (never rewritten to 1), reaches the target, and the learnable
    combination it leaves (`set_mask_`) has that effect in its own forward."""
    case = and_case()
    prompts = case.prompts(32, 0)
    learned = learn_combination(case.model, prompts.clean_tokens, prompts.corrupted_tokens, prompts.answer_tokens,
                                combination="mixing", l1=1e-2, steps=60, seed=0)  # fmt: skip
    combination = build_combination("mixing", 1, 3, bounded=False)
    with torch.no_grad():
        combination.coefficients.copy_(learned.coefficients)
    batch = ContrastBatch.from_tokens(prompts.clean_tokens, prompts.corrupted_tokens, prompts.answer_tokens)
    result = minimal_set(case.model, [batch], "denoising", combination, 0.9, 0.05)
    combination.set_mask_(result.mask)
    kept = result.mask
    assert result.reached and result.effect >= 0.9 and 0 < kept.sum() <= learned.l0
    torch.testing.assert_close(combination.coefficients[kept], learned.coefficients[kept])  # the learned values
    assert (combination.coefficients[~kept] == 0).all()
    assert {unit[3] for unit in result.support} >= {0, 1}  # both AND heads' differences are used
    reference = reference_runs(case.model, batch.clean_tokens, batch.corrupted_tokens, batch.end_pos,
                               batch.answer_tokens, "denoising")  # fmt: skip
    logits = patched(case.model, batch.corrupted_tokens, batch.clean_tokens, batch.answer_tokens, batch.end_pos,
                     combination)  # fmt: skip
    assert float(reference.effect(logits.detach())[0]) == pytest.approx(result.effect, abs=1e-4)


def test_cli_fit_writes_the_family_shaped_map(tmp_path, monkeypatch):

    args = ["fit", "--config", str(REPO / "experiments" / "toy_ioi.yaml"), "--model.model_name", TOY_IOI, *SMALL,
            *QUIET, "--trainer.max_epochs", "1", "--model.combination", "mixing", "--model.mixing_target", "1"]  # fmt: skip
    run_cli(args, tmp_path, monkeypatch)
    (run_dir,) = (tmp_path / "runs" / "toy_ioi").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    saved = torch.load(run_dir / "coefficients.pt")["coefficients"]
    assert summary["combination"] == "mixing" and saved.shape == (2, 4, 2, 4)
    assert (saved[0] == 0).all()  # only layer 1 receives
    assert summary["l0"] == int((saved.abs() > summary["l0_threshold"]).sum()) == len(summary["support"])
    assert all(len(unit) == 4 and unit[0] == 1 for unit in summary["support"])
    assert {"source_layer", "source_head"} <= set(summary["top_heads"][0])
    assert summary["config"]["model"]["mixing_target"] == 1
    assert "spearman_abs_alpha_vs_abs_effect" in summary["baselines"]["activation_patching"]
    assert (run_dir / "coefficients.png").stat().st_size > 1000

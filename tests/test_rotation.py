"""The `rotation` family (learned orthogonal basis of a layer's z with a boundless-DAS mask): the identity and
empty-mask cases, orthogonality, gradients only on R and the mask, invariance under a function-preserving
per-head rotation of z, the dimension count against independent patches, options, and a fit through the API."""

from __future__ import annotations

import copy
import logging
import warnings

import pytest
import torch

from ioi_superpose.analyses.rotation import rotation_dimensions
from ioi_superpose.api import learn_combination
from ioi_superpose.combinations import build_combination
from ioi_superpose.combinations.rotation import RotationCombination, head_shares
from ioi_superpose.engine.patch import HeadWeights
from ioi_superpose.engine.runs import BaseRun, head_z, patched_end_logits, reference_runs
from ioi_superpose.errors import ConfigError
from ioi_superpose.training.system import HeadSuperposition
from tests.helpers import prompt_pairs, random_model

warnings.filterwarnings("ignore", message=".*val_dataloader.*")
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

N_LAYERS, N_HEADS, D_MODEL = 2, 3, 24
D_HEAD = D_MODEL // N_HEADS


@pytest.fixture(scope="module")
def model():
    return random_model(n_layers=N_LAYERS, n_heads=N_HEADS, d_model=D_MODEL, seed=2)


@pytest.fixture(scope="module")
def prompts(model):
    clean, corrupted, answers = prompt_pairs(model.cfg.d_vocab, batch=5, length=6, seed=4)
    return clean, corrupted, answers, torch.full((5,), 5)


def patched(model, base_tokens, source_tokens, answers, ends, combination):
    source_z, _ = head_z(model, source_tokens)
    base = BaseRun.prepare(model, base_tokens, prefixes=False)
    return patched_end_logits(base, source_z, combination, ends, answers)


def rotation(layers=None, seed=0) -> RotationCombination:
    return build_combination("rotation", N_LAYERS, N_HEADS, d_head=D_HEAD, gate_seed=seed, rotation_layers=layers)


def test_rotation_is_orthogonal_and_random():
    combination = rotation()
    for slot in range(N_LAYERS):
        r = combination.rotation(slot).detach()
        assert torch.allclose(r @ r.T, torch.eye(N_HEADS * D_HEAD), atol=1e-5)
        assert torch.allclose(r.T @ r, torch.eye(N_HEADS * D_HEAD), atol=1e-5)
        assert not torch.allclose(r, torch.eye(N_HEADS * D_HEAD), atol=0.1)  # a random start, not I
    assert torch.allclose(rotation(seed=3).rotation(0), rotation(seed=3).rotation(0))  # seeded
    assert not torch.allclose(rotation(seed=3).rotation(0), rotation(seed=4).rotation(0))


@pytest.mark.parametrize("layers", [None, [1]])
def test_full_mask_is_full_patch_and_empty_mask_is_base(model, prompts, layers):
    """Mask all on: z_base + RᵀR Δ = z_source on those layers, i.e. `scalar` α = 1 there; all off: the base run."""
    clean, corrupted, answers, ends = prompts
    combination = rotation(layers).eval()
    chosen = torch.zeros(N_LAYERS, N_HEADS * D_HEAD, dtype=torch.bool)
    chosen[list(combination.layers)] = True
    alpha = torch.zeros(N_LAYERS, N_HEADS)
    alpha[list(combination.layers)] = 1.0
    with torch.no_grad():
        combination.set_mask_(chosen)
        full = patched(model, corrupted, clean, answers, ends, combination)
        scalar = patched(model, corrupted, clean, answers, ends, HeadWeights(alpha))
        combination.set_mask_(torch.zeros_like(chosen))
        empty = patched(model, corrupted, clean, answers, ends, combination)
        base = patched(model, corrupted, clean, answers, ends, HeadWeights(torch.zeros(N_LAYERS, N_HEADS)))
    assert torch.allclose(full, scalar, atol=1e-5)
    assert torch.allclose(empty, base, atol=1e-5)
    assert not torch.allclose(full, base, atol=1e-3)  # the patch has a visible effect


def test_identity_rotation_with_a_head_block_is_single_head_patching(model, prompts):
    """R = I and the mask on head h's d_head coordinates of layer 0 = patching head (0, h) alone."""
    clean, corrupted, answers, ends = prompts
    combination = rotation([0]).eval()
    with torch.no_grad():
        combination.rotations[0].weight = torch.eye(N_HEADS * D_HEAD)
        mask = torch.zeros(N_LAYERS, N_HEADS, D_HEAD, dtype=torch.bool)
        mask[0, 1] = True
        combination.set_mask_(mask.flatten(1))
        ours = patched(model, corrupted, clean, answers, ends, combination)
        alpha = torch.zeros(N_LAYERS, N_HEADS)
        alpha[0, 1] = 1.0
        single = patched(model, corrupted, clean, answers, ends, HeadWeights(alpha))
    assert torch.allclose(ours, single, atol=1e-5)


def test_gradients_reach_only_rotation_and_mask(model, prompts):
    clean, corrupted, answers, ends = prompts
    combination = rotation().train()
    combination.mask_logits.data.normal_(generator=torch.Generator().manual_seed(0))  # not uniform: R matters
    logits = patched(model, corrupted, clean, answers, ends, combination)
    (logits[..., 0] - logits[..., 1]).mean().backward()
    assert all(p.grad is None and not p.requires_grad for p in model.parameters())
    named = dict(combination.named_parameters())
    assert set(named) == {"mask_logits", *(f"rotations.{i}.parametrizations.weight.original" for i in range(N_LAYERS))}
    for name, parameter in named.items():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def _rotate_head(model, layer: int, head: int, q: torch.Tensor):
    """W_V[l, h] ← W_V Q, b_V ← b_V Q, W_O[l, h] ← Qᵀ W_O: z_h becomes z_h Q, the output is unchanged."""
    rotated = copy.deepcopy(model)
    attn = rotated.blocks[layer].attn
    with torch.no_grad():
        attn.W_V[head] = attn.W_V[head] @ q
        attn.b_V[head] = attn.b_V[head] @ q
        attn.W_O[head] = q.T @ attn.W_O[head]
    return rotated


def test_invariant_under_a_function_preserving_rotation_of_a_head(model, prompts):
    """Rotating head (0, 1)'s z by Q (a change of basis the model cannot see) changes per-coordinate weights but
    not the rotation family: R' = R · blockdiag(I, Q, I) patches exactly as R did on the original model, and the
    head loadings of every kept direction are unchanged."""
    clean, corrupted, answers, ends = prompts
    q, _ = torch.linalg.qr(torch.randn(D_HEAD, D_HEAD, generator=torch.Generator().manual_seed(5)))
    rotated_model = _rotate_head(model, 0, 1, q)
    with torch.no_grad():
        assert torch.allclose(rotated_model(clean), model(clean), atol=1e-4)  # function-preserving
    block = torch.block_diag(torch.eye(D_HEAD), q, torch.eye(D_HEAD))
    original = rotation([0], seed=1).eval()
    transformed = rotation([0], seed=1).eval()
    generator = torch.Generator().manual_seed(6)
    mask = torch.rand(N_LAYERS, N_HEADS * D_HEAD, generator=generator) > 0.5
    with torch.no_grad():
        transformed.rotations[0].weight = original.rotation(0) @ block
        original.set_mask_(mask)
        transformed.set_mask_(mask)
        before = patched(model, corrupted, clean, answers, ends, original)
        after = patched(rotated_model, corrupted, clean, answers, ends, transformed)
    assert torch.allclose(before, after, atol=1e-4)
    shares = head_shares(original.rotation(0), N_HEADS)
    assert torch.allclose(shares, head_shares(transformed.rotation(0), N_HEADS), atol=1e-5)
    assert torch.allclose(original.head_coefficients(), transformed.head_coefficients(), atol=1e-5)
    # Per-coordinate views do move: the same R on the rotated model patches differently.
    with torch.no_grad():
        naive = patched(rotated_model, corrupted, clean, answers, ends, original)
    assert not torch.allclose(before, naive, atol=1e-3)


def test_dimension_count_is_evaluated(model, prompts):
    """With R = I and the mask highest on head (1, 2)'s block, the top-D_HEAD hard mask is exactly patching
    that head (checked against `HeadWeights`), and dims_needed is the first k whose effect reaches the target."""
    from ioi_superpose.data.batch import ContrastBatch

    clean, corrupted, answers, _ = prompts
    batch = ContrastBatch.from_tokens(clean, corrupted, answers)
    combination = rotation([1]).eval()
    with torch.no_grad():
        combination.rotations[0].weight = torch.eye(N_HEADS * D_HEAD)
        logits = torch.full((1, N_HEADS, D_HEAD), -1.0)
        logits[0, 2] = torch.linspace(3.0, 2.0, D_HEAD)  # head 2's coordinates first, in order
        logits[0, 0] = torch.linspace(1.0, 0.5, D_HEAD)
        combination.mask_logits.copy_(logits.flatten(1))
    result = rotation_dimensions(model, combination, [batch], "denoising", target=0.5)
    effects = result["effect_of_top_k"]
    assert len(effects) == N_HEADS * D_HEAD + 1
    reference = reference_runs(model, clean, corrupted, batch.end_pos, answers, "denoising")
    alpha = torch.zeros(N_LAYERS, N_HEADS)
    alpha[1, 2] = 1.0
    single = patched(model, corrupted, clean, answers, batch.end_pos, HeadWeights(alpha))
    assert effects[D_HEAD] == pytest.approx(float(reference.effect(single)[0]), abs=1e-4)
    alpha[1] = 1.0  # every dimension of layer 1 = every head of layer 1
    whole_layer = patched(model, corrupted, clean, answers, batch.end_pos, HeadWeights(alpha))
    assert effects[-1] == pytest.approx(float(reference.effect(whole_layer)[0]), abs=1e-4)
    assert effects[0] == pytest.approx(0.0, abs=1e-5)
    reaching = [k for k, effect in enumerate(effects) if effect >= 0.5]
    assert result["dims_needed"] == (reaching[0] if reaching else None)
    if result["dims_needed"] is not None:
        kept = result["layers"]["1"]
        assert kept["dims_kept"] == result["dims_needed"]
        assert sum(kept["head_loading_sum"]) == pytest.approx(result["dims_needed"], abs=1e-3)


def test_options_are_checked(model):
    with pytest.raises(ConfigError, match="rotation_layers"):
        HeadSuperposition(combination="scalar", rotation_layers=[0], preloaded_model=model)
    with pytest.raises(ConfigError, match="rotation_layers"):
        HeadSuperposition(combination="rotation", rotation_layers=[N_LAYERS], preloaded_model=model)
    with pytest.raises(ConfigError, match="rotation_temperature"):
        HeadSuperposition(combination="rotation", rotation_temperature_end=2.0, preloaded_model=model)
    with pytest.raises(ConfigError, match="combination"):
        HeadSuperposition(combination="rotations", preloaded_model=model)


def test_fit_anneals_and_reports(model, prompts):
    clean, corrupted, answers, _ = prompts
    result = learn_combination(model, clean, corrupted, answers, combination="rotation", steps=6, l1=1e-2,
                               rotation_layers=[1])  # fmt: skip
    assert tuple(result.coefficients.shape) == (N_LAYERS, N_HEADS * D_HEAD)
    assert (result.coefficients[0] == 0).all()  # layer 0 not selected
    report = result.rotation
    assert report is not None and set(report["layers"]) == {"1"}
    assert report["temperature"] == pytest.approx(0.05, rel=1e-4)  # annealed to the end over the 6 steps
    assert len(report["effect_of_top_k"]) == N_HEADS * D_HEAD + 1


def test_cli_fit_with_the_main_jobs_baselines_writes_the_rotation_report(tmp_path, monkeypatch):
    """The main toy job (its baselines and max-activating table included) with --model.combination rotation."""
    import json

    from tests.helpers import QUIET, REPO, SMALL, TOY_IOI, run_cli

    args = ["fit", "--config", str(REPO / "experiments" / "toy_ioi.yaml"), "--model.model_name", TOY_IOI, *SMALL,
            *QUIET, "--trainer.max_epochs", "1", "--model.combination", "rotation", "--model.rotation_layers", "[1]",
            "--model.init", "0.5"]  # fmt: skip
    run_cli(args, tmp_path, monkeypatch)
    (run_dir,) = (tmp_path / "runs" / "toy_ioi").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    saved = torch.load(run_dir / "coefficients.pt")["coefficients"]
    assert summary["combination"] == "rotation" and saved.shape == (2, 4 * 16)
    assert (saved[0] == 0).all()  # only layer 1 rotates
    assert set(summary["rotation"]["layers"]) == {"1"}
    assert len(summary["rotation"]["effect_of_top_k"]) == 4 * 16 + 1
    assert all(row["layer"] == 1 for row in summary["top_heads"])  # heads view: dims per head, layer 1 only
    assert "activation_patching" in summary["baselines"]


def test_batched_fit_refuses_rotation(model):
    systems = [HeadSuperposition(combination="rotation", preloaded_model=model, l1=l1) for l1 in (1e-3, 1e-2)]
    with pytest.raises(ConfigError, match="batch_variants 1"):
        HeadSuperposition.batched(systems)


def test_state_dict_round_trip_restores_rotation_mask_and_schedule():
    """A checkpoint of the family (what Lightning saves) restores R, the mask and the annealing step exactly."""
    trained = rotation(seed=1)
    with torch.no_grad():
        trained.mask_logits.normal_(generator=torch.Generator().manual_seed(2))
    trained.set_total_steps(10)
    for _ in range(4):
        trained.project_()
    fresh = rotation(seed=9)
    fresh.set_total_steps(10)
    fresh.load_state_dict(trained.state_dict())
    for slot in range(N_LAYERS):
        assert torch.allclose(fresh.rotation(slot), trained.rotation(slot), atol=1e-6)
    assert torch.equal(fresh.coefficients, trained.coefficients) and int(fresh.step) == 4


def test_a_resumed_fit_continues_the_temperature_schedule(model, prompts, tmp_path):
    """Fit 4 of 8 steps, save, resume to 8: the temperature ends where an uninterrupted 8-step fit ends, and the
    resumed fit did not restart the schedule (set_total_steps keeps the restored step)."""
    import lightning as L

    from ioi_superpose.data.batch import ContrastBatch, PromptDataset, collate

    clean, corrupted, answers, _ = prompts
    batch = ContrastBatch.from_tokens(clean, corrupted, answers)

    def fit(max_steps, ckpt=None, system=None):
        system = system or HeadSuperposition(combination="rotation", preloaded_model=model, init=0.5)
        loader = torch.utils.data.DataLoader(PromptDataset(batch), batch_size=len(batch), collate_fn=collate)
        trainer = L.Trainer(max_steps=max_steps, logger=False, enable_progress_bar=False, enable_model_summary=False,
                            default_root_dir=tmp_path, accelerator="cpu")  # fmt: skip
        trainer.fit(system, train_dataloaders=loader, ckpt_path=ckpt)
        return system, trainer

    first, trainer = fit(4)
    assert int(first.combination.step) == 4
    path = tmp_path / "half.ckpt"
    trainer.save_checkpoint(path)
    resumed, _ = fit(8, ckpt=str(path))
    assert int(resumed.combination.step) == 8
    assert resumed.combination.temperature() == pytest.approx(0.05, rel=1e-5)


def test_random_start_does_not_depend_on_the_thread_count():
    """R's start is drawn when the module is built, before the TorchThreads callback sets the fit's thread count,
    so it ran at the shell's count: LAPACK's QR of the toy's 64 × 64 draw rounded 1e-7 differently with 1 and 2
    threads, and that alone moved the toy layer-0 fit from val recovery 0.925 to 0.993 (OMP_NUM_THREADS=1 vs 2).
    The start must be bitwise the same at any thread count."""
    threads = torch.get_num_threads()
    starts = []
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            combination = RotationCombination(2, 4, 16, seed=0)  # the toy IOI model's shape: D = 64
            starts.append(torch.stack([combination.rotation(slot).detach() for slot in range(2)]))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(starts[0], other) for other in starts[1:])

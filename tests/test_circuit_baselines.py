"""EAP-IG and head-level ACDC (`ioi_superpose.baselines.circuit`): identities they must satisfy, and the sets
the planted constructions imply. The check against auto-circuit itself is experiments/peers/ (its own venv)."""

from __future__ import annotations

import pytest
import torch

from ioi_superpose.baselines.circuit import acdc, acdc_head_scores, backward_order, eap_ig_scores
from ioi_superpose.baselines.patching import activation_patch, attribution_patch
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.engine.metric import ContrastMetric, logit_diff
from ioi_superpose.engine.runs import end_logits
from ioi_superpose.engine.vocabulary import base_and_source
from ioi_superpose.errors import ConfigError
from ioi_superpose.groundtruth.planted import and_case, composition_case, or_case
from ioi_superpose.models import freeze
from ioi_superpose.models.toy import attn_only_config, build_toy_model
from tests.helpers import hooks_attached, prompt_pairs, random_model

DIRECTIONS = ("denoising", "noising")
MODES = ("inputs", "activations")


def planted_batch(case, n: int = 8, seed: int = 0) -> ContrastBatch:
    p = case.prompts(n, seed)
    return ContrastBatch.from_tokens(p.clean_tokens, p.corrupted_tokens, p.answer_tokens)


def random_batch(model, seed: int = 0) -> ContrastBatch:
    clean, corrupted, answers = prompt_pairs(model.cfg.d_vocab, batch=6, length=7, seed=seed)
    return ContrastBatch.from_tokens(clean, corrupted, answers)


def normalised_metric(
    model, batch: ContrastBatch, direction: str
) -> tuple[ContrastMetric, torch.Tensor, torch.Tensor]:
    """The normalised logit-difference metric (0 = base run, 1 = source run) and the base/source tokens."""
    base, source = base_and_source(batch.clean_tokens, batch.corrupted_tokens, direction)
    base_m, source_m = (float(logit_diff(end_logits(model, t, batch.end_pos, batch.answer_tokens)).mean())
                        for t in (base, source))  # fmt: skip
    metric = ContrastMetric(batch.answer_tokens, batch.end_pos, corrupted_value=base_m, clean_value=source_m)
    return metric, base, source


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_one_step_is_attribution_patching(direction: str, mode: str) -> None:
    # At α = 0 both interpolations are the base run itself, so one step is (z_source − z_base) · ∂M/∂z there.
    model = random_model(n_layers=2, seed=1)
    batch = random_batch(model)
    metric, base, source = normalised_metric(model, batch, direction)
    expected = attribution_patch(model, base, source, metric)
    scores = eap_ig_scores(model, batch, direction, steps=1, interpolation=mode)
    torch.testing.assert_close(scores, expected, atol=1e-5, rtol=1e-4)
    assert hooks_attached(model) == 0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_exact_on_a_model_linear_in_z(direction: str, mode: str) -> None:
    # One attention layer, no LayerNorm: the logits are W_U (embed + Σ_h z_h W_O + b_O) + b_U, linear in z,
    # so ∂M/∂z is the same at every α and (z_source − z_base)_h · ∂M/∂z_h IS head h's patching effect.
    model = freeze(build_toy_model(attn_only_config(1, 4, 32, 8, 40, 16, layer_norm=False), seed=3))
    with torch.no_grad():  # larger weights: attention patterns that differ between the two prompts
        for parameter in model.parameters():
            parameter.mul_(3.0)
    batch = random_batch(model, seed=2)
    metric, base, source = normalised_metric(model, batch, direction)
    exact = activation_patch(model, base, source, metric)  # normalised: 0 = base run
    assert float(exact.abs().max()) > 0.05  # the heads do something
    for steps in (1, 3, 8):
        scores = eap_ig_scores(model, batch, direction, steps=steps, interpolation=mode)
        torch.testing.assert_close(scores, exact, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("make", [or_case, and_case])
def test_activations_ig_converges_to_the_whole_effect(make, direction: str) -> None:
    # auto-circuit's interpolation of a 1-layer model: the final residual is r(α) = (1 − α) r_base + α r_source,
    # so Σ over its edges of the mean gradient is a Riemann sum of ∫ dM(r(α)) = M(source) − M(base) = 1
    # (normalised). The residual edge contributes (e_source − e_base) at END, which is 0 here (only position 0
    # differs), so the head scores alone sum to 1 in the limit; the left sum's error is O(1/steps). The final
    # LayerNorm makes M nonlinear, so one step is far off.
    case = make()
    batch = planted_batch(case)
    errors = [abs(float(eap_ig_scores(case.model, batch, direction, steps=k, interpolation="activations").sum()) - 1)
              for k in (1, 4, 16, 64)]  # fmt: skip
    assert errors[0] > 0.5
    assert errors[1] > errors[2] > errors[3]
    assert errors[3] < 0.07


def test_endpoint_grid_includes_both_ends() -> None:
    # With endpoint=True and steps = 2 the points are α = 0 and α = 1: the mean of plain attribution
    # at the base run and the same product with the gradient taken at the source run (inputs mode: e = e_source).
    case = composition_case()
    batch = planted_batch(case)
    both = eap_ig_scores(case.model, batch, "denoising", steps=2, endpoint=True)
    at_base = eap_ig_scores(case.model, batch, "denoising", steps=1)
    # steps=2 without endpoint evaluates α = 0 and 0.5; the mean with the α = 1 point must differ from both.
    half = eap_ig_scores(case.model, batch, "denoising", steps=2)
    assert not torch.allclose(both, at_base, atol=1e-3) and not torch.allclose(both, half, atol=1e-3)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_acdc_finds_the_whole_composition_path(direction: str) -> None:
    # Circuit notion: 1.0 attends the ANS slot only when 0.0 writes the flag from the source input; with 0.0
    # frozen at the base run the flag is wrong, with 1.0 frozen its output is. So the circuit is the path
    # {0.0, 1.0} (a cut would need only one of them); the distractors 0.1 and 1.1 copy fillers that the two
    # prompts share and are removed.
    case = composition_case()
    result = acdc(case.model, planted_batch(case), direction, tau=0.01)
    assert result.heads == [(0, 0), (1, 0)]
    assert result.order == backward_order(2, 2) == [(1, 1), (1, 0), (0, 1), (0, 0)]


def test_acdc_circuit_metric_equals_a_plain_hooks_run() -> None:
    # The circuit {0.0, 1.0} of `composition`, denoising, evaluated without the engine: the clean prompts with
    # hook_z of the two other heads overwritten by their corrupted-run z; KL(clean ‖ that run) at END.
    case = composition_case()
    batch = planted_batch(case)
    model = case.model
    result = acdc(model, batch, "denoising", tau=0.01)
    _, corrupted_cache = model.run_with_cache(batch.corrupted_tokens)

    def freeze_head(head: int):
        def hook(z: torch.Tensor, hook) -> torch.Tensor:
            z = z.clone()
            z[:, :, head] = corrupted_cache[hook.name][:, :, head]
            return z

        return hook

    hooks = [("blocks.0.attn.hook_z", freeze_head(1)), ("blocks.1.attn.hook_z", freeze_head(1))]
    with torch.no_grad():
        circuit = model.run_with_hooks(batch.clean_tokens, fwd_hooks=hooks)[:, -1].log_softmax(-1)
        clean = model(batch.clean_tokens)[:, -1].log_softmax(-1)
    kl = float((clean.exp() * (clean - circuit)).sum(-1).mean())
    assert result.heads == [(0, 0), (1, 0)]
    assert result.metric == pytest.approx(kl, abs=1e-5)


def test_acdc_or_keeps_one_backup_denoising_and_both_noising() -> None:
    case = or_case()
    batch = planted_batch(case)
    # Denoising: either backup alone saturates the final LayerNorm. Visited backwards, 0.1 goes first and
    # is removed (0.0 still carries the answer); 0.0 is then needed. Visited forwards, the other one stays.
    assert acdc(case.model, batch, "denoising", tau=0.01).heads == [(0, 0)]
    assert acdc(case.model, batch, "denoising", tau=0.01, order=[(0, 0), (0, 1), (0, 2)]).heads == [(0, 1)]
    # Noising (input corrupted, removed heads clean): either clean backup alone brings the answer back, so
    # the circuit must hold both; the distractor 0.2 goes.
    assert acdc(case.model, batch, "noising", tau=0.01).heads == [(0, 0), (0, 1)]


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_acdc_tau_extremes(direction: str) -> None:
    case = composition_case()
    batch = planted_batch(case)
    strict = acdc(case.model, batch, direction, tau=0.0)
    # τ = 0: a removal sticks only if the metric does not rise at all, so every head with an effect stays.
    assert {(0, 0), (1, 0)} <= set(strict.heads)
    assert bool((strict.increase[strict.kept] >= 0).all())
    assert acdc(case.model, batch, direction, tau=1e6).heads == []
    assert acdc(case.model, batch, direction, tau=1e6).metric > 1.0  # nothing kept: far from the source run


def test_acdc_logit_diff_metric_and_scorer_shape() -> None:
    case = composition_case()
    batch = planted_batch(case)
    assert acdc(case.model, batch, "denoising", tau=0.1, metric="logit_diff").heads == [(0, 0), (1, 0)]
    scores = acdc_head_scores(case.model, batch, "denoising")
    assert scores.shape == (2, 2) and scores.dtype == torch.float32
    assert scores.tolist() == [[1.0, 0.0], [1.0, 0.0]]


def test_bad_arguments_raise_clear_errors() -> None:
    case = composition_case()
    batch = planted_batch(case)
    with pytest.raises(ConfigError, match="interpolation"):
        eap_ig_scores(case.model, batch, interpolation="edges")
    with pytest.raises(ConfigError, match="steps"):
        eap_ig_scores(case.model, batch, steps=0)
    with pytest.raises(ConfigError, match="steps"):
        eap_ig_scores(case.model, batch, steps=1, endpoint=True)
    with pytest.raises(ConfigError, match="direction"):
        eap_ig_scores(case.model, batch, "sideways")
    with pytest.raises(ConfigError, match="order"):
        acdc(case.model, batch, order=[(0, 0), (0, 0)])
    with pytest.raises(ConfigError, match="order"):
        acdc(case.model, batch, order=[(2, 0)])
    with pytest.raises(ConfigError, match="metric"):
        acdc(case.model, batch, metric="mse")
    with pytest.raises(ConfigError, match="tau"):
        acdc(case.model, batch, tau=-0.1)
    same = ContrastBatch.from_tokens(batch.clean_tokens, batch.clean_tokens, batch.answer_tokens)
    with pytest.raises(ConfigError, match="normalise=False"):
        eap_ig_scores(case.model, same)

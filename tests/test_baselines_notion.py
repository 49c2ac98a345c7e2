"""The baselines of a run are measured in its notion (`rest`) and with its patch source (`ablation`), as its learned
α is: exact activation patching and the top-k curves (`baselines/compute.py`)."""

from __future__ import annotations

import pytest
import torch

from ioi_superpose.baselines.compute import CombinationsSpec, ScoreSpec, compute_baselines
from ioi_superpose.baselines.scorers import activation_patching
from ioi_superpose.data.prompts import ioi_prompts
from ioi_superpose.data.splits import VAL_SET
from ioi_superpose.models import load_frozen_model
from tests.helpers import TOY_IOI


@pytest.mark.parametrize(
    ("direction", "rest", "ablation"), [("denoising", "frozen", "corrupted"), ("noising", "free", "resample")]
)
def test_activation_patching_and_the_curves_follow_the_runs_notion(direction, rest, ablation):
    model = load_frozen_model(TOY_IOI)
    prompts = ioi_prompts(model, n=16, seed=0)
    specs = [ScoreSpec("activation_patching", n_prompts=16), CombinationsSpec(max_heads=3, n_prompts=16)]
    scores, curves = compute_baselines(model, {VAL_SET: prompts}, direction, specs, rest=rest, ablation=ablation)
    expected = activation_patching(model, prompts, direction, rest=rest, ablation=ablation).float()
    as_cut = activation_patching(model, prompts, direction).float()  # the paired-prompt cut
    assert torch.allclose(scores.effect, expected, atol=1e-6)
    assert not torch.allclose(scores.effect, as_cut, atol=1e-3)
    # k = 1 of the activation ranking: its top head alone, whose recovery is that head's activation effect (an
    # effect runs from the base run to the source run; recovery from corrupted to clean: 1 - effect in noising).
    def recovery(effect: float) -> float:
        return effect if direction == "denoising" else 1 - effect

    top_head_alone = curves.curves_by_set[VAL_SET]["activation_patching"][0]
    assert top_head_alone == pytest.approx(recovery(float(expected.max())), abs=1e-5)
    assert top_head_alone != pytest.approx(recovery(float(as_cut.flatten()[expected.argmax()])), abs=1e-3)


def test_a_source_that_is_not_the_paired_prompt_is_refused_where_it_has_no_meaning():
    model = load_frozen_model(TOY_IOI)
    prompts = ioi_prompts(model, n=8, seed=0)
    with pytest.raises(Exception, match="noising"):
        compute_baselines(model, {VAL_SET: prompts}, "denoising", [], ablation="mean")


def test_the_callback_passes_the_runs_notion(tmp_path, monkeypatch):
    """Through the CLI: a `--model.rest frozen` run's baselines are computed as circuits (before, its summary held
    the cut's activation patching and curves beside a circuit's learned α)."""
    import ioi_superpose.baselines.compute as compute
    from tests.helpers import EXPERIMENTS, QUIET, run_cli

    notions = []
    exact = compute.activation_patching

    def recorded(*args, **kwargs):
        notions.append((kwargs["rest"], kwargs["ablation"]))
        return exact(*args, **kwargs)

    monkeypatch.setattr(compute, "activation_patching", recorded)
    run_cli(["fit", "--config", str(EXPERIMENTS / "toy_ioi.yaml"), "--model.model_name", TOY_IOI,
             "--model.rest", "frozen", "--data.n_train", "32", "--data.n_val", "16", "--data.n_test", "16",
             "--data.off_distribution", "[]", "--trainer.max_epochs", "1", "--max_activating.per_set", "0",
             "--trainer.logger.init_args.save_dir", str(tmp_path), *QUIET], tmp_path, monkeypatch)  # fmt: skip
    # The activation baseline and the curves' ranking in the run's notion; attribution patching's agreement
    # with the paired-prompt cut it estimates.
    assert set(notions) == {("frozen", "corrupted"), ("free", "corrupted")}


def test_a_modules_recovery_of_fixed_alpha_uses_its_ablation():
    """`HeadSuperposition.recovery_of` measures fixed α against the module's own reference runs (before, an
    ablation module measured them against the paired prompts)."""
    from ioi_superpose.training.system import HeadSuperposition

    model = load_frozen_model(TOY_IOI)
    prompts = ioi_prompts(model, n=16, seed=0)
    system = HeadSuperposition(model_name="toy", preloaded_model=model, direction="noising", ablation="resample")
    effect = activation_patching(model, prompts, "noising", ablation="resample").float()
    alpha = torch.zeros_like(effect)
    alpha.view(-1)[effect.argmax()] = 1.0
    assert float(system.recovery_of(prompts, alpha)) == pytest.approx(1 - float(effect.max()), abs=1e-5)

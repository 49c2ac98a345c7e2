"""Figures a reader does not have to decode: every figure a fit and a report write is titled, its axes labelled, its
colour bars labelled, and it has a legend where it draws more than one series; identical curves are drawn once;
the logit lens and the per-component effects read in words; the exhaustive front of a small model is its ground
truth (checked against single-head activation patching and the all-heads patch, computed another way)."""

from __future__ import annotations

import json

import pytest
import torch
from matplotlib.figure import Figure

from ioi_superpose import plots
from ioi_superpose.models import load_frozen_model
from ioi_superpose.results import report, summary
from ioi_superpose.results.run_figures import ExhaustiveFront
from ioi_superpose.results.schema import SweepPoint
from ioi_superpose.results.sweep_figures import recovery_against_l1
from tests.helpers import QUIET, REPO, TOY_IOI, run_cli


def readability_problems(figure: Figure) -> list[str]:
    """What a reader would have to guess in `figure`: a missing title, axis label, colour-bar label or legend."""
    problems = []
    suptitle = figure._suptitle.get_text() if figure._suptitle is not None else ""
    for axes in figure.axes:
        if not axes.get_visible() or not axes.axison:
            continue
        if hasattr(axes, "_colorbar"):  # a colour bar's own axes
            if not (axes.get_ylabel() or axes.get_xlabel()):
                problems.append("a colour bar without a label")
            continue
        if not (axes.get_title() or suptitle):
            problems.append("an axes without a title")
        if not axes.get_xlabel() or not axes.get_ylabel():
            problems.append(f"axes {axes.get_title()!r} without an x or y label")
        series = [artist for artist in [*axes.lines, *axes.collections, *axes.patches]
                  if not artist.get_label().startswith("_")]  # fmt: skip
        if len({artist.get_label() for artist in series}) > 1 and axes.get_legend() is None:
            problems.append(f"axes {axes.get_title()!r} draws several labelled series without a legend")
    return problems


@pytest.fixture
def saved_figures(monkeypatch) -> dict[str, Figure]:
    """Every figure a run or a report writes, by file name, recorded before it is saved."""
    recorded: dict[str, Figure] = {}

    def recording(original):
        def save(figure, path):
            recorded[str(path)] = figure
            figure.savefig(path, format="png")  # keeps the figure open for the checks

        return save

    for module in (summary, report):
        monkeypatch.setattr(module, "save_figure", recording(plots.save_figure))
    return recorded


def test_every_figure_of_a_fit_and_its_report_is_titled_labelled_and_legended(tmp_path, monkeypatch, saved_figures):
    run_cli(["fit", "--config", str(REPO / "experiments" / "toy_ioi.yaml"), "--model.model_name", TOY_IOI,
             "--data.n_train", "32", "--data.n_val", "32", "--data.n_test", "16", "--data.batch_size", "16",
             "--data.off_distribution", "[held_out_names]", "--max_activating.per_set", "4",
             "--trainer.max_epochs", "2", *QUIET], tmp_path, monkeypatch)  # fmt: skip
    run = tmp_path / "runs" / "toy_ioi" / "version_0"
    report.main([str(run), "--out", str(tmp_path / "report")])
    names = {path.rsplit("/", 1)[-1].lstrip(".").split(".png")[0] for path in saved_figures}  # atomic_write's temp
    assert names >= {"coefficients", "alpha_over_training", "per_prompt_recovery", "learned_heads", "pareto_val",
                     "activation_patching", "attention_to_io", "combinations_recovery",
                     "direct_logit_attribution_accumulated", "direct_logit_attribution_decomposed", "sets"}  # fmt: skip
    problems = {path: found for path, figure in saved_figures.items() if (found := readability_problems(figure))}
    assert not problems, "\n".join(f"{path.rsplit('/', 1)[-1]}: {found}" for path, found in problems.items())
    # The exhaustive front of the 8-head toy model, checked against patches computed without the subset search.
    front = ExhaustiveFront.from_dict(json.loads((run / "exhaustive.json").read_text()))
    assert front.direction == "denoising" and front.n_prompts == 32 and len(front.best_recovery_by_size) == 9  # <= 64
    from ioi_superpose import recovery_of
    from ioi_superpose.baselines.scorers import activation_patching
    from ioi_superpose.data.datamodule import IOIDataModule

    datamodule = IOIDataModule(model_name=TOY_IOI, n_train=32, n_val=32, n_test=16, batch_size=16,
                               off_distribution=["held_out_names"])  # fmt: skip
    datamodule.setup("fit")
    val = datamodule.splits["val"]
    model = load_frozen_model(TOY_IOI)
    assert front.best_recovery_by_size[8] == pytest.approx(float(recovery_of(model, val, torch.ones(2, 4))), abs=1e-4)
    assert front.best_recovery_by_size[1] == pytest.approx(float(activation_patching(model, val, "denoising").max()),
                                                           abs=1e-4)  # fmt: skip
    assert all(len(s) == len(front.minimal_sets[0]) for s in front.minimal_sets)


def test_identical_curves_are_drawn_once_and_named_together():
    merged = plots.merge_identical({"a": [0.1, 0.5], "b": [0.2, 0.6], "c": [0.1, 0.5], "d": [None, 0.5]})
    assert merged == {"a = c": [0.1, 0.5], "b": [0.2, 0.6], "d": [None, 0.5]}
    figure = plots.recovery_curves({"a": [0.1, 0.5], "c": [0.1, 0.5]}, {"learned α": (1, 0.4)}, "t")
    assert [line.get_label() for line in figure.axes[0].lines] == ["a = c"]


def test_the_logit_lens_and_the_components_read_in_words_and_components_are_bars():
    assert [plots.component_name(label) for label in ["0_pre", "1_mid", "final", "embed", "2_attn_out", "3_mlp_out"]] \
        == ["before layer 0", "layer 1, after attention", "after the last layer", "token embeddings",
            "layer 2 attention", "layer 3 MLP"]  # fmt: skip
    figure = plots.component_bars(torch.tensor([0.1, 0.4, 2.0]), ["embed", "0_attn_out", "0_mlp_out"], "t")
    axes = figure.axes[0]
    assert axes.lines == [] or all(len(line.get_xdata()) <= 2 for line in axes.lines)  # no line joins components
    assert len(axes.patches) == 3 and [t.get_text() for t in axes.get_xticklabels()][1] == "layer 0 attention"


def test_an_exhaustive_front_is_the_best_set_of_each_size_in_recovery():
    effects = {"none": 0.0, "0.0": 0.2, "0.1": 0.5, "0.0+0.1": 0.95}
    front = ExhaustiveFront.from_effects(effects, [[[0, 0], [0, 1]]], "val", "denoising", "free", 8, 0.9)
    assert front.best_recovery_by_size == [0.0, 0.5, 0.95] and front.best_set_by_size[1] == [[0, 1]]
    noising = ExhaustiveFront.from_effects(effects, [], "val", "noising", "free", 8, 0.9)
    assert noising.best_recovery_by_size == pytest.approx([1.0, 0.5, 0.05])  # noising: recovery = 1 − effect


def test_a_sweep_over_lambda_gets_its_recovery_against_lambda_figure():
    def point(l1, direction, recovery, l0):
        return SweepPoint(point=f"{direction}_{l1}", settings={"model.l1": str(l1), "model.direction": direction},
                          run_dir="x", val_recovery=recovery, test_recovery={}, l0=l0, heads=[])  # fmt: skip

    points = [point(0.001, "denoising", 0.98, 4), point(0.01, "denoising", 0.93, 3), point(0.001, "noising", 0.02, 4),
              point(0.01, "noising", 0.1, 3)]  # fmt: skip
    figure = recovery_against_l1("toy", points)
    assert readability_problems(figure) == []
    assert [line.get_label() for line in figure.axes[0].lines if not line.get_label().startswith("_")] == [
        "direction=denoising", "direction=noising"]  # fmt: skip
    assert recovery_against_l1("toy", points[:1]) is None  # one λ: nothing to draw against


def test_alpha_over_training_names_at_most_twelve_kept_heads_of_a_144_head_model():
    """Its legend named every kept head: 145 entries on a 12 × 12 model, which did not fit (tight_layout warned)."""
    from ioi_superpose.results.run_figures import NAMED_HEADS, alpha_over_training

    alphas = torch.linspace(0.1, 1.0, 144).reshape(1, 12, 12).repeat(3, 1, 1)
    labels = [text.get_text() for text in alpha_over_training(range(3), alphas, 0.05, "t").axes[0].get_legend().texts]
    assert labels[:NAMED_HEADS] == [f"head 11.{head}" for head in range(12)]  # the largest final |α|: layer 11
    assert len(labels) == NAMED_HEADS + 2
    assert labels[-2] == f"… {144 - NAMED_HEADS} more kept heads (coloured)"

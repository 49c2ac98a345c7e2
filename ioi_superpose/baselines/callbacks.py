"""The baselines of a fit as one callback: `Baselines` computes its specs' results at fit start
(`compute.compute_baselines`, on validation prompts, rank 0 only), logs their figures to TensorBoard and
holds the results for the run's summary (`cli/train.py::write_results`). No import of the LightningModule: the
callback reads the fit through `pl_module.fitted()` (`fitting.fitted.Fits`).

The YAML names baselines one by one under `trainer.callbacks` (see experiments/*.yaml); each class below is
a `Baselines` configured with one spec, and the CLI joins them into one callback (`join_baselines`), so the
combinations' rankings are the scores computed in the same call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import lightning as L
import matplotlib.pyplot as plt
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.figure import Figure

from ioi_superpose.baselines.compute import (
    BaselineResult,
    BaselineSpec,
    CombinationsSpec,
    ScoreSpec,
    compute_baselines,
)
from ioi_superpose.baselines.figures import baseline_figures
from ioi_superpose.baselines.logit_attribution import check_linear_metric
from ioi_superpose.baselines.path_patching import check_receivers
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.data.datamodule import IOIDataModule
from ioi_superpose.data.splits import VAL_SET
from ioi_superpose.fitting.fitted import Fits


class Baselines(L.Callback):
    """Computes `specs`' results once, at fit start, in the direction the system trains in (rank 0 only:
    no collective calls), and logs their figures to TensorBoard. One callback for all of a run's baselines:
    the combinations' rankings are the scores of the same call (several `Baselines` in one Trainer each
    compute their own; the CLI joins them, `join_baselines`)."""

    def __init__(self, specs: Sequence[BaselineSpec]) -> None:
        self.specs = list(specs)
        self.results: list[BaselineResult] | None = None
        """The results of the last fit start (None before it, and on ranks other than 0)."""

    def setup(self, trainer: L.Trainer, pl_module: Fits, stage: str) -> None:
        """Settings that depend on the model (path patching's receivers) or the task's metric (direct logit attribution
        needs the logit difference) are checked here, before any step."""
        cfg = pl_module.fitted().model.cfg
        task = getattr(trainer.datamodule, "task", None)  # TaskDataModule's; IOIDataModule has none: IOI
        for spec in self.specs:
            if isinstance(spec, ScoreSpec) and "receivers" in spec.options:
                check_receivers(spec.options["receivers"], cfg.n_layers, cfg.n_heads)
            if isinstance(spec, ScoreSpec) and spec.name == "direct_logit_attribution" and task is not None:
                check_linear_metric(task.metric)

    def on_fit_start(self, trainer: L.Trainer, pl_module: Fits) -> None:
        if not trainer.is_global_zero:
            return
        sets = evaluation_sets(trainer.datamodule)
        fitted = pl_module.fitted()  # the run's model and notion: the baselines answer its question
        self.results = compute_baselines(fitted.model, sets, fitted.direction, self.specs, rest=fitted.rest,
                                         ablation=fitted.ablation)  # fmt: skip
        log_baselines(trainer, self.results)


class ActivationPatchingBaseline(Baselines):
    """Exact per-head activation patching of z (all positions): the normalised effect of each head alone."""

    def __init__(self, n_prompts: int = 64) -> None:
        """
        Args:
            n_prompts: validation prompts the effect is computed on.
        """
        super().__init__([ScoreSpec("activation_patching", n_prompts)])


class AttributionPatchingBaseline(Baselines):
    """Attribution patching (one forward and one backward for all heads), and its agreement (Pearson r)
    with exact activation patching on the same prompts."""

    def __init__(self, n_prompts: int = 64) -> None:
        """
        Args:
            n_prompts: validation prompts the effect is computed on.
        """
        super().__init__([ScoreSpec("attribution_patching", n_prompts)])


class PathPatchingBaseline(Baselines):
    """Exact path patching from each head to `receivers` (heads' q/k/v inputs, or the logits)."""

    def __init__(
        self,
        receivers: list[tuple[int, int]] | Literal["logits"] = "logits",
        receiver_input: Literal["q", "k", "v"] = "q",
        n_prompts: int = 64,
    ) -> None:
        """
        Args:
            receivers: receiving heads as [layer, head] pairs (for GPT-2 small, the name movers
                [[9, 9], [9, 6], [10, 0]]), or `logits` for each head's direct path to the output.
            receiver_input: which input of the receivers the senders' paths reach.
            n_prompts: validation prompts the effect is computed on.
        """
        receivers = receivers if receivers == "logits" else [tuple(r) for r in receivers]
        target = "logits" if receivers == "logits" else f"{receiver_input} of {receivers}"
        options = {"receivers": receivers, "receiver_input": receiver_input}
        super().__init__([ScoreSpec("path_patching", n_prompts, f"path patching → {target}", options)])


class DirectLogitAttribution(Baselines):
    """The notebook's first check: direct logit attribution of the clean logit difference, per head
    (heatmap), per layer accumulated (logit lens) and decomposed (line plots)."""

    def __init__(self, n_prompts: int = 64) -> None:
        """
        Args:
            n_prompts: validation prompts the attribution is computed on.
        """
        super().__init__([ScoreSpec("direct_logit_attribution", n_prompts)])


class RegistryBaseline(Baselines):
    """Any head score of the registry by its name (`baselines/scorers.py`: `eap_ig`, `acdc`, … and every baseline
    added there): a new baseline needs no callback of its own."""

    def __init__(self, name: str, n_prompts: int = 64) -> None:
        """
        Args:
            name: the scorer's name in the registry (`baselines.scorers.SCORERS`).
            n_prompts: validation prompts the score is computed on.
        """
        super().__init__([ScoreSpec(name, n_prompts)])


class CombinationBaselines(Baselines):
    """Hand-made combinations against the number of heads k, on validation and every test set of the run:
    α = 1 on the k heads of largest score for every other baseline of the run (and single-head activation
    patching when the run has none) and for the attention from END to the IO, and the attention-weighted
    heads (`compute.CombinationCurves`). The Pareto fronts the learned α is drawn against."""

    def __init__(self, max_heads: int = 20, n_prompts: int = 64, curve_prompts: int | None = None) -> None:
        """
        Args:
            max_heads: largest k evaluated.
            n_prompts: validation prompts the attention to the IO is computed on.
            curve_prompts: prompts of each set (validation and every test set) the curves are computed on
                (None: all of them, as the learned recoveries in summary.json).
        """
        super().__init__([CombinationsSpec(max_heads, n_prompts, curve_prompts)])


def join_baselines(callbacks: Sequence[L.Callback]) -> list[L.Callback]:
    """`callbacks` with every `Baselines` replaced by one holding all their specs, in order, at the first one's
    place: the baselines the YAML lists one by one are then computed in one call."""
    specs = baseline_specs(callbacks)
    joined: list[L.Callback] = []
    for callback in callbacks:
        if not isinstance(callback, Baselines):
            joined.append(callback)
        elif not any(isinstance(c, Baselines) for c in joined):
            joined.append(Baselines(specs))
    return joined


def baseline_specs(callbacks: Sequence[L.Callback]) -> list[BaselineSpec]:
    """The specs of every `Baselines` among `callbacks`, in order."""
    return [spec for callback in callbacks if isinstance(callback, Baselines) for spec in callback.specs]


def evaluation_sets(datamodule: IOIDataModule | None) -> dict[str, ContrastBatch]:
    """The whole validation set (`val`) and every test set the run evaluates (the datamodule's `test_set_names`)."""
    if not hasattr(datamodule, "splits"):
        raise TypeError("Patching baselines need an IOIDataModule (they read its validation prompts).")
    datamodule.setup("fit")
    return {name: datamodule.splits[name] for name in [VAL_SET, *datamodule.test_set_names]}


def log_baselines(trainer: L.Trainer, results: Sequence[BaselineResult]) -> None:
    """Every result's α-independent figures to the run's TensorBoard, under `baselines/<stem>`."""
    for result in results:
        for stem, figure in baseline_figures(result).items():
            log_figure(trainer, f"baselines/{stem}", figure)


def log_figure(trainer: L.Trainer, tag: str, figure: Figure) -> None:
    """Add `figure` to the run's TensorBoard under `tag`, then release it (also without a TensorBoard logger)."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure(tag, figure, trainer.global_step, close=False)
    plt.close(figure)

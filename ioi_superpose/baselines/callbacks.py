"""Patching baselines as callbacks: each computes a [layer × head] effect once, at fit start, on
validation prompts (the registry's scorer of its name, `baselines/scorers.py`), logs its heatmap to
TensorBoard, and hands its figures and its comparison with the learned α to the run's summary
(`ioi_superpose.results.summary.RunWriter` writes both).

Enable them in the YAML config under `trainer.callbacks` (see experiments/*.yaml).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import lightning as L
import matplotlib.pyplot as plt
import torch
from jaxtyping import Float
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.figure import Figure
from torch import Tensor
from torchmetrics.functional import spearman_corrcoef

from ioi_superpose.baselines.logit_attribution import direct_logit_attribution
from ioi_superpose.baselines.patching import attribution_agreement
from ioi_superpose.baselines.scorers import (
    SCORERS,
    activation_patching,
    attribution_patching,
    patching_metric,
    path_patching,
)
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.data.ioi import IOIBatch
from ioi_superpose.engine.runs import Direction, end_logits, hook_name, logit_diff, recovery_of
from ioi_superpose.models import HookedTransformer
from ioi_superpose.results.pareto import VAL_SET
from ioi_superpose.results.plots import head_heatmap, line_plot, recovery_curves
from ioi_superpose.results.summary import has_gap, top_heads
from ioi_superpose.training.metrics import LogitDiffMetric
from ioi_superpose.training.system import HeadSuperposition


def spearman(a: Tensor, b: Tensor) -> float | None:
    """Spearman rank correlation of two flattened tensors (average ranks for ties); None when either is
    constant (e.g. an all-zero α), where the correlation is undefined."""
    a, b = a.flatten().double(), b.flatten().double()
    if bool((a == a[0]).all()) or bool((b == b[0]).all()):
        return None
    return float(spearman_corrcoef(a, b))


def heads_used(system: HeadSuperposition) -> int:
    """Heads of the learned combination's [layer, head] view above the L0 threshold. Heads, not units:
    per_position's (head, role) pairs and mixing's map entries can outnumber the heads."""
    return int((system.combination.head_coefficients().abs() > system.hparams.l0_threshold).sum())


def top_k_overlap(a: Tensor, b: Tensor, k: int) -> float:
    """Share of the k largest entries of `a` that are also among the k largest of `b`."""
    top_a = set(a.flatten().topk(k).indices.tolist())
    top_b = set(b.flatten().topk(k).indices.tolist())
    return len(top_a & top_b) / k


class HeadBaseline(L.Callback):
    """Base class: computes `effect` [n_layers, n_heads] at fit start on the first `n_prompts`
    validation prompts, in the direction the system trains in (rank 0 only: no collective calls)."""

    name = "baseline"
    title = "baseline effect"

    def __init__(self, n_prompts: int = 64) -> None:
        self.n_prompts = n_prompts
        self.effect: Float[Tensor, "n_layers n_heads"] | None = None
        self.extras: dict = {}

    def compute(self, system: HeadSuperposition, batch: ContrastBatch) -> Float[Tensor, "n_layers n_heads"]:
        """The registry's scorer of this name (`baselines/scorers.py`), in the direction the system trains in."""
        return SCORERS[self.name](system.frozen, batch, system.hparams.direction)

    def on_fit_start(self, trainer: L.Trainer, pl_module: HeadSuperposition) -> None:
        if not trainer.is_global_zero:
            return
        batch = evaluation_batch(trainer, self.n_prompts, pl_module.device)
        self.effect = self.compute(pl_module, batch).detach().float().cpu()
        for tag, figure in self.figures(pl_module).items():
            log_figure(trainer, f"baselines/{tag}", figure)

    def figures(self, system: HeadSuperposition) -> dict[str, Figure]:
        """PNG-ready figures, keyed by file stem (written under `baselines/` of the run)."""
        return {} if self.effect is None else {self.name: head_heatmap(self.effect, self.title)}

    def patching_metric(self, system: HeadSuperposition, batch: ContrastBatch) -> LogitDiffMetric:
        """Normalised logit difference: 0 = the base run, 1 = the source run."""
        return patching_metric(system.frozen, batch, system.hparams.direction)

    def summary(self, system: HeadSuperposition) -> dict:
        if self.effect is None:
            return {}
        alpha = system.combination.head_coefficients().cpu()  # [layer, head] (largest over roles)
        k = max(heads_used(system), 1)
        return {
            "spearman_abs_alpha_vs_abs_effect": spearman(alpha.abs(), self.effect.abs()),
            f"top_{k}_overlap": top_k_overlap(alpha.abs(), self.effect.abs(), k),
            "top_heads": top_heads(self.effect, k=5, key="value"),
            **self.extras,
        }


class ActivationPatchingBaseline(HeadBaseline):
    """Exact per-head activation patching of z (all positions): the normalised effect of each head alone."""

    name = "activation_patching"
    title = "activation patching (normalised effect)"


class AttributionPatchingBaseline(HeadBaseline):
    """Attribution patching (one forward and one backward for all heads), and its agreement (Pearson r)
    with exact activation patching on the same prompts."""

    name = "attribution_patching"
    title = "attribution patching (normalised effect)"

    def compute(self, system: HeadSuperposition, batch: ContrastBatch) -> Tensor:
        model, direction = system.frozen, system.hparams.direction
        metric = self.patching_metric(system, batch)
        attribution = attribution_patching(model, batch, direction, metric)
        exact = activation_patching(model, batch, direction, metric)
        self.extras["pearson_with_exact_patching"] = attribution_agreement(attribution, exact)
        return attribution


class PathPatchingBaseline(HeadBaseline):
    """Exact path patching from each head to `receivers` (heads' q/k/v inputs, or the logits)."""

    name = "path_patching"

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
        super().__init__(n_prompts)
        self.receivers = receivers if receivers == "logits" else [tuple(r) for r in receivers]
        self.receiver_input = receiver_input
        target = "logits" if receivers == "logits" else f"{receiver_input} of {self.receivers}"
        self.title = f"path patching → {target}"

    def compute(self, system: HeadSuperposition, batch: ContrastBatch) -> Tensor:
        return path_patching(system.frozen, batch, system.hparams.direction, self.receivers, self.receiver_input)


class DirectLogitAttribution(HeadBaseline):
    """The notebook's first check: direct logit attribution of the clean logit difference, per head
    (heatmap), per layer accumulated (logit lens) and decomposed (line plots)."""

    name = "direct_logit_attribution"
    title = "direct logit attribution per head (clean prompts)"

    def compute(self, system: HeadSuperposition, batch: ContrastBatch) -> Tensor:
        self.result = direct_logit_attribution(system.frozen, batch.clean_tokens, batch.answer_tokens, batch.end_pos)
        self.extras = {
            "logit_diff": self.result.logit_diff,
            "per_component": dict(zip(self.result.decomposed_labels, self.result.decomposed.tolist())),
        }
        return self.result.heads

    def figures(self, system: HeadSuperposition) -> dict[str, Figure]:
        if self.effect is None:
            return {}
        result = self.result
        return {
            **super().figures(system),
            f"{self.name}_accumulated": line_plot(
                result.accumulated, result.accumulated_labels, "logit lens: accumulated residual", "logit difference"
            ),
            f"{self.name}_decomposed": line_plot(
                result.decomposed, result.decomposed_labels, "logit difference per component", "logit difference"
            ),
        }


class CombinationBaselines(HeadBaseline):
    """Hand-made combinations against the number of heads k (the Pareto fronts the learned α is drawn
    against), on validation and on every test set of the run:

    - one uniform curve per ranking: α = 1 on the k heads of largest score, for every head score the run
      has — each other baseline callback's effect (`activation_patching`, `attribution_patching`,
      `path_patching`, `direct_logit_attribution`; single-head activation patching is computed here when
      its callback is absent) and `attention_to_io` (this callback's own). Scores are signed: a head
      whose patch moves the answer the wrong way ranks last;
    - `attention_weighted`: the k heads that attend most from END to the IO (mean over the clean
      prompts), each with α = its attention divided by the largest attention among the k — so the most
      attending head is patched fully and the others in proportion. (Raw attention probabilities as α,
      0.02–0.05 on toy IOI, patch almost nothing and could not recover the behaviour whichever heads
      they pick.)

    Rankings and attention come from the validation prompts (like the learned α, they are not refitted
    per set); each set's curves are the recovery of those α on the whole set (`curve_prompts`: its first
    `curve_prompts` prompts instead) — the prompts summary.json's learned recoveries use, so the learned
    points of a Pareto front and its curves are measured on the same prompts — null where
    the set's clean − corrupted gap is below `summary.MIN_GAP`. Computed at train start, once every
    other baseline's effect (computed at fit start) is known.
    """

    name = "combinations"
    title = "attention from END to IO"

    def __init__(self, max_heads: int = 20, n_prompts: int = 64, curve_prompts: int | None = None) -> None:
        """
        Args:
            max_heads: largest k evaluated.
            n_prompts: validation prompts the attention to the IO is computed on.
            curve_prompts: prompts of each set (validation and every test set) the curves are computed on
                (None: all of them, as the learned recoveries in summary.json).
        """
        super().__init__(n_prompts)
        self.max_heads = max_heads
        self.curves_by_set: dict[str, dict[str, list[float | None]]] = {}
        self.prompts_by_set: dict[str, int] = {}
        self.curve_prompts = curve_prompts
        self.val_batch: ContrastBatch | None = None

    def compute(self, system: HeadSuperposition, batch: ContrastBatch) -> Tensor:
        if not isinstance(batch, IOIBatch):
            raise TypeError("CombinationBaselines needs IOI prompts (the attention to the IO position).")
        self.batch = batch
        return attention_to_io(system.frozen, batch)

    def on_train_start(self, trainer: L.Trainer, pl_module: HeadSuperposition) -> None:
        if not trainer.is_global_zero or self.effect is None:
            return
        scores = {
            callback.name: callback.effect
            for callback in trainer.callbacks
            if isinstance(callback, HeadBaseline) and callback is not self and callback.effect is not None
        }
        if "activation_patching" not in scores:
            scores["activation_patching"] = activation_patching(
                pl_module.frozen, self.batch, pl_module.hparams.direction
            ).cpu()
        scores["attention_to_io"] = self.effect
        max_heads = min(self.max_heads, self.effect.numel())
        alphas = {name: uniform_top_k_alphas(score, max_heads) for name, score in scores.items()}
        alphas["attention_weighted"] = torch.stack([attention_weighted_alpha(self.effect, k)
                                                    for k in range(1, max_heads + 1)])  # fmt: skip
        batches = evaluation_batches(trainer, self.curve_prompts, pl_module.device)
        self.val_batch = batches[VAL_SET]
        self.prompts_by_set = {name: len(batch) for name, batch in batches.items()}
        self.curves_by_set = top_k_curves(pl_module.frozen, batches, alphas, pl_module.hparams.direction)

    def learned_point(self, system: HeadSuperposition) -> tuple[int, float]:
        """(heads used, recovery) of the learned α on the validation prompts of the curves."""
        batch = self.batch if self.val_batch is None else self.val_batch
        combination = system.combination
        was_training = combination.training
        combination.eval()  # deterministic gates
        with torch.no_grad():
            reference = system.reference(batch)
            recovery = reference.recovery(system.loss_terms(batch, reference)["answer_logits"])
        combination.train(was_training)
        return heads_used(system), float(recovery)

    def summary(self, system: HeadSuperposition) -> dict:
        if not self.curves_by_set:
            return {}
        l0, learned = self.learned_point(system)
        val = self.curves_by_set[VAL_SET]
        k = min(max(l0, 1), len(next(iter(val.values()))))
        return {
            "k": k,
            "learned_recovery": learned,
            "recovery_at_k": {name: curve[k - 1] for name, curve in val.items()},
            "curves_by_set": self.curves_by_set,
            "prompts_by_set": self.prompts_by_set,
            "top_heads_by_attention_to_io": top_heads(self.effect, k=5, key="value"),
        }

    def figures(self, system: HeadSuperposition) -> dict[str, Figure]:
        """The attention heatmap (from fit start) and, once computed, the validation curves with the learned α."""
        if not self.curves_by_set:
            return super().figures(system)
        curves = self.curves_by_set[VAL_SET]
        return {
            **super().figures(system),
            f"{self.name}_recovery": recovery_curves(curves, {"learned α": self.learned_point(system)}),
        }


def uniform_top_k_alphas(
    score: Float[Tensor, "n_layers n_heads"], max_heads: int
) -> Float[Tensor, "k n_layers n_heads"]:
    """α = 1 on the k heads of largest score, for k = 1..max_heads."""
    return torch.stack([top_k_alpha(score, k, torch.ones_like(score)) for k in range(1, max_heads + 1)])


@torch.no_grad()
def top_k_curves(
    model: HookedTransformer,
    batches: Mapping[str, ContrastBatch],
    alphas: Mapping[str, Float[Tensor, "k n_layers n_heads"]],
    direction: Direction,
) -> dict[str, dict[str, list[float | None]]]:
    """`curves[set][name][k - 1]`: the recovery of `alphas[name][k - 1]` on `batches[set]`, or None for a set
    whose clean − corrupted gap is below `summary.MIN_GAP` (there recovery is noise, as in summary.json).

    One folded run per set for every curve together; α that several curves share (e.g. the same top
    heads) run once.
    """
    names = list(alphas)
    lengths = [len(alphas[name]) for name in names]
    unique, inverse = torch.unique(torch.cat([alphas[name].float().cpu() for name in names]), dim=0,
                                   return_inverse=True)  # fmt: skip
    curves = {}
    for set_name, batch in batches.items():
        batch = batch.to(model.cfg.device)
        clean, corrupted = (float(logit_diff(end_logits(model, tokens, batch.end_pos, batch.answer_tokens)).mean())
                            for tokens in (batch.clean_tokens, batch.corrupted_tokens))  # fmt: skip
        if has_gap(clean, corrupted):
            values: list[float | None] = recovery_of(model, batch, unique, direction)[inverse].tolist()
        else:
            values = [None] * len(inverse)
        curves[set_name] = {name: values[sum(lengths[:i]) : sum(lengths[: i + 1])] for i, name in enumerate(names)}
    return curves


@torch.no_grad()
def attention_to_io(model, batch: IOIBatch) -> Float[Tensor, "n_layers n_heads"]:
    """Mean attention probability from END to the IO position, per head, on the clean prompts."""
    names = [hook_name("pattern", layer) for layer in range(model.cfg.n_layers)]
    _, cache = model.run_with_cache(batch.clean_tokens, names_filter=lambda name: name in names)
    rows = torch.arange(len(batch), device=batch.end_pos.device)
    # pattern: [batch, head, query, key]
    return torch.stack([cache[n][rows, :, batch.end_pos, batch.io_pos].mean(0) for n in names]).cpu()


def top_k_alpha(score: Tensor, k: int, weights: Tensor) -> Tensor:
    """α equal to `weights` on the k heads of largest `score`, 0 elsewhere."""
    alpha = torch.zeros_like(weights)
    top = score.flatten().topk(k).indices
    alpha.view(-1)[top] = weights.flatten()[top]
    return alpha


def attention_weighted_alpha(attention: Float[Tensor, "n_layers n_heads"], k: int) -> Tensor:
    """The k most attending heads, α = attention / the largest attention among them (see CombinationBaselines)."""
    alpha = top_k_alpha(attention, k, attention)
    return alpha / alpha.max().clamp_min(1e-12)


def evaluation_batch(trainer: L.Trainer, n_prompts: int, device: torch.device) -> ContrastBatch:
    """The first `n_prompts` validation prompts, on `device`."""
    return evaluation_batches(trainer, n_prompts, device, test_sets=False)[VAL_SET]


def evaluation_batches(
    trainer: L.Trainer, n_prompts: int | None, device: torch.device, test_sets: bool = True
) -> dict[str, ContrastBatch]:
    """The first `n_prompts` prompts (None: all) of validation (`val`) and, with `test_sets`, of every test set the
    run evaluates (the datamodule's `test_set_names`), on `device`."""
    datamodule = trainer.datamodule
    if not hasattr(datamodule, "splits"):
        raise TypeError("Patching baselines need an IOIDataModule (they read its validation prompts).")
    datamodule.setup("fit")
    names = [VAL_SET, *(datamodule.test_set_names if test_sets else ())]
    return {name: datamodule.splits[name][:n_prompts].trimmed().to(device) for name in names}


def log_figure(trainer: L.Trainer, tag: str, figure: Figure) -> None:
    """Add `figure` to the run's TensorBoard under `tag`, then release it (also without a TensorBoard logger)."""
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure(tag, figure, trainer.global_step, close=False)
    plt.close(figure)

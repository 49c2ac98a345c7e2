"""Patching baselines as callbacks: each computes a [layer × head] effect once, on validation prompts,
plots it, and at the end of fit is compared with the learned α in `summary.json`.

Enable them in the YAML config under `trainer.callbacks` (see experiments/*.yaml).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import lightning as L
import torch
from jaxtyping import Float
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor

from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.data.ioi import IOIBatch
from ioi_superpose.logit_attribution import direct_logit_attribution
from ioi_superpose.metrics import LogitDiffMetric, logit_diff
from ioi_superpose.patching import (
    activation_patch,
    attribution_agreement,
    attribution_patch,
    path_patch_sweep,
)
from ioi_superpose.plots import head_heatmap, line_plot, save_figure
from ioi_superpose.results import top_heads
from ioi_superpose.system import HeadSuperposition


def spearman(a: Tensor, b: Tensor) -> float:
    """Spearman rank correlation of two flattened tensors (average ranks for ties)."""

    def ranks(x: Tensor) -> Tensor:
        x = x.flatten().double()
        order = x.argsort()
        rank = torch.empty_like(x)
        rank[order] = torch.arange(len(x), dtype=torch.double)
        for value in x.unique():  # average the ranks of tied values
            tied = x == value
            rank[tied] = rank[tied].mean()
        return rank

    return float(torch.corrcoef(torch.stack([ranks(a), ranks(b)]))[0, 1])


def top_k_overlap(a: Tensor, b: Tensor, k: int) -> float:
    """Share of the k largest entries of `a` that are also among the k largest of `b`."""
    top_a = set(a.flatten().topk(k).indices.tolist())
    top_b = set(b.flatten().topk(k).indices.tolist())
    return len(top_a & top_b) / k


class HeadBaseline(L.Callback):
    """Base class: computes `effect` [n_layers, n_heads] at fit start on the first `n_prompts`
    validation prompts, in the direction the system trains in."""

    name = "baseline"
    title = "baseline effect"

    def __init__(self, n_prompts: int = 64) -> None:
        self.n_prompts = n_prompts
        self.effect: Float[Tensor, "n_layers n_heads"] | None = None
        self.extras: dict = {}

    def compute(self, system: HeadSuperposition, batch: ContrastBatch) -> Float[Tensor, "n_layers n_heads"]:
        raise NotImplementedError

    def on_fit_start(self, trainer: L.Trainer, pl_module: HeadSuperposition) -> None:
        run_dir = trainer.log_dir  # collective under DDP: every rank asks
        if not trainer.is_global_zero:
            return
        pl_module.place_frozen_model()
        batch = evaluation_batch(trainer, self.n_prompts, pl_module.device)
        self.effect = self.compute(pl_module, batch).detach().float().cpu()
        self.plot(trainer, run_dir)

    def plot(self, trainer: L.Trainer, run_dir: str | None) -> None:
        figure = head_heatmap(self.effect, self.title)
        log_figure(trainer, f"baselines/{self.name}", figure)
        if run_dir is not None:
            directory = Path(run_dir) / "baselines"
            directory.mkdir(parents=True, exist_ok=True)
            save_figure(figure, directory / f"{self.name}.png")

    def patching_metric(self, system: HeadSuperposition, batch: ContrastBatch) -> LogitDiffMetric:
        """Normalised logit difference: 0 = the base run, 1 = the source run."""
        reference = system.reference(batch)
        base = float(logit_diff(reference.base_answer_logits).mean())
        source = float(logit_diff(reference.source_answer_logits).mean())
        return LogitDiffMetric(batch.answer_tokens, batch.end_pos, corrupted_value=base, clean_value=source)

    def summary(self, alpha: Float[Tensor, "n_layers n_heads"], l0: int) -> dict:
        if self.effect is None:
            return {}
        k = max(l0, 1)
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

    def compute(self, system: HeadSuperposition, batch: ContrastBatch) -> Tensor:
        base_tokens, source_tokens = system.base_and_source_tokens(batch)
        return activation_patch(system.frozen, base_tokens, source_tokens, self.patching_metric(system, batch))


class AttributionPatchingBaseline(HeadBaseline):
    """Attribution patching (one forward and one backward for all heads), and its agreement (Pearson r)
    with exact activation patching on the same prompts."""

    name = "attribution_patching"
    title = "attribution patching (normalised effect)"

    def compute(self, system: HeadSuperposition, batch: ContrastBatch) -> Tensor:
        base_tokens, source_tokens = system.base_and_source_tokens(batch)
        metric = self.patching_metric(system, batch)
        # attribution_patch sums over the batch; the metric is a batch mean, so this is its estimate.
        attribution = attribution_patch(system.frozen, base_tokens, source_tokens, metric)
        exact = activation_patch(system.frozen, base_tokens, source_tokens, metric)
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
        """
        super().__init__(n_prompts)
        self.receivers = receivers if receivers == "logits" else [tuple(r) for r in receivers]
        self.receiver_input = receiver_input
        target = "logits" if receivers == "logits" else f"{receiver_input} of {self.receivers}"
        self.title = f"path patching → {target}"

    def compute(self, system: HeadSuperposition, batch: ContrastBatch) -> Tensor:
        base_tokens, source_tokens = system.base_and_source_tokens(batch)
        return path_patch_sweep(
            system.frozen, base_tokens, source_tokens, self.receivers, self.patching_metric(system, batch),
            receiver_input=self.receiver_input,
        )  # fmt: skip


class DirectLogitAttribution(HeadBaseline):
    """The notebook's first check: direct logit attribution of the clean logit difference, per head
    (heatmap), per layer accumulated (logit lens) and decomposed (line plots)."""

    name = "direct_logit_attribution"
    title = "direct logit attribution per head (clean prompts)"

    def compute(self, system: HeadSuperposition, batch: ContrastBatch) -> Tensor:
        result = direct_logit_attribution(system.frozen, batch.clean_tokens, batch.answer_tokens, batch.end_pos)
        self.lines = {
            "accumulated": line_plot(result.accumulated, result.accumulated_labels, "logit lens: accumulated residual", "logit difference"),
            "decomposed": line_plot(result.decomposed, result.decomposed_labels, "logit difference per component", "logit difference"),
        }  # fmt: skip
        self.extras = {"logit_diff": result.logit_diff, "per_component": dict(zip(result.decomposed_labels, result.decomposed.tolist()))}
        return result.heads

    def plot(self, trainer: L.Trainer, run_dir: str | None) -> None:
        super().plot(trainer, run_dir)
        for kind, figure in self.lines.items():
            log_figure(trainer, f"baselines/{self.name}_{kind}", figure)
            if run_dir is not None:
                save_figure(figure, Path(run_dir) / "baselines" / f"{self.name}_{kind}.png")


class CombinationBaselines(HeadBaseline):
    """Hand-made combinations against the number of heads k: α = 1 on the top-k heads by activation
    patching effect (uniform), and α = each head's mean attention from END to the IO for the top-k
    heads by that attention (attention-weighted). Their recovery at k = the learned L0 goes in the
    summary, next to the learned combination's."""

    name = "combinations"
    title = "attention from END to IO"

    def __init__(self, max_heads: int = 20, n_prompts: int = 64) -> None:
        """
        Args:
            max_heads: largest k evaluated.
        """
        super().__init__(n_prompts)
        self.max_heads = max_heads
        self.curves: dict[str, list[float]] = {}

    def compute(self, system: HeadSuperposition, batch: ContrastBatch) -> Tensor:
        if not isinstance(batch, IOIBatch):
            raise TypeError("CombinationBaselines needs IOI prompts (the attention to the IO position).")
        self.batch, self.system = batch, system
        base_tokens, source_tokens = system.base_and_source_tokens(batch)
        patching = activation_patch(system.frozen, base_tokens, source_tokens, self.patching_metric(system, batch))
        attention = attention_to_io(system, batch)
        k_values = range(1, min(self.max_heads, patching.numel()) + 1)
        self.curves = {
            "uniform_top_k": [system.recovery_of(batch, top_k_alpha(patching, k, torch.ones_like(patching))) for k in k_values],
            "attention_weighted_top_k": [system.recovery_of(batch, top_k_alpha(attention, k, attention)) for k in k_values],
        }  # fmt: skip
        return attention

    def summary(self, alpha: Tensor, l0: int) -> dict:
        if not self.curves:
            return {}
        learned = self.system.recovery_of(self.batch, alpha.to(self.system.device))
        k = min(max(l0, 1), len(self.curves["uniform_top_k"]))
        return {
            "k": k,
            "learned_recovery": learned,
            **{f"{name}_recovery_at_k": curve[k - 1] for name, curve in self.curves.items()},
            "curves": self.curves,
            "top_heads_by_attention_to_io": top_heads(self.effect, k=5, key="value"),
        }

    def on_fit_end(self, trainer: L.Trainer, pl_module: HeadSuperposition) -> None:
        if not trainer.is_global_zero or not self.curves:
            return
        import matplotlib.pyplot as plt

        alpha = pl_module.combination.coefficients.detach()
        l0 = pl_module.combination.l0(pl_module.hparams.l0_threshold)
        figure, axes = plt.subplots(figsize=(5, 3.4))
        for name, curve in self.curves.items():
            axes.plot(range(1, len(curve) + 1), curve, marker=".", label=name)
        axes.scatter([l0], [pl_module.recovery_of(self.batch, alpha)], color="black", zorder=3, label="learned α")
        axes.set_xlabel("number of heads")
        axes.set_ylabel("recovery")
        axes.legend()
        figure.tight_layout()
        log_figure(trainer, "baselines/combinations_recovery", figure)
        if trainer.log_dir is not None:
            save_figure(figure, Path(trainer.log_dir) / "baselines" / "combinations_recovery.png")


@torch.no_grad()
def attention_to_io(system: HeadSuperposition, batch: IOIBatch) -> Float[Tensor, "n_layers n_heads"]:
    """Mean attention probability from END to the IO position, per head, on the clean prompts."""
    model = system.frozen
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.cfg.n_layers)]
    _, cache = model.run_with_cache(batch.clean_tokens, names_filter=lambda name: name in names)
    rows = torch.arange(len(batch), device=batch.end_pos.device)
    # pattern: [batch, head, query, key]
    return torch.stack([cache[n][rows, :, batch.end_pos, batch.io_pos].mean(0) for n in names])


def top_k_alpha(score: Tensor, k: int, weights: Tensor) -> Tensor:
    """α equal to `weights` on the k heads of largest `score`, 0 elsewhere."""
    alpha = torch.zeros_like(weights)
    top = score.flatten().topk(k).indices
    alpha.view(-1)[top] = weights.flatten()[top]
    return alpha


def evaluation_batch(trainer: L.Trainer, n_prompts: int, device: torch.device) -> ContrastBatch:
    """The first `n_prompts` validation prompts, on `device`."""
    datamodule = trainer.datamodule
    if not hasattr(datamodule, "splits"):
        raise TypeError("Patching baselines need an IOIDataModule (they read its validation prompts).")
    datamodule.setup("fit")
    return datamodule.splits["val"][:n_prompts].trimmed().to(device)


def log_figure(trainer: L.Trainer, tag: str, figure) -> None:
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure(tag, figure, trainer.global_step, close=False)

"""Patching baselines as callbacks: each computes a [layer × head] effect once, at fit start, on
validation prompts, logs its heatmap to TensorBoard, and hands its figures and its comparison with the
learned α to the run's summary (`ioi_superpose.summary.RunWriter` writes both).

Enable them in the YAML config under `trainer.callbacks` (see experiments/*.yaml).
"""

from __future__ import annotations

from typing import Literal

import lightning as L
import torch
from jaxtyping import Float
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.figure import Figure
from torch import Tensor
from torchmetrics.functional import spearman_corrcoef

from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.data.ioi import IOIBatch
from ioi_superpose.logit_attribution import direct_logit_attribution
from ioi_superpose.metrics import LogitDiffMetric
from ioi_superpose.patching import activation_patch, attribution_agreement, attribution_patch, path_patch_sweep
from ioi_superpose.plots import head_heatmap, line_plot, recovery_curves
from ioi_superpose.runs import hook_name, logit_diff
from ioi_superpose.summary import top_heads
from ioi_superpose.system import HeadSuperposition


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
        raise NotImplementedError

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
        reference = system.reference(batch)
        base = float(logit_diff(reference.base_answer_logits).mean())
        source = float(logit_diff(reference.source_answer_logits).mean())
        return LogitDiffMetric(batch.answer_tokens, batch.end_pos, corrupted_value=base, clean_value=source)

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
            n_prompts: validation prompts the effect is computed on.
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
    """Hand-made combinations against the number of heads k, next to the learned α at equal L0:

    - `uniform_top_k`: α = 1 on the k heads of largest single-head activation patching effect;
    - `attention_weighted_top_k`: the k heads that attend most from END to the IO (mean over the clean
      prompts), each with α = its attention divided by the largest attention among the k — so the most
      attending head is patched fully and the others in proportion. (Raw attention probabilities as α,
      0.02–0.05 on toy IOI, patch almost nothing and could not recover the behaviour whichever heads
      they pick.)
    """

    name = "combinations"
    title = "attention from END to IO"

    def __init__(self, max_heads: int = 20, n_prompts: int = 64) -> None:
        """
        Args:
            max_heads: largest k evaluated.
            n_prompts: validation prompts the curves are computed on.
        """
        super().__init__(n_prompts)
        self.max_heads = max_heads
        self.curves: dict[str, list[float]] = {}

    def compute(self, system: HeadSuperposition, batch: ContrastBatch) -> Tensor:
        if not isinstance(batch, IOIBatch):
            raise TypeError("CombinationBaselines needs IOI prompts (the attention to the IO position).")
        self.batch = batch
        base_tokens, source_tokens = system.base_and_source_tokens(batch)
        patching = activation_patch(system.frozen, base_tokens, source_tokens, self.patching_metric(system, batch))
        attention = attention_to_io(system.frozen, batch)
        k_values = range(1, min(self.max_heads, patching.numel()) + 1)
        candidates = {
            "uniform_top_k": [top_k_alpha(patching, k, torch.ones_like(patching)) for k in k_values],
            "attention_weighted_top_k": [attention_weighted_alpha(attention, k) for k in k_values],
        }
        # All k of a family in one folded run.
        self.curves = {
            name: system.recovery_of(batch, torch.stack(alphas)).tolist() for name, alphas in candidates.items()
        }
        return attention

    def learned_point(self, system: HeadSuperposition) -> tuple[int, float]:
        """(heads used, recovery) of the learned α on the baselines' prompts."""
        combination = system.combination
        was_training = combination.training
        combination.eval()  # deterministic gates
        with torch.no_grad():
            reference = system.reference(self.batch)
            recovery = reference.recovery(system.loss_terms(self.batch, reference)["answer_logits"])
        combination.train(was_training)
        return heads_used(system), float(recovery)

    def summary(self, system: HeadSuperposition) -> dict:
        if not self.curves:
            return {}
        l0, learned = self.learned_point(system)
        k = min(max(l0, 1), len(self.curves["uniform_top_k"]))
        return {
            "k": k,
            "learned_recovery": learned,
            **{f"{name}_recovery_at_k": curve[k - 1] for name, curve in self.curves.items()},
            "curves": self.curves,
            "top_heads_by_attention_to_io": top_heads(self.effect, k=5, key="value"),
        }

    def figures(self, system: HeadSuperposition) -> dict[str, Figure]:
        if not self.curves:
            return {}
        return {
            **super().figures(system),
            f"{self.name}_recovery": recovery_curves(self.curves, {"learned α": self.learned_point(system)}),
        }


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
    datamodule = trainer.datamodule
    if not hasattr(datamodule, "splits"):
        raise TypeError("Patching baselines need an IOIDataModule (they read its validation prompts).")
    datamodule.setup("fit")
    return datamodule.splits["val"][:n_prompts].trimmed().to(device)


def log_figure(trainer: L.Trainer, tag: str, figure: Figure) -> None:
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure(tag, figure, trainer.global_step, close=True)

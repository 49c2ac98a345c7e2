"""The LightningModule: a frozen model, a learnable head combination, loss = objective + λ·‖α‖₁."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import lightning as L
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from ioi_superpose.errors import ConfigError, NonFiniteLossError
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.interventions import HeadCombination, head_z, patched_heads
from ioi_superpose.metrics import (
    IOAccuracy,
    MeanLogitDiff,
    NormalisedRecovery,
    logit_diff,
    normalised_recovery,
    unembed_at_end,
)
from ioi_superpose.models import HookedTransformer, load_frozen_model

Direction = Literal["denoising", "noising"]
Objective = Literal["logit_diff", "kl", "maximize"]


@dataclass
class RunReference:
    """What the unpatched runs give for a batch. The model is frozen, so it never changes per prompt."""

    source_z: Float[Tensor, "layer batch pos head d_head"]
    source_answer_logits: Float[Tensor, "batch 2"]
    base_answer_logits: Float[Tensor, "batch 2"]
    source_log_probs: Float[Tensor, "batch vocab"] | None  # at END; only for the kl objective


class LossTerms(NamedTuple):
    loss: Float[Tensor, ""]
    objective: Float[Tensor, ""]
    l1: Float[Tensor, ""]
    answer_logits: Float[Tensor, "batch 2"]
    reference: RunReference


class ReferenceCache:
    """Per-prompt `RunReference` rows keyed by `ContrastBatch.index`, kept on the module's device.

    Caching the source activations turns a training step into one patched forward and backward;
    without it (`cache_source_activations=False`) only the small per-prompt answer logits are kept.
    """

    def __init__(self, keep_activations: bool) -> None:
        self.keep_activations = keep_activations
        self.rows: dict[int, tuple[Tensor | None, Tensor, Tensor, Tensor | None]] = {}

    def get(self, batch: ContrastBatch) -> RunReference | None:
        keys = batch.index.tolist()
        if not self.keep_activations or any(key not in self.rows for key in keys):
            return None
        rows = [self.rows[key] for key in keys]
        length = batch.clean_tokens.shape[1]
        source_z = torch.stack([F.pad(row[0], (0, 0, 0, 0, 0, length - row[0].shape[1])) for row in rows], dim=1)
        log_probs = None if rows[0][3] is None else torch.stack([row[3] for row in rows])
        return RunReference(source_z, torch.stack([r[1] for r in rows]), torch.stack([r[2] for r in rows]), log_probs)

    def base_answer_logits(self, batch: ContrastBatch) -> Tensor | None:
        keys = batch.index.tolist()
        if any(key not in self.rows for key in keys):
            return None
        return torch.stack([self.rows[key][2] for key in keys])

    def put(self, batch: ContrastBatch, reference: RunReference) -> None:
        for row, (key, end) in enumerate(zip(batch.index.tolist(), batch.end_pos.tolist())):
            # Positions after END never influence the END logits (causal attention): not stored.
            z = reference.source_z[:, row, : end + 1].clone() if self.keep_activations else None
            log_probs = None if reference.source_log_probs is None else reference.source_log_probs[row]
            self.rows[key] = (z, reference.source_answer_logits[row], reference.base_answer_logits[row], log_probs)


class HeadSuperposition(L.LightningModule):
    """Learn a sparse combination α[layer, head] of head outputs that carries a behaviour.

    Each training step runs the base prompts with every head's z mixed towards the source prompts'
    z by α, reads the answer logits at END only, and minimises the objective plus λ·‖α‖₁. Only α
    trains; the model is frozen.
    """

    def __init__(
        self,
        model_name: str = "gpt2-small",
        direction: Direction = "denoising",
        objective: Objective = "logit_diff",
        l1: float = 1e-3,
        l1_warmup_steps: int = 0,
        lr: float = 0.05,
        bounded: bool = True,
        init: float = 1.0,
        l0_threshold: float = 0.05,
        cache_source_activations: bool = True,
        preloaded_model: HookedTransformer | None = None,
    ) -> None:
        """
        Args:
            model_name: TransformerLens model name (gpt2-small, …), a directory holding a Hugging Face
                GPT-2 checkpoint, or a toy checkpoint file (.pt) made by `ioi_superpose.train_toy`.
            direction: `denoising` runs the corrupted prompts and patches in the clean ones' head outputs
                (finds heads sufficient for the behaviour); `noising` runs the clean prompts and patches
                in the corrupted ones (finds heads necessary for it).
            objective: `logit_diff` drives the normalised effect of the patch to 1 (for denoising: the
                recovery of the clean logit difference); `kl` matches the source run's next-token
                distribution at END; `maximize` pushes the effect as high as it goes (can exceed 1).
            l1: weight λ of the L1 penalty on α (sparsity). Must be >= 0.
            l1_warmup_steps: λ rises linearly from 0 to `l1` over this many steps (0: no warm-up).
            lr: Adam learning rate for α. Must be > 0.
            bounded: keep α in [0, 1] (projected after each step); False lets α take any real value.
            init: initial value of every α (1.0 starts from the full source run and prunes).
            l0_threshold: a head counts towards L0 when |α| exceeds this.
            cache_source_activations: keep each training prompt's source head outputs after first use
                (the model is frozen, so they never change): one forward+backward per step instead of
                two forwards and a backward, at the cost of memory for n_layers×pos×d_model per prompt.
            preloaded_model: Python API only: an already loaded HookedTransformer, used instead of
                loading `model_name`.
        """
        super().__init__()
        if l1 < 0:
            raise ConfigError(f"--model.l1 must be >= 0 (it weighs the L1 sparsity penalty), got {l1}.")
        if lr <= 0:
            raise ConfigError(f"--model.lr must be > 0, got {lr}.")
        if l1_warmup_steps < 0:
            raise ConfigError(f"--model.l1_warmup_steps must be >= 0, got {l1_warmup_steps}.")
        if direction not in ("denoising", "noising"):
            raise ConfigError(f"--model.direction must be 'denoising' or 'noising', got {direction!r}.")
        if objective not in ("logit_diff", "kl", "maximize"):
            raise ConfigError(f"--model.objective must be 'logit_diff', 'kl' or 'maximize', got {objective!r}.")
        self.save_hyperparameters(ignore=["preloaded_model"])
        model = preloaded_model if preloaded_model is not None else load_frozen_model(model_name)
        # Kept out of the module tree: the frozen weights are never saved in our checkpoints (they hold
        # α; the model is reloaded from `model_name`) nor wrapped by DDP; `place_frozen_model` moves it.
        self.__dict__["frozen"] = model
        self.combination = HeadCombination(model.cfg.n_layers, model.cfg.n_heads, bounded, init)
        self.reference_cache = ReferenceCache(keep_activations=cache_source_activations)
        self.eval_metrics = nn.ModuleDict()

    # ----------------------------------------------------------------------------------------------
    # runs

    def place_frozen_model(self) -> None:
        # Runs once the strategy has put α on its device. TransformerLens's own `to` also updates
        # cfg.device, which it uses to place inputs.
        if self.frozen.cfg.device != str(self.device):
            self.frozen.to(self.device)

    def on_fit_start(self) -> None:
        self.place_frozen_model()

    def on_validation_start(self) -> None:
        self.place_frozen_model()

    def on_test_start(self) -> None:
        self.place_frozen_model()

    def base_and_source_tokens(self, batch: ContrastBatch) -> tuple[Tensor, Tensor]:
        """(base, source) tokens for this direction."""
        if self.hparams.direction == "denoising":
            return batch.corrupted_tokens, batch.clean_tokens
        return batch.clean_tokens, batch.corrupted_tokens

    @torch.no_grad()
    def reference(self, batch: ContrastBatch, cached_rows: bool = False) -> RunReference:
        """The unpatched source and base runs for `batch` (no grad).

        `cached_rows`: `batch` holds rows of the training set, whose per-prompt results are cached by
        `batch.index`. Only training steps set it: rows of any other set would collide with those keys.
        """
        cached = self.reference_cache.get(batch) if cached_rows else None
        if cached is not None:
            return cached
        base_tokens, source_tokens = self.base_and_source_tokens(batch)
        source_z, source_residual = head_z(self.frozen, source_tokens)
        source_answer_logits = unembed_at_end(self.frozen, source_residual, batch.end_pos, batch.answer_tokens)
        base_answer_logits = self.reference_cache.base_answer_logits(batch) if cached_rows else None
        if base_answer_logits is None:
            base_residual = self.frozen(base_tokens, stop_at_layer=self.frozen.cfg.n_layers)
            base_answer_logits = unembed_at_end(self.frozen, base_residual, batch.end_pos, batch.answer_tokens)
        source_log_probs = None
        if self.hparams.objective == "kl":
            source_log_probs = unembed_at_end(self.frozen, source_residual, batch.end_pos).log_softmax(-1)
        reference = RunReference(source_z, source_answer_logits, base_answer_logits, source_log_probs)
        if cached_rows:
            self.reference_cache.put(batch, reference)
        return reference

    def patched_end_logits(
        self, batch: ContrastBatch, reference: RunReference, full_vocab: bool
    ) -> Float[Tensor, "batch k"]:
        """Logits at END of the base run with α-mixed heads: the answer pair, or the whole vocabulary."""
        base_tokens, _ = self.base_and_source_tokens(batch)
        with patched_heads(self.frozen, self.combination, reference.source_z):
            residual = self.frozen(base_tokens, stop_at_layer=self.frozen.cfg.n_layers)
        return unembed_at_end(self.frozen, residual, batch.end_pos, None if full_vocab else batch.answer_tokens)

    def follow_frozen_model(self) -> None:
        """Put α where the frozen model is. Needed outside a Trainer stage: each stage ends by moving
        the LightningModule to the CPU, and the frozen model (not a submodule) stays where it was."""
        self.to(next(self.frozen.parameters()).device)

    @torch.no_grad()
    def recovery_of(self, batch: ContrastBatch, alpha: Float[Tensor, "layer head"]) -> float:
        """Normalised recovery on `batch` with α fixed to `alpha` (for baselines; the learned α is untouched)."""
        self.follow_frozen_model()
        batch = batch.to(self.device)
        fixed = HeadCombination(*alpha.shape, bounded=False).to(self.device)
        fixed.coefficients.copy_(alpha)
        reference = self.reference(batch)
        base_tokens, _ = self.base_and_source_tokens(batch)
        with patched_heads(self.frozen, fixed, reference.source_z):
            residual = self.frozen(base_tokens, stop_at_layer=self.frozen.cfg.n_layers)
        patched = unembed_at_end(self.frozen, residual, batch.end_pos, batch.answer_tokens)
        return float(_recovery(patched, *self.clean_and_corrupted(reference)))

    def objective(self, batch: ContrastBatch, reference: RunReference) -> tuple[Tensor, Tensor]:
        """(objective value, answer logits of the patched run)."""
        full_vocab = self.hparams.objective == "kl"
        end_logits = self.patched_end_logits(batch, reference, full_vocab)
        answer_logits = end_logits.gather(-1, batch.answer_tokens) if full_vocab else end_logits
        if full_vocab:
            log_probs = end_logits.log_softmax(-1)
            value = F.kl_div(log_probs, reference.source_log_probs, log_target=True, reduction="batchmean")
            return value, answer_logits
        effect = self.effect(answer_logits, reference)
        value = (1.0 - effect) ** 2 if self.hparams.objective == "logit_diff" else -effect
        return value, answer_logits

    @staticmethod
    def effect(patched: Float[Tensor, "batch 2"], reference: RunReference) -> Float[Tensor, ""]:
        """How far the patch moves the mean logit difference from the base run (0) to the source run (1)."""
        base = logit_diff(reference.base_answer_logits).mean()
        source = logit_diff(reference.source_answer_logits).mean()
        return (logit_diff(patched).mean() - base) / (source - base)

    # ----------------------------------------------------------------------------------------------
    # training

    def l1_weight(self) -> float:
        warmup = self.hparams.l1_warmup_steps
        ramp = 1.0 if warmup == 0 else min(1.0, self.global_step / warmup)
        return self.hparams.l1 * ramp

    def loss_terms(self, batch: ContrastBatch) -> LossTerms:
        """The training loss on `batch` and what it is made of (the whole of a step's model work)."""
        reference = self.reference(batch, cached_rows=True)
        objective, answer_logits = self.objective(batch, reference)
        l1 = self.combination.l1()
        return LossTerms(objective + self.l1_weight() * l1, objective, l1, answer_logits, reference)

    def training_step(self, batch: ContrastBatch, batch_idx: int) -> Tensor:
        terms = self.loss_terms(batch)
        if not torch.isfinite(terms.loss):
            raise NonFiniteLossError(
                f"The loss is {terms.loss.item()} at training step {self.global_step} (objective "
                f"{terms.objective.item()}, L1 {terms.l1.item()}). Training stopped; the checkpoints saved "
                "before this step are kept. Lower --model.lr, or use --model.bounded true."
            )
        clean, corrupted = self.clean_and_corrupted(terms.reference)
        self.log_dict(
            {
                "train/loss": terms.loss,
                "train/objective": terms.objective,
                "train/recovery": _recovery(terms.answer_logits, clean, corrupted),
                "train/l1": terms.l1,
                "train/l0": float(self.combination.l0(self.hparams.l0_threshold)),
                "train/l1_weight": self.l1_weight(),
            },
            batch_size=len(batch),
        )
        return terms.loss

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        self.combination.project_()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.combination.parameters(), lr=self.hparams.lr)

    # ----------------------------------------------------------------------------------------------
    # evaluation

    def clean_and_corrupted(self, reference: RunReference) -> tuple[Tensor, Tensor]:
        if self.hparams.direction == "denoising":
            return reference.source_answer_logits, reference.base_answer_logits
        return reference.base_answer_logits, reference.source_answer_logits

    def _metrics_for(self, set_name: str) -> nn.ModuleDict:
        if set_name not in self.eval_metrics:
            self.eval_metrics[set_name] = nn.ModuleDict(
                {
                    "recovery": NormalisedRecovery(),
                    "logit_diff": MeanLogitDiff(),
                    "clean_logit_diff": MeanLogitDiff(),
                    "corrupted_logit_diff": MeanLogitDiff(),
                    "accuracy": IOAccuracy(),
                    "clean_accuracy": IOAccuracy(),
                }
            ).to(self.device)
        return self.eval_metrics[set_name]

    def _evaluate(self, batch: ContrastBatch, stage: str, set_name: str) -> None:
        reference = self.reference(batch)
        objective, patched = self.objective(batch, reference)
        clean, corrupted = self.clean_and_corrupted(reference)
        metrics = self._metrics_for(f"{stage}/{set_name}")
        metrics["recovery"].update(patched, clean, corrupted)
        metrics["logit_diff"].update(patched)
        metrics["clean_logit_diff"].update(clean)
        metrics["corrupted_logit_diff"].update(corrupted)
        metrics["accuracy"].update(patched)
        metrics["clean_accuracy"].update(clean)
        prefix = stage if set_name == "in_distribution" else f"{stage}/{set_name}"
        loss = objective + self.hparams.l1 * self.combination.l1()
        self.log(f"{prefix}/loss", loss, batch_size=len(batch), add_dataloader_idx=False, sync_dist=True)
        for name, metric in metrics.items():
            # Metrics are made per set on first use, so name the attribute Lightning should reduce.
            self.log(
                f"{prefix}/{name}",
                metric,
                batch_size=len(batch),
                add_dataloader_idx=False,
                metric_attribute=f"eval_metrics.{stage}/{set_name}.{name}",
            )

    def validation_step(self, batch: ContrastBatch, batch_idx: int) -> None:
        self._evaluate(batch, "val", "in_distribution")

    def test_step(self, batch: ContrastBatch, batch_idx: int, dataloader_idx: int = 0) -> None:
        names = getattr(self.trainer.datamodule, "test_set_names", None) if self.trainer.datamodule else None
        self._evaluate(batch, "test", names[dataloader_idx] if names else "in_distribution")


def _recovery(patched: Tensor, clean: Tensor, corrupted: Tensor) -> Tensor:
    return normalised_recovery(logit_diff(patched).mean(), logit_diff(corrupted).mean(), logit_diff(clean).mean())

"""Train a toy model (attention-only, or with MLPs: `d_mlp`) on next-token loss at labelled positions.

`ToyModelTraining` is task-agnostic: it reads batches `{"tokens", "labels", "group"?}` (`TokenBatch`)
where `labels` holds the target at labelled positions and `IGNORE_INDEX` elsewhere, and `group`
(optional) names the feature/group of each row, for per-group accuracy (`GroupAccuracy`). Exporting the
trained model is `toy/export.py`'s job.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from torchmetrics import Metric

from ioi_superpose.engine.vocabulary import hook_name
from ioi_superpose.errors import ConfigError
from ioi_superpose.models import HookedTransformer
from ioi_superpose.models.toy import (
    PositionalEmbedding,
    build_toy_model,
    load_toy_checkpoint,
    toy_config,
    toy_config_kwargs,
)
from ioi_superpose.toy.batches import IGNORE_INDEX, TokenBatch


class GroupAccuracy(Metric):
    """Accuracy at labelled positions, per group (sums of correct/count, so it reduces across ranks)."""

    full_state_update = False

    def __init__(self, n_groups: int) -> None:
        super().__init__()
        self.add_state("correct", default=torch.zeros(n_groups, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros(n_groups, dtype=torch.long), dist_reduce_fx="sum")

    def update(
        self, row_correct: Int[Tensor, " rows"], row_count: Int[Tensor, " rows"], group: Int[Tensor, " rows"]
    ) -> None:
        self.correct.index_add_(0, group, row_correct)
        self.count.index_add_(0, group, row_count)

    def compute(self) -> Float[Tensor, " groups"]:
        """Accuracy per group; a group never seen reads NaN rather than a fake 0 or 1 (whoever writes it
        to JSON turns NaN into None first: `export.evaluate_groups` does)."""
        return self.correct.float() / self.count.float()


def labelled_accuracy(
    logits: Float[Tensor, "batch pos vocab"], labels: Int[Tensor, "batch pos"]
) -> tuple[Int[Tensor, " batch"], Int[Tensor, " batch"]]:
    """(correct predictions, labelled positions) per row."""
    mask = labels != IGNORE_INDEX
    correct = (logits.argmax(-1) == labels) & mask
    return correct.sum(-1), mask.sum(-1)


def head_keep_mask(
    generator: torch.Generator, batch: int, n_layers: int, n_heads: int, p: float
) -> Float[Tensor, "n_layers batch n_heads"]:
    """1 where a head's z is kept, 0 where it is dropped (probability `p`, independently per example,
    layer and head); no rescaling of the kept heads (see the module docstring)."""
    return (torch.rand(n_layers, batch, n_heads, generator=generator) >= p).float()


def head_dropout_hooks(
    model: HookedTransformer, keep: Float[Tensor, "n_layers batch n_heads"]
) -> list[tuple[str, Callable[..., Tensor]]]:
    """Forward hooks multiplying each layer's z [batch, pos, head, d_head] by its row of `keep`."""

    def drop(z: Tensor, hook: Any, layer: int) -> Tensor:
        return z * keep[layer].to(z)[:, None, :, None]

    return [(hook_name("z", layer), partial(drop, layer=layer)) for layer in range(model.cfg.n_layers)]


class ToyModelTraining(L.LightningModule):
    """A toy TransformerLens model trained with cross-entropy at the labelled positions."""

    def __init__(
        self,
        n_layers: int = 1,
        n_heads: int = 2,
        d_model: int = 32,
        d_head: int = 8,
        d_vocab: int = 12,
        n_ctx: int = 11,
        layer_norm: bool = False,
        positional_embedding: PositionalEmbedding = "standard",
        model_seed: int = 0,
        lr: float = 1e-2,
        weight_decay: float = 1e-2,
        betas: tuple[float, float] = (0.9, 0.98),
        group_names: list[str] | None = None,
        init_from: str | None = None,
        head_dropout: float = 0.0,
        head_dropout_layers: list[int] | None = None,
        d_mlp: int = 0,
        lr_warmup_steps: int = 0,
    ) -> None:
        """
        Args:
            n_layers: attention layers.
            n_heads: heads per layer.
            d_model: residual stream width.
            d_head: width of each head's z.
            d_vocab: vocabulary size (linked from the datamodule by the training entry).
            n_ctx: maximum sequence length (linked from the datamodule by the training entry).
            layer_norm: LayerNorm before each layer and the unembedding; off keeps the model linear in z.
            positional_embedding: `standard` (learned, added to the residual), `shortformer` (learned,
                keys and queries only) or `rotary`.
            model_seed: seed of the weight initialisation.
            lr: AdamW learning rate.
            weight_decay: AdamW decoupled weight decay.
            betas: AdamW betas.
            group_names: names of the groups in `batch["group"]`, for per-group accuracy (linked from the
                datamodule); None logs overall accuracy only.
            init_from: a toy checkpoint (`.pt` from `ExportToyModel`) whose weights replace the random
                initialisation, e.g. to `validate`/`test` a shipped model; its config must match.
            head_dropout: probability p in [0, 1) that a head's z is zeroed in a training step, per
                example, layer and head, without rescaling (module docstring: why); 0 turns it off.
            head_dropout_layers: the layers head dropout applies to (None: every layer).
            d_mlp: width of an MLP (GELU, as GPT-2's) in every block; 0 (the default) builds an attention-only model.
            lr_warmup_steps: the learning rate rises linearly from lr/steps to lr over this many steps; 0 (the
                default) starts at lr.
        """
        super().__init__()
        if not 0.0 <= head_dropout < 1.0:
            raise ConfigError(
                f"--model.head_dropout must be in [0, 1) (the probability that a head's z is dropped in "
                f"training), got {head_dropout}; use 0 to turn it off."
            )
        if lr_warmup_steps < 0:
            raise ConfigError(f"--model.lr_warmup_steps must be >= 0, got {lr_warmup_steps}.")
        if head_dropout_layers is not None and not all(0 <= layer < n_layers for layer in head_dropout_layers):
            raise ConfigError(
                f"--model.head_dropout_layers {head_dropout_layers} names a layer outside [0, {n_layers - 1}]; "
                "give layers of this model, or null for every layer."
            )
        self.save_hyperparameters()
        self.model: HookedTransformer = build_toy_model(
            toy_config(n_layers, n_heads, d_model, d_head, d_vocab, n_ctx, layer_norm, positional_embedding, d_mlp),
            seed=model_seed,
        )
        if init_from is not None:
            self._load_weights(init_from)
        self.group_names = list(group_names) if group_names else []
        self.val_group_accuracy = GroupAccuracy(max(len(self.group_names), 1))
        self.test_group_accuracy = GroupAccuracy(max(len(self.group_names), 1))

    def _load_weights(self, path: str) -> None:
        if not Path(path).is_file():
            raise ConfigError(
                f"--model.init_from={path}: no such file; give a toy checkpoint (`.pt`) written by ExportToyModel."
            )
        trained, _ = load_toy_checkpoint(path)
        if toy_config_kwargs(trained.cfg) != toy_config_kwargs(self.model.cfg):
            raise ConfigError(
                f"--model.init_from={path} holds a model with config {toy_config_kwargs(trained.cfg)}, but this module "
                f"was configured with {toy_config_kwargs(self.model.cfg)}; "
                "use the config the checkpoint was trained with."
            )
        self.model.load_state_dict(trained.state_dict())

    def forward(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos vocab"]:
        # TransformerLens moves inputs to `cfg.device` when its type differs from theirs; Lightning moves
        # the module without updating cfg, so keep cfg in step with where the batch (and module) is.
        self.model.cfg.device = tokens.device.type
        return self.model(tokens)

    def _step(self, batch: TokenBatch, stage: str) -> Tensor:
        tokens, labels = batch["tokens"], batch["labels"]
        if stage == "train" and self.hparams.head_dropout > 0:
            with self.model.hooks(fwd_hooks=head_dropout_hooks(self.model, self._keep_mask(len(tokens)))):
                logits = self(tokens)
        else:
            logits = self(tokens)
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)
        correct, count = labelled_accuracy(logits, labels)
        batch_size = tokens.shape[0]
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=batch_size)
        self.log(f"{stage}/acc", correct.sum() / count.sum(), prog_bar=stage != "train", batch_size=batch_size)
        if stage != "train" and self.group_names and "group" in batch:
            metric = self.val_group_accuracy if stage == "val" else self.test_group_accuracy
            metric.update(correct, count, batch["group"])
        return loss

    def _keep_mask(self, batch: int) -> Float[Tensor, "n_layers batch n_heads"]:
        # Seeded by the step, not by a running generator: a resumed run draws the same masks.
        seed = (self.hparams.model_seed + 1) * 1_000_003 + self.global_step
        cfg = self.model.cfg
        mask = head_keep_mask(
            torch.Generator().manual_seed(seed), batch, cfg.n_layers, cfg.n_heads, self.hparams.head_dropout
        )
        layers = self.hparams.get("head_dropout_layers")
        if layers is not None:  # the other layers keep every head (their masks are still drawn: the same stream)
            mask[[layer for layer in range(cfg.n_layers) if layer not in layers]] = 1.0
        return mask.to(self.device)

    def training_step(self, batch: TokenBatch, batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: TokenBatch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: TokenBatch, batch_idx: int) -> None:
        self._step(batch, "test")

    def _log_groups(self, metric: GroupAccuracy, stage: str) -> None:
        if not self.group_names:
            return
        accuracy = metric.compute().reshape(-1)  # torchmetrics squeezes a one-group result to a scalar
        for name, value in zip(self.group_names, accuracy):
            self.log(f"{stage}/group_acc/{name}", value)
        seen = accuracy[~accuracy.isnan()]
        if len(seen):
            self.log(f"{stage}/min_group_acc", seen.min(), prog_bar=True)
        metric.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_groups(self.val_group_accuracy, "val")

    def on_test_epoch_end(self) -> None:
        self._log_groups(self.test_group_accuracy, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer | dict[str, Any]:
        optimiser = torch.optim.AdamW(
            self.model.parameters(),
            lr=self.hparams.lr,
            weight_decay=self.hparams.weight_decay,
            betas=tuple(self.hparams.betas),
        )
        warmup = self.hparams.get("lr_warmup_steps", 0)
        if not warmup:
            return optimiser
        ramp = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: min(1.0, (step + 1) / warmup))
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": ramp, "interval": "step"}}

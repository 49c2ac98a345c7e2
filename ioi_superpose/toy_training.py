"""Train an attention-only toy model on next-token loss at labelled positions, and export it.

`ToyModelTraining` is task-agnostic: it reads batches `{"tokens", "labels", "group"?}` where `labels`
holds the target at labelled positions and `IGNORE_INDEX` elsewhere, and `group` (optional) names the
feature/group of each row, for per-group accuracy. `ExportToyModel` writes the trained model as a toy
checkpoint plus a metrics JSON when fit ends, reading what it needs from the datamodule (`ToyTaskData`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import lightning as L
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from torchmetrics import Metric

from ioi_superpose.data.skip_trigrams import IGNORE_INDEX, FeaturePrompts, TokenBatch
from ioi_superpose.ground_truth import find_support
from ioi_superpose.models import HookedTransformer
from ioi_superpose.models.toy import (
    PositionalEmbedding,
    attn_only_config,
    build_toy_model,
    load_toy_checkpoint,
    save_toy_checkpoint,
    toy_config_kwargs,
)


class GroupAccuracy(Metric):
    """Accuracy at labelled positions, per group (sums of correct/count, so it reduces across ranks)."""

    full_state_update = False

    def __init__(self, n_groups: int) -> None:
        super().__init__()
        self.add_state("correct", default=torch.zeros(n_groups, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros(n_groups, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, row_correct: Int[Tensor, " rows"], row_count: Int[Tensor, " rows"], group: Int[Tensor, " rows"]) -> None:
        self.correct.index_add_(0, group, row_correct)
        self.count.index_add_(0, group, row_count)

    def compute(self) -> Float[Tensor, " groups"]:
        # A group never seen reads NaN rather than a fake 0 or 1.
        return self.correct.float() / self.count.float()


def labelled_accuracy(
    logits: Float[Tensor, "batch pos vocab"], labels: Int[Tensor, "batch pos"]
) -> tuple[Int[Tensor, " batch"], Int[Tensor, " batch"]]:
    """(correct predictions, labelled positions) per row."""
    mask = labels != IGNORE_INDEX
    correct = (logits.argmax(-1) == labels) & mask
    return correct.sum(-1), mask.sum(-1)


class ToyModelTraining(L.LightningModule):
    """An attention-only TransformerLens model trained with cross-entropy at the labelled positions."""

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
        """
        super().__init__()
        self.save_hyperparameters()
        self.model: HookedTransformer = build_toy_model(
            attn_only_config(n_layers, n_heads, d_model, d_head, d_vocab, n_ctx, layer_norm, positional_embedding),
            seed=model_seed,
        )
        if init_from is not None:
            self._load_weights(init_from)
        self.group_names = list(group_names) if group_names else []
        self.val_group_accuracy = GroupAccuracy(max(len(self.group_names), 1))
        self.test_group_accuracy = GroupAccuracy(max(len(self.group_names), 1))

    def _load_weights(self, path: str) -> None:
        trained, _ = load_toy_checkpoint(path)
        if toy_config_kwargs(trained.cfg) != toy_config_kwargs(self.model.cfg):
            raise ValueError(
                f"init_from={path} holds a model with config {toy_config_kwargs(trained.cfg)}, but this module "
                f"was configured with {toy_config_kwargs(self.model.cfg)}; use the config the checkpoint was trained with"
            )
        self.model.load_state_dict(trained.state_dict())

    def forward(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos vocab"]:
        # TransformerLens moves inputs to `cfg.device` when its type differs from theirs; Lightning moves
        # the module without updating cfg, so keep cfg in step with where the batch (and module) is.
        self.model.cfg.device = tokens.device.type
        return self.model(tokens)

    def _step(self, batch: TokenBatch, stage: str) -> Tensor:
        tokens, labels = batch["tokens"], batch["labels"]
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

    def training_step(self, batch: TokenBatch, batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: TokenBatch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: TokenBatch, batch_idx: int) -> None:
        self._step(batch, "test")

    def _log_groups(self, metric: GroupAccuracy, stage: str) -> None:
        if not self.group_names:
            return
        accuracy = metric.compute()
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

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.model.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay,
            betas=tuple(self.hparams.betas),
        )


@runtime_checkable
class ToyTaskData(Protocol):
    """What `ExportToyModel` reads from the datamodule."""

    group_names: list[str]

    def metadata(self) -> dict[str, Any]: ...

    def evaluation_batch(self, n: int, seed: int) -> TokenBatch: ...


@runtime_checkable
class GroundTruthTaskData(ToyTaskData, Protocol):
    """A task with known features: clean/corrupted prompts per feature, for the head-support search."""

    n_features: int

    def feature_prompts(self, feature: int, n: int, seed: int) -> FeaturePrompts: ...


def evaluate_groups(
    model: HookedTransformer, batch: TokenBatch, group_names: list[str]
) -> dict[str, float]:
    """Accuracy per group on one batch (the model runs on the batch's device)."""
    with torch.no_grad():
        logits = model(batch["tokens"])
    correct, count = labelled_accuracy(logits, batch["labels"])
    metric = GroupAccuracy(len(group_names))
    metric.update(correct, count, batch["group"])
    return {name: round(float(value), 5) for name, value in zip(group_names, metric.compute())}


def ground_truth_report(
    model: HookedTransformer, data: GroundTruthTaskData, n_prompts: int, seed: int, threshold: float
) -> list[dict[str, Any]]:
    """The smallest head set reaching `threshold` recovery, per feature (JSON-ready)."""
    report = []
    for index in range(data.n_features):
        prompts = data.feature_prompts(index, n_prompts, seed + index)
        result = find_support(model, prompts, threshold=threshold)
        report.append(result.to_dict())
    return report


class ExportToyModel(L.Callback):
    """When fit ends: evaluate the trained model on fresh seeded data, find each feature's head support
    (when the datamodule knows its features), and save a toy checkpoint + a metrics JSON beside it."""

    def __init__(
        self,
        path: str,
        eval_size: int = 8192,
        eval_seed: int = 10_000,
        prompts_per_feature: int = 256,
        recovery_threshold: float = 0.9,
    ) -> None:
        """
        Args:
            path: where the `.pt` checkpoint goes; the metrics go to the same path with `.json`.
            eval_size: fresh sequences drawn for the per-group accuracy.
            eval_seed: seed of those sequences and of the ground-truth prompts (disjoint from training).
            prompts_per_feature: clean/corrupted pairs per feature for the head-support search.
            recovery_threshold: recovery a head set must reach to count as a feature's support.
        """
        super().__init__()
        self.path = Path(path)
        self.eval_size = eval_size
        self.eval_seed = eval_seed
        self.prompts_per_feature = prompts_per_feature
        self.recovery_threshold = recovery_threshold
        self._fit_started = 0.0

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fit_started = time.perf_counter()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        if not isinstance(pl_module, ToyModelTraining):
            raise TypeError(f"ExportToyModel exports ToyModelTraining modules, got {type(pl_module).__name__}")
        data = trainer.datamodule
        if not isinstance(data, ToyTaskData):
            raise TypeError(
                f"ExportToyModel needs a datamodule with group_names, metadata() and evaluation_batch(); "
                f"{type(data).__name__} lacks some"
            )
        fit_seconds = time.perf_counter() - self._fit_started
        # Evaluate a CPU copy: the numbers then describe exactly the weights that are written.
        model = build_toy_model(attn_only_config(**toy_config_kwargs(pl_module.model.cfg)))
        model.load_state_dict({k: v.detach().cpu() for k, v in pl_module.model.state_dict().items()})
        model.eval()
        metrics: dict[str, Any] = {
            "group_accuracy": evaluate_groups(model, data.evaluation_batch(self.eval_size, self.eval_seed), data.group_names),
            "fit_seconds": round(fit_seconds, 1),
            "global_step": trainer.global_step,
            "eval_size": self.eval_size,
            "eval_seed": self.eval_seed,
        }
        if isinstance(data, GroundTruthTaskData):
            metrics["ground_truth"] = ground_truth_report(
                model, data, self.prompts_per_feature, self.eval_seed, self.recovery_threshold
            )
        metadata = {
            **data.metadata(),
            "training": {k: v for k, v in pl_module.hparams.items() if k != "group_names"},
            "metrics": metrics,
        }
        save_toy_checkpoint(model, self.path, metadata)
        json_path = self.path.with_suffix(".json")
        json_path.write_text(json.dumps(metadata, indent=2) + "\n")
        print(f"Saved toy model to {self.path} and its metrics to {json_path}")

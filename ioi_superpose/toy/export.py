"""Export a trained toy model when fit ends: a toy checkpoint (`models/toy.py` format) plus a metrics
JSON beside it.

- `ExportToyModel`: any toy task (`ToyTaskData`): per-group accuracy on fresh seeded data and, for
  tasks with known features (`GroundTruthTaskData`), each feature's head support (`analyses/exhaustive.py`).
- `ExportToyIOIModel`: the same plus IOI metrics per name split and template family (`ToyIOIDataModule`).

Both JSON files are written atomically by `files.write_json`, which refuses NaN: numbers that can be
undefined (the accuracy of a group never drawn) are written as null.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import lightning as L
import torch

from ioi_superpose.analyses.exhaustive import find_support
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.files import write_json
from ioi_superpose.models import HookedTransformer
from ioi_superpose.models.toy import (
    build_toy_model,
    load_toy_checkpoint,
    save_toy_checkpoint,
    toy_config,
    toy_config_kwargs,
)
from ioi_superpose.toy.batches import TokenBatch
from ioi_superpose.toy.ioi_metrics import ioi_metrics
from ioi_superpose.toy.ioi_task import ToyIOIDataModule
from ioi_superpose.toy.name_embeddings import FrozenNameEmbeddings
from ioi_superpose.toy.training import GroupAccuracy, ToyModelTraining, labelled_accuracy


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

    def feature_prompts(self, feature: int, n: int, seed: int) -> ContrastBatch: ...


def evaluate_groups(model: HookedTransformer, batch: TokenBatch, group_names: list[str]) -> dict[str, float | None]:
    """Accuracy per group on one batch (the model runs on the batch's device).

    A group with no row in the batch has no accuracy: it reads None (not NaN, which JSON cannot hold).
    """
    with torch.no_grad():
        logits = model(batch["tokens"])
    correct, count = labelled_accuracy(logits, batch["labels"])
    metric = GroupAccuracy(len(group_names))
    metric.update(correct, count, batch["group"])
    return {
        name: None if math.isnan(value) else round(value, 5)
        for name, value in zip(group_names, metric.compute().reshape(-1).tolist())  # one group: squeezed
    }


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
        model = build_toy_model(toy_config(**toy_config_kwargs(pl_module.model.cfg)))
        model.load_state_dict({k: v.detach().cpu() for k, v in pl_module.model.state_dict().items()})
        model.eval()
        metrics: dict[str, Any] = {
            "group_accuracy": evaluate_groups(
                model, data.evaluation_batch(self.eval_size, self.eval_seed), data.group_names
            ),
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
        json_path = write_json(self.path.with_suffix(".json"), metadata)
        print(f"Saved toy model to {self.path} and its metrics to {json_path}")


class ExportToyIOIModel(ExportToyModel):
    """`ExportToyModel` plus IOI metrics of the written weights, per name split and template family.

    The checkpoint's metadata (and the JSON beside it) gains `metrics.ioi[<group>]` =
    {io_over_s_accuracy, mean_logit_diff, top1_accuracy, n_prompts} on fresh prompts
    (`ioi_prompts_per_group` each, seeded from `eval_seed`), a `metrics.headline` with the held-out-name
    figures on the IOI templates, and the frozen-name settings.
    """

    def __init__(
        self,
        path: str,
        eval_size: int = 6144,
        eval_seed: int = 10_000,
        ioi_prompts_per_group: int = 2048,
    ) -> None:
        """
        Args:
            path: where the `.pt` checkpoint goes; the metrics go to the same path with `.json`.
            eval_size: prompts for the per-group top-1 accuracy of `ExportToyModel`.
            eval_seed: seed of every evaluation prompt (training uses other streams).
            ioi_prompts_per_group: fresh prompts per (name split, family) group for the IOI metrics.
        """
        super().__init__(path, eval_size=eval_size, eval_seed=eval_seed)
        self.ioi_prompts_per_group = ioi_prompts_per_group

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_fit_end(trainer, pl_module)
        if not trainer.is_global_zero:
            return
        data = trainer.datamodule
        if not isinstance(data, ToyIOIDataModule):
            raise TypeError(f"ExportToyIOIModel needs a ToyIOIDataModule, got {type(data).__name__}")
        model, metadata = load_toy_checkpoint(self.path)  # the weights as written
        ioi = {
            f"{split}_{family}": vars(
                ioi_metrics(
                    model, data.prompts(split, family, self.ioi_prompts_per_group, self.eval_seed + 7 * index + 3)
                )
            )
            for index, (split, family) in enumerate(data.groups())
        }
        held_out, seen = ioi["held_out_names_ioi"], ioi["seen_names_ioi"]
        metadata["metrics"]["ioi"] = ioi
        metadata["metrics"]["headline"] = {
            "held_out_names_io_over_s_accuracy": held_out["io_over_s_accuracy"],
            "held_out_names_mean_logit_diff": held_out["mean_logit_diff"],
            "seen_names_io_over_s_accuracy": seen["io_over_s_accuracy"],
            "seen_names_mean_logit_diff": seen["mean_logit_diff"],
            "fit_seconds": metadata["metrics"]["fit_seconds"],
        }
        frozen = [callback for callback in trainer.callbacks if isinstance(callback, FrozenNameEmbeddings)]
        metadata["frozen_name_embeddings"] = frozen[0].describe() if frozen else None
        save_toy_checkpoint(model, self.path, metadata)
        write_json(self.path.with_suffix(".json"), metadata)
        print(f"Toy IOI: {metadata['metrics']['headline']}")

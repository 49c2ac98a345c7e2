"""Toy models and tasks: small attention-only models whose head circuits are known or checkable.

One job per module:

- `batches`: the training batch format (`TokenBatch`); prompts for patching are `data.batch.ContrastBatch`es.
- `skip_trigrams`: the attention-head superposition tasks (`SkipTrigramTask`, `SkipTrigramDataModule`).
- `induction`: repeated random sequences for a 2-layer induction model (`ToyInductionDataModule`).
- `ioi_vocabulary`: the toy-IOI word vocabulary (`toy_ioi_tokenizer`).
- `ioi_task`: toy IOI prompts labelled with the IO at END (`ToyIOIDataModule`).
- `ioi_metrics`: IO-over-S accuracy, logit difference, top-1 accuracy of a model on IOI prompts.
- `name_embeddings`: the frozen random name vectors toy IOI trains with (`FrozenNameEmbeddings`).
- `training`: the LightningModule that trains a toy model (`ToyModelTraining`, `GroupAccuracy`).
- `export`: the callbacks that write a trained toy model and its metrics (`ExportToyModel`, `ExportToyIOIModel`).
- `task_mixture`: a corpus mixing the built-in tasks (`ioi_superpose.tasks`) with filler text, for GPT-2-shaped
  models with MLPs (`TaskMixtureDataModule`, `TaskCurve`, `ExportTaskMixtureModel`).

The core package never imports this one; `cli/train_toy.py`, `groundtruth/`, the tests and the experiments do.
Planted models and support scoring are `groundtruth/`'s, exhaustive subset search `analyses/`'. Loading a
toy checkpoint file is `models/`' job (`models/toy.py`). The names below load on first use (PEP 562): importing
one toy module does not load the others.
"""


from __future__ import annotations

import importlib
from typing import Any

_MODULES: dict[str, str] = {
    "ExportTaskMixtureModel": "task_mixture",
    "ExportToyIOIModel": "export",
    "ExportToyModel": "export",
    "FrozenNameEmbeddings": "name_embeddings",
    "GroupAccuracy": "training",
    "IGNORE_INDEX": "batches",
    "SkipTrigramDataModule": "skip_trigrams",
    "ToyInductionDataModule": "induction",
    "SkipTrigramTask": "skip_trigrams",
    "TaskCurve": "task_mixture",
    "TaskMixtureDataModule": "task_mixture",
    "TokenBatch": "batches",
    "ToyIOIDataModule": "ioi_task",
    "ToyModelTraining": "training",
    "evaluate_groups": "export",
    "feature_prompts": "skip_trigrams",
    "io_labels": "ioi_task",
    "mirror_template": "ioi_task",
    "name_vectors": "name_embeddings",
    "sample_batch": "skip_trigrams",
    "toy_ioi_tokenizer": "ioi_vocabulary",
    "toy_ioi_vocabulary": "ioi_vocabulary",
    "induction_tokenizer": "induction",
}
__all__ = [
    "ExportTaskMixtureModel",
    "ExportToyIOIModel",
    "ExportToyModel",
    "FrozenNameEmbeddings",
    "GroupAccuracy",
    "IGNORE_INDEX",
    "IOIMetrics",
    "SkipTrigramDataModule",
    "ToyInductionDataModule",
    "SkipTrigramTask",
    "TaskCurve",
    "TaskMixtureDataModule",
    "TokenBatch",
    "ToyIOIDataModule",
    "ToyModelTraining",
    "evaluate_groups",
    "feature_prompts",
    "io_labels",
    "ioi_metrics",
    "mirror_template",
    "name_vectors",
    "sample_batch",
    "toy_ioi_tokenizer",
    "toy_ioi_vocabulary",
    "induction_tokenizer",
]

# Eager: the function `ioi_metrics` shares its module's name, and a lazy attribute would be shadowed by the
# submodule once anything imported `toy.ioi_metrics`.
from ioi_superpose.toy.ioi_metrics import IOIMetrics, ioi_metrics  # noqa: E402


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return getattr(importlib.import_module(f"ioi_superpose.toy.{_MODULES[name]}"), name)
    raise AttributeError(f"module 'ioi_superpose.toy' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

"""Toy models and tasks: small attention-only models whose head circuits are known or checkable.

One job per module:

- `batches`: the batch formats (`TokenBatch` for training, `FeaturePrompts` for patching).
- `skip_trigrams`: the attention-head superposition tasks (`SkipTrigramTask`, `SkipTrigramDataModule`).
- `ioi_vocabulary`: the toy-IOI word vocabulary (`toy_ioi_tokenizer`).
- `ioi_task`: toy IOI prompts labelled with the IO at END (`ToyIOIDataModule`).
- `ioi_metrics`: IO-over-S accuracy, logit difference, top-1 accuracy of a model on IOI prompts.
- `name_embeddings`: the frozen random name vectors toy IOI trains with (`FrozenNameEmbeddings`).
- `training`: the LightningModule that trains a toy model (`ToyModelTraining`, `GroupAccuracy`).
- `export`: the callbacks that write a trained toy model and its metrics (`ExportToyModel`, `ExportToyIOIModel`).
- `ground_truth`: exhaustive head-subset patching, each feature's head support (`find_support`).
- `support_scoring`: learned combination vs ground-truth support, precision / recall (`compare_supports`).

The core package never imports this one; `train_toy.py`, the tests and the experiments do. Loading a
toy checkpoint file is `models/`' job (`models/toy.py`).
"""

from ioi_superpose.toy.batches import IGNORE_INDEX, FeaturePrompts, TokenBatch
from ioi_superpose.toy.export import ExportToyIOIModel, ExportToyModel, evaluate_groups
from ioi_superpose.toy.ground_truth import SupportResult, find_support, head_subsets, patched_logit_diffs, subset_name
from ioi_superpose.toy.ioi_metrics import IOIMetrics, ioi_metrics
from ioi_superpose.toy.ioi_task import ToyIOIDataModule, io_labels, mirror_template
from ioi_superpose.toy.ioi_vocabulary import toy_ioi_tokenizer, toy_ioi_vocabulary
from ioi_superpose.toy.name_embeddings import FrozenNameEmbeddings, name_vectors
from ioi_superpose.toy.skip_trigrams import SkipTrigramDataModule, SkipTrigramTask, feature_prompts, sample_batch
from ioi_superpose.toy.support_scoring import SupportComparison, compare_supports, precision_recall
from ioi_superpose.toy.training import GroupAccuracy, ToyModelTraining

__all__ = [
    "IGNORE_INDEX",
    "ExportToyIOIModel",
    "ExportToyModel",
    "FeaturePrompts",
    "FrozenNameEmbeddings",
    "GroupAccuracy",
    "IOIMetrics",
    "SkipTrigramDataModule",
    "SkipTrigramTask",
    "SupportComparison",
    "SupportResult",
    "TokenBatch",
    "ToyIOIDataModule",
    "ToyModelTraining",
    "compare_supports",
    "evaluate_groups",
    "feature_prompts",
    "find_support",
    "head_subsets",
    "io_labels",
    "ioi_metrics",
    "mirror_template",
    "name_vectors",
    "patched_logit_diffs",
    "precision_recall",
    "sample_batch",
    "subset_name",
    "toy_ioi_tokenizer",
    "toy_ioi_vocabulary",
]

"""A synthetic corpus that mixes the built-in tasks with filler text, for GPT-2-shaped models trained here.

Every training row is one document: BOS, sometimes a filler sentence (random words and a full stop), then
one task prompt drawn by that task's own generator (`ioi_superpose.tasks`: IOI templates with many names,
repeated random tokens, greater-than years, subject–verb agreement), then a correct answer (for an answer
set, one of its tokens drawn uniformly); or, for a share of the rows, a filler document alone. The model
learns next-token prediction at every position (labels are the next token; padding is ignored), as a
language model does; the task answers are one position among many. The evaluation prompts are the tasks'
own (`TaskMixtureDataModule.task_prompts`), so each template has one home.

The vocabulary is word-level (`models.WordTokenizer`): every word of every task (`Task.words()`), stored in
the checkpoint. IOI trains on its training templates and names only (the task's `train` set, with the name split
fixed by the data seed and stored in the checkpoint), so its held-out templates and names stay off-distribution
for the trained model.

`TaskCurve` (callback) measures each task's contrast metric on fixed validation prompts at every validation,
and `ExportTaskMixtureModel` writes the checkpoint with each task's accuracy and metric on fresh prompts of
every set (`task_report`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from ioi_superpose.data.answer_metrics import contrast_metric
from ioi_superpose.data.datamodule import split_names
from ioi_superpose.data.ioi import default_names
from ioi_superpose.engine.runs import end_logits
from ioi_superpose.errors import ConfigError
from ioi_superpose.models import HookedTransformer
from ioi_superpose.models.word_tokenizer import BOS, PAD, WordTokenizer
from ioi_superpose.tasks import TASKS, Task, TaskPrompts, make_task
from ioi_superpose.toy.batches import IGNORE_INDEX, TokenBatch
from ioi_superpose.toy.export import ExportToyModel

FILLER = "filler"
IOI_HELD_OUT_NAMES = 0.2
"""Share of the IOI names never trained on (the IOI task's default, as the main job's)."""


def mixture_vocabulary(task_names: Sequence[str]) -> list[str]:
    """Specials, then every word of each task in order (`Task.words()`), each once; "." ends filler sentences."""
    words = [BOS, PAD]
    for name in task_names:
        words += make_task(name).words()
    return list(dict.fromkeys([*words, "."]))


class _SeededBatches(Dataset[TokenBatch]):
    """Training batches `start` … `n_batches − 1`, batch i drawn from its own seed. A resumed run starts at the
    step it stopped at, so it sees the batches the uninterrupted run would have."""

    def __init__(self, data: "TaskMixtureDataModule", n_batches: int, seed: int, start: int = 0) -> None:
        self.data, self.n_batches, self.seed, self.start = data, n_batches, seed, start

    def __len__(self) -> int:
        return self.n_batches - self.start

    def __getitem__(self, index: int) -> TokenBatch:
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self.data.token_batch(self.data.hparams.batch_size, seed=self.seed * 1_000_003 + self.start + index)


class TaskMixtureDataModule(L.LightningDataModule):
    """Documents of the tasks' prompts and filler text, next-token labels at every position."""

    def __init__(
        self,
        tasks: tuple[str, ...] = ("ioi", "induction", "greater_than", "agreement"),
        task_weights: tuple[float, ...] = (0.4, 0.2, 0.2, 0.2),
        task_options: dict[str, dict[str, Any]] | None = None,
        filler: float = 0.1,
        filler_prefix: float = 0.25,
        filler_words: tuple[int, int] = (3, 8),
        batch_size: int = 64,
        train_batches: int = 10_000,
        eval_prompts_per_task: int = 128,
        n_ctx: int = 48,
        seed: int = 0,
    ) -> None:
        """
        Args:
            tasks: registered task names (`ioi_superpose.tasks.TASKS`, not `file`).
            task_weights: relative share of each task among the task rows.
            task_options: options of a task's constructor, by task name (e.g. `{"induction": {"repeat": 9}}`), used
                for training and evaluation alike.
            filler: share of rows that are a filler document (random words and full stops) alone.
            filler_prefix: probability that a task row starts with a filler sentence (the prompt then does not
                start right after BOS).
            filler_words: (fewest, most) words of a filler sentence.
            batch_size: rows per training step.
            train_batches: steps per epoch (each batch drawn fresh from its own seed).
            eval_prompts_per_task: validation rows per task (and of filler).
            n_ctx: the model's context; a row longer than this is a bug in the settings (refused).
            seed: seed of every row (training, validation and test draw from disjoint streams).
        """
        super().__init__()
        self.save_hyperparameters()
        unknown = [name for name in tasks if name not in TASKS or name == "file"]
        if unknown or not tasks:
            raise ConfigError(f"--data.init_args.tasks: {unknown or 'none'}; choose from the generated tasks "
                              f"{[name for name in TASKS if name != 'file']}.")  # fmt: skip
        if len(task_weights) != len(tasks) or any(w <= 0 for w in task_weights):
            raise ConfigError("--data.init_args.task_weights must give one positive weight per task.")
        if not 0.0 <= filler < 1.0 or not 0.0 <= filler_prefix <= 1.0:
            raise ConfigError("--data.init_args.filler must be in [0, 1) and filler_prefix in [0, 1].")
        if not 1 <= filler_words[0] <= filler_words[1]:
            raise ConfigError(f"--data.init_args.filler_words must be (fewest, most) >= 1, got {filler_words}.")
        for option, value in dict(batch_size=batch_size, train_batches=train_batches,
                                  eval_prompts_per_task=eval_prompts_per_task).items():  # fmt: skip
            if value < 1:
                raise ConfigError(f"--data.init_args.{option} must be >= 1, got {value}.")
        self.tokenizer = WordTokenizer(mixture_vocabulary(tasks))
        # Each batch draws its prompts from a seed of its own; IOI's train / held-out name split must not follow it.
        self.held_out_names, self.train_names = split_names(default_names(self.tokenizer), IOI_HELD_OUT_NAMES, seed)
        options = {name: dict((task_options or {}).get(name, {})) for name in tasks}
        unknown = sorted(set(task_options or {}) - set(tasks))
        if unknown:
            raise ConfigError(f"--data.init_args.task_options names tasks not in --data.init_args.tasks: {unknown}.")
        if "ioi" in options:
            options["ioi"]["name_split"] = (self.held_out_names, self.train_names)
        self.tasks: dict[str, Task] = {name: make_task(name, **options[name]) for name in tasks}
        self.filler_pool = [i for i, word in enumerate(self.tokenizer.vocab) if word not in (BOS, PAD, ".")]
        self.full_stop = self.tokenizer.encode(".")[0]

    # --- what train_toy links into the model and what the export reads ------------------------------
    @property
    def d_vocab(self) -> int:
        return len(self.tokenizer)

    @property
    def n_ctx(self) -> int:
        return self.hparams.n_ctx

    @property
    def group_names(self) -> list[str]:
        return [*self.tasks, FILLER]

    def metadata(self) -> dict[str, Any]:
        """What the checkpoint records: the corpus settings and the tokenizer (to rebuild it)."""
        return {
            "task": "task_mixture",
            "task_parameters": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.hparams.items()},
            "tokenizer": self.tokenizer.to_dict(),
            "group_names": self.group_names,
            "held_out_names": list(self.held_out_names),
            "train_names": list(self.train_names),
        }

    # --- prompts and rows -----------------------------------------------------------------------------
    def task_prompts(self, name: str, set_name: str, n: int, seed: int) -> TaskPrompts:
        """`n` contrast prompts of one task's set, from the task's own generator (what evaluation reads)."""
        return self.tasks[name].prompts(self.tokenizer, set_name, n, seed)

    def token_batch(self, n: int, seed: int, balanced: bool = False) -> TokenBatch:
        """`n` documents: tasks drawn by `task_weights` (`balanced`: equal numbers of each task and filler)."""
        rng = random.Random(seed)
        hp = self.hparams
        kinds = list(self.group_names)
        if balanced:
            chosen = [kinds[i % len(kinds)] for i in range(n)]
        else:
            weights = [w * (1 - hp.filler) / sum(hp.task_weights) for w in hp.task_weights] + [hp.filler]
            chosen = rng.choices(kinds, weights=weights, k=n)
        documents: list[list[int]] = []
        groups: list[int] = []
        for index, kind in enumerate(kinds):
            count = chosen.count(kind)
            if count == 0:
                continue
            if kind == FILLER:
                documents += [[self.tokenizer.bos_token_id, *self._filler(rng, sentences=3)] for _ in range(count)]
            else:
                prompts = self.task_prompts(kind, "train", count, seed=rng.randrange(2**31))
                documents += [self._task_document(prompts, row, rng) for row in range(count)]
            groups += [index] * count
        return self._token_batch(documents, groups)

    def _filler(self, rng: random.Random, sentences: int = 1) -> list[int]:
        """`sentences` sentences of random words (`filler_words` of them), each ending in a full stop."""
        low, high = self.hparams.filler_words
        tokens: list[int] = []
        for _ in range(sentences):
            tokens += rng.choices(self.filler_pool, k=rng.randint(low, high)) + [self.full_stop]
        return tokens

    def _task_document(self, prompts: TaskPrompts, row: int, rng: random.Random) -> list[int]:
        batch = prompts.batch
        end = int(batch.end_pos[row])
        correct = [t for t, w in zip(batch.answer_tokens[row].tolist(), batch.weights[row].tolist()) if w > 0]
        tokens = batch.clean_tokens[row, : end + 1].tolist() + [rng.choice(correct)]
        if rng.random() < self.hparams.filler_prefix:
            tokens = tokens[:1] + self._filler(rng) + tokens[1:]
        return tokens

    def _token_batch(self, documents: list[list[int]], groups: list[int]) -> TokenBatch:
        length = max(len(d) for d in documents)
        if length > self.hparams.n_ctx:
            raise ConfigError(f"A document of {length} tokens exceeds --data.init_args.n_ctx {self.hparams.n_ctx}; "
                              "raise n_ctx or shorten filler_words.")  # fmt: skip
        pad = self.tokenizer.pad_token_id
        tokens = torch.tensor([d + [pad] * (length - len(d)) for d in documents])
        labels = torch.full_like(tokens, IGNORE_INDEX)
        for row, document in enumerate(documents):
            labels[row, : len(document) - 1] = torch.tensor(document[1:])
        return TokenBatch(tokens=tokens, labels=labels, group=torch.tensor(groups))

    def evaluation_batch(self, n: int, seed: int) -> TokenBatch:
        """About `n` documents, the same number of each task and of filler (per-group next-token accuracy)."""
        return self.token_batch(max(n, len(self.group_names)), seed, balanced=True)

    # --- Lightning ------------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        n_eval = hp.eval_prompts_per_task * len(self.group_names)
        self.val_batch = self.evaluation_batch(n_eval, seed=hp.seed * 16 + 1_000_000_001)
        self.test_batch = self.evaluation_batch(n_eval, seed=hp.seed * 16 + 2_000_000_002)

    def train_dataloader(self) -> DataLoader:
        # One batch per optimiser step: a run resumed from a checkpoint (whose global step Lightning restores before
        # it asks for this loader) continues the stream where it stopped, not from its first batch.
        hp, trainer = self.hparams, getattr(self, "trainer", None)
        start = trainer.global_step % hp.train_batches if trainer is not None else 0
        return DataLoader(_SeededBatches(self, hp.train_batches, hp.seed * 16, start), batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return DataLoader([self.val_batch], batch_size=None)

    def test_dataloader(self) -> DataLoader:
        return DataLoader([self.test_batch], batch_size=None)


# --------------------------------------------------------------------------------------------------
# What a model does on a task's contrast prompts.


@torch.no_grad()
def task_scores(model: HookedTransformer, prompts: TaskPrompts, metric: str) -> dict[str, float]:
    """On clean prompts: accuracy (the correct set beats the incorrect one under the task's metric), the mean
    metric on clean and on corrupted prompts, and top-1 accuracy (the highest logit over the whole vocabulary
    is a correct answer)."""
    batch = prompts.batch.trimmed().to(model.cfg.device)
    values = {}
    for which, tokens in (("clean", batch.clean_tokens), ("corrupted", batch.corrupted_tokens)):
        logits = end_logits(model, tokens, batch.end_pos)
        values[which] = contrast_metric(metric, logits, batch.answer_tokens, batch.weights)  # type: ignore[arg-type]
        if which == "clean":
            top = logits.argmax(-1, keepdim=True)
            top1 = ((batch.answer_tokens == top) & (batch.weights > 0)).any(-1).float().mean()
    return {
        "accuracy": round(float((values["clean"] > 0).float().mean()), 5),
        "top1_accuracy": round(float(top1), 5),
        f"clean_{metric}": round(float(values["clean"].mean()), 4),
        f"corrupted_{metric}": round(float(values["corrupted"].mean()), 4),
        "n_prompts": len(batch),
    }


def task_report(model: HookedTransformer, data: TaskMixtureDataModule, n: int, seed: int) -> dict[str, Any]:
    """`task_scores` of every task on `n` fresh prompts of each of its sets (in distribution and off)."""
    report = {}
    for name, task in data.tasks.items():
        report[name] = {"metric": task.metric}
        for set_name in ("in_distribution", *task.off_distribution):
            prompts = data.task_prompts(name, set_name, n, seed)
            report[name][set_name] = task_scores(model, prompts, task.metric)
    return report


class TaskCurve(L.Callback):
    """At every validation: each task's accuracy and mean metric on fixed validation prompts (logged as
    `val/task/<name>/accuracy` and `/metric`), kept as a history the export writes beside the checkpoint."""

    def __init__(self, n_prompts: int = 128, seed: int = 5_000) -> None:
        super().__init__()
        self.n_prompts, self.seed = n_prompts, seed
        self.history: list[dict[str, Any]] = []

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        data = trainer.datamodule
        if not isinstance(data, TaskMixtureDataModule) or trainer.sanity_checking:
            return
        model = pl_module.model
        was_training = model.training
        model.eval()
        point: dict[str, Any] = {"step": trainer.global_step}
        for key in ("train/loss", "val/loss"):
            if key in trainer.callback_metrics:
                point[key] = round(float(trainer.callback_metrics[key]), 5)
        for name, task in data.tasks.items():
            prompts = data.task_prompts(name, "val", self.n_prompts, self.seed)
            scores = task_scores(model, prompts, task.metric)
            point[name] = {"accuracy": scores["accuracy"], "metric": scores[f"clean_{task.metric}"]}
            pl_module.log(f"val/task/{name}/accuracy", scores["accuracy"])
            pl_module.log(f"val/task/{name}/metric", scores[f"clean_{task.metric}"])
        model.train(was_training)
        self.history.append(point)

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict["history"])


class ExportTaskMixtureModel(ExportToyModel):
    """`ExportToyModel` plus each task's scores (`task_report`) on fresh prompts and the `TaskCurve` history."""

    def __init__(self, path: str, eval_size: int = 2048, eval_seed: int = 10_000, prompts_per_set: int = 512) -> None:
        """
        Args:
            path: where the `.pt` checkpoint goes; the metrics go to the same path with `.json`.
            eval_size: documents for the per-group next-token accuracy of `ExportToyModel`.
            eval_seed: seed of every evaluation prompt (training uses other streams).
            prompts_per_set: fresh prompts per task and set for the task scores.
        """
        super().__init__(path, eval_size=eval_size, eval_seed=eval_seed)
        self.prompts_per_set = prompts_per_set

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from ioi_superpose.files import write_json
        from ioi_superpose.models.toy import load_toy_checkpoint, save_toy_checkpoint

        super().on_fit_end(trainer, pl_module)
        if not trainer.is_global_zero:
            return
        data = trainer.datamodule
        if not isinstance(data, TaskMixtureDataModule):
            raise TypeError(f"ExportTaskMixtureModel needs a TaskMixtureDataModule, got {type(data).__name__}")
        model, metadata = load_toy_checkpoint(self.path)  # the weights as written
        metadata["metrics"]["tasks"] = task_report(model, data, self.prompts_per_set, self.eval_seed)
        curves = [callback for callback in trainer.callbacks if isinstance(callback, TaskCurve)]
        metadata["metrics"]["curve"] = curves[0].history if curves else None
        save_toy_checkpoint(model, self.path, metadata)
        write_json(self.path.with_suffix(".json"), metadata)
        tasks = metadata["metrics"]["tasks"]
        headline = {name: scores["in_distribution"]["accuracy"] for name, scores in tasks.items()}
        print(f"Task mixture, in-distribution accuracy: {headline}")

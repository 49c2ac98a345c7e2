"""The IOI LightningDataModule: train/val/test splits and named off-distribution test sets."""

from __future__ import annotations

import random
import warnings
import zlib
from collections.abc import Iterator, Sequence
from typing import Any, Literal, get_args

import lightning as L
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from ioi_superpose.data.batch import PromptDataset, collate
from ioi_superpose.data.corpus import read_corpus
from ioi_superpose.data.ioi import Corruption, IOIBatch, TextEncoder, default_names, generate_ioi, ioi_features
from ioi_superpose.data.ioi_sets import SetSpec, ioi_set_specs
from ioi_superpose.data.name_split import checkpoint_name_split
from ioi_superpose.data.splits import IN_DISTRIBUTION, TRAIN_SET, VAL_SET
from ioi_superpose.data.templates import BABA_TEMPLATES, PLACES
from ioi_superpose.errors import ConfigError
from ioi_superpose.models import load_tokenizer
from ioi_superpose.seeds import check_seed

OffDistributionSet = Literal[
    "held_out_templates",
    "held_out_names",
    "duplicated_io",
    "long_templates",
    "baba_only",
    "abba_only",
    "no_preposition",
    "objects_as_names",
]
OFF_DISTRIBUTION_SETS: tuple[OffDistributionSet, ...] = get_args(OffDistributionSet)


def split_names(names: Sequence[str], held_out_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(held-out names, training names): a seeded shuffle, the first `round(n · fraction)` held out.

    The one rule for every consumer: the toy-IOI model (`ioi_superpose.toy.ioi_task`) is trained with it, so
    with the same names, fraction and seed its never-seen names are exactly the main job's
    `held_out_names` test set.
    """
    shuffled = list(names)
    random.Random(seed).shuffle(shuffled)
    n_held_out = round(len(shuffled) * held_out_fraction)
    return shuffled[:n_held_out], shuffled[n_held_out:]


class ResumableSampler(DistributedSampler):
    """`DistributedSampler` (order = f(seed, epoch), rank r takes perm[r::N]) that can start part-way
    through its epoch: `start` indices of this rank's share are skipped, once, by the next iteration."""

    def __init__(self, dataset: PromptDataset, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.start = 0

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        start, self.start = self.start, 0
        return iter(indices[start:])

    def __len__(self) -> int:
        return self.num_samples  # the full epoch: Lightning counts batches per epoch from it


class ResumableLoader(DataLoader):
    """The training loader, stateful so Lightning resumes a run mid-epoch exactly where it stopped.

    Lightning saves `state_dict()` in every checkpoint (the fit loop's `combined_loader` entry) and hands
    it back through `load_state_dict` before iterating a resumed epoch: the batches this epoch had
    already yielded are skipped (by index, without collating them), so the resumed run sees the batches
    the uninterrupted one would have. Written here rather than using torchdata's `StatefulDataLoader`:
    that adds a dependency, re-implements torch's DataLoader internals (pinned to other torch versions
    than ours), and our in-memory prompts need only a batch count.
    """

    def __init__(self, dataset: PromptDataset, sampler: ResumableSampler, **kwargs: Any) -> None:
        super().__init__(dataset, sampler=sampler, **kwargs)
        self.batches_yielded = 0
        """Batches the current epoch has handed out (the position a checkpoint records)."""
        self._resume_from: dict[str, int] | None = None

    def state_dict(self) -> dict[str, int]:
        return {
            "epoch": self.sampler.epoch,
            "batches_yielded": self.batches_yielded,
            "batch_size": self.batch_size,
            "num_replicas": self.sampler.num_replicas,
            "num_samples": self.sampler.num_samples,
        }

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        here = {"batch_size": self.batch_size, "num_replicas": self.sampler.num_replicas,
                "num_samples": self.sampler.num_samples}  # fmt: skip
        saved = {key: state_dict.get(key) for key in here}
        if saved != here:
            raise ConfigError(
                f"--ckpt_path: the checkpoint stopped mid-epoch with batch size {saved['batch_size']}, "
                f"{saved['num_replicas']} process(es) and {saved['num_samples']} training prompts per process; "
                f"this run has {here['batch_size']}, {here['num_replicas']} and {here['num_samples']}. Resume with "
                "the checkpoint's --data.batch_size, --data.n_train and --trainer.devices, or start a new run."
            )
        self._resume_from = dict(state_dict)

    def __iter__(self) -> Iterator[Any]:
        return self._batches()

    def _batches(self) -> Iterator[Any]:
        # A generator: its body runs at the first `next`, after Lightning's `set_epoch` for this epoch.
        skip = 0
        if self._resume_from is not None:
            resume, self._resume_from = self._resume_from, None
            if resume["epoch"] != self.sampler.epoch:
                raise RuntimeError(  # `callbacks.resume.align_loop_state` makes Lightning's epoch the loader's
                    f"resuming epoch {self.sampler.epoch} with the loader state of epoch {resume['epoch']}: the "
                    "checkpoint's loop counters were not aligned with its step (is the ExactResume callback missing?)"
                )
            skip = resume["batches_yielded"]
        self.sampler.start = skip * self.batch_size
        self.batches_yielded = skip
        for batch in super().__iter__():
            self.batches_yielded += 1
            yield batch


def set_seed(seed: int, set_name: str) -> int:
    """The seed of one named split: a function of its name only, so a set's prompts stay the same when
    other sets are added to or removed from `--data.off_distribution`."""
    return seed + zlib.crc32(set_name.encode())


class IOIDataModule(L.LightningDataModule):
    """Seeded IOI prompts for training α, and test sets that probe how far it generalises.

    Splits: train, val and the in-distribution test set use the training templates and names, each
    drawn with its own seed. Off-distribution test sets: `held_out_templates` (BABA templates listed in
    `held_out_templates` and their ABBA mirrors, never trained on), `held_out_names` (names never
    trained on), `duplicated_io` (the IO is named twice before the subject acts), `long_templates`
    (longer prompts with more filler between the names and END), `baba_only` / `abba_only` (the training
    templates of one name order each: does α work for both?), `no_preposition` (the double-object form
    "… [B] gave [A]", no "to" before the answer) and `objects_as_names` (objects such as "ring" or "bone"
    in the name slots: is it about names, or about any repeated token?).
    """

    def __init__(
        self,
        model_name: str = "gpt2-small",
        corruption: Corruption = "name_swap",
        n_train: int = 1024,
        n_val: int = 256,
        n_test: int = 256,
        batch_size: int = 64,
        held_out_templates: tuple[int, ...] = (12, 13, 14),
        held_out_name_fraction: float = 0.2,
        off_distribution: tuple[OffDistributionSet, ...] = OFF_DISTRIBUTION_SETS,
        seed: int = 0,
        num_workers: int = 0,
        corpus: str | None = None,
    ) -> None:
        """
        Args:
            model_name: the model whose tokenizer builds the prompts (linked to --model.model_name).
            corruption: `name_swap` puts the IO in the subject's second slot (the answer flips);
                `abc` replaces all three names by others (the IOI paper's corruption).
            n_train: training prompts.
            n_val: validation prompts.
            n_test: prompts per test set.
            batch_size: prompts per step.
            held_out_templates: indices (0–14) of BABA templates kept out of training, with their ABBA
                mirrors; they form the `held_out_templates` test set.
            held_out_name_fraction: share of the names kept out of training (the `held_out_names` set).
                The names are split by `seed`, except for a toy model whose checkpoint stores its own
                train/held-out split (checkpoints/toy_ioi*.pt): that split is used whatever `seed` is, so
                `held_out_names` are names the model never saw; a different fraction is refused.
            off_distribution: which off-distribution test sets `test` evaluates.
            seed: fixes every prompt of every split.
            num_workers: DataLoader workers.
            corpus: a text file, one text a line: after fit, the positions where the learned combination's head
                outputs most raise / lower the true next token's logit (direct effect) are written to
                `corpus_examples.md` / `.json` (`ioi_superpose.analyses.corpus`; `--max_activating.k` rows each).
        """
        super().__init__()
        self.save_hyperparameters()
        if corpus is not None:
            read_corpus(corpus)  # a missing or empty file fails now, not after the fit
        for option, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test), ("batch_size", batch_size)):
            if value < 1:
                raise ConfigError(f"--data.{option} must be >= 1, got {value}.")
        bad = [i for i in held_out_templates if not 0 <= i < len(BABA_TEMPLATES)]
        if bad or len(set(held_out_templates)) == len(BABA_TEMPLATES):
            raise ConfigError(
                f"--data.held_out_templates must list indices in 0..{len(BABA_TEMPLATES) - 1} and leave at "
                f"least one template for training, got {held_out_templates}."
            )
        if not held_out_templates and "held_out_templates" in off_distribution:
            raise ConfigError(
                "--data.held_out_templates is empty, so the held_out_templates test set has no template. List "
                "at least one BABA template index (0–14), or leave held_out_templates out of --data.off_distribution."
            )
        if not 0.0 <= held_out_name_fraction < 1.0:
            raise ConfigError(f"--data.held_out_name_fraction must be in [0, 1), got {held_out_name_fraction}.")
        unknown = [name for name in off_distribution if name not in OFF_DISTRIBUTION_SETS]
        if unknown:
            raise ConfigError(
                f"Unknown --data.off_distribution sets {unknown}; choose from {list(OFF_DISTRIBUTION_SETS)}."
            )
        repeated = sorted({name for name in off_distribution if list(off_distribution).count(name) > 1})
        if repeated:  # one test set is one dataloader and one summary entry: a repeat has nowhere to go
            raise ConfigError(f"--data.off_distribution lists {repeated} more than once; give each test set once.")
        check_seed("--data.seed", seed)
        if "held_out_names" in off_distribution and held_out_name_fraction == 0.0:
            raise ConfigError("The held_out_names test set needs --data.held_out_name_fraction > 0.")
        self.splits: dict[str, IOIBatch] = {}
        self.held_out_names: list[str] = []
        """Names of the `held_out_names` test set, never in training prompts (filled by `setup`)."""
        self.train_names: list[str] = []
        self.encoder: TextEncoder | None = None
        """The tokenizer that built the prompts (filled by `setup` or `draw`)."""
        self._specs: dict[str, SetSpec] = {}

    @property
    def test_set_names(self) -> list[str]:
        """Names of the test dataloaders, in order (the system logs each under its name)."""
        return [IN_DISTRIBUTION, *self.hparams.off_distribution]

    def prepare_data(self) -> None:
        load_tokenizer(self.hparams.model_name)  # fails early, with the fix, if it cannot be had

    def setup(self, stage: str) -> None:
        if self.splits:
            return
        hp = self.hparams
        self.splits[TRAIN_SET] = self.draw(TRAIN_SET, hp.n_train)
        self.splits[VAL_SET] = self.draw(VAL_SET, hp.n_val)
        self.splits[IN_DISTRIBUTION] = self.draw(IN_DISTRIBUTION, hp.n_test)
        for name in hp.off_distribution:
            self.splits[name] = self.draw(name, hp.n_test)

    def draw(
        self, set_name: str, n: int, corruption: Corruption | None = None, seed_name: str | None = None
    ) -> IOIBatch:
        """`n` prompts of one named set's generator (`train`, `val` and `in_distribution` share theirs).

        Seeded by `seed_name` (default: the set's own name, as `setup` draws it; see `set_seed`) and corrupted
        by `corruption` (default: `--data.corruption`). Other consumers draw fresh prompts of a set under a
        name of their own (the max-activating corpus: `max_activating/<set>/<corruption>`).
        """
        specs = self._set_specs()
        generator = "in_distribution" if set_name in ("train", "val") else set_name
        if generator not in specs:
            raise ConfigError(f"Unknown prompt set {set_name!r}; choose from {['train', 'val', *specs]}.")
        template_ids, templates, names, objects = specs[generator]
        if set_name == "held_out_names" and not names:
            raise ConfigError("The held_out_names test set needs --data.held_out_name_fraction > 0.")
        hp = self.hparams
        needed = 5 if (corruption or hp.corruption) == "abc" else 2
        if set_name == "held_out_names" and len(names) < needed:
            raise ConfigError(
                f"The held_out_names test set has {len(names)} names and the {corruption or hp.corruption} corruption "
                f"needs {needed} different ones per prompt: raise --data.held_out_name_fraction (now "
                f"{hp.held_out_name_fraction}), or leave held_out_names out of --data.off_distribution."
            )
        return generate_ioi(
            self.encoder, n, list(templates), list(template_ids), names, corruption or hp.corruption,
            set_seed(hp.seed, seed_name or set_name), PLACES, objects,
        )  # fmt: skip

    def features(self, split: str) -> dict[str, list[Any]]:
        """Each prompt's features in a drawn split (`setup` first): the `ioi` task's (`data.ioi.ioi_features`: io, s,
        template_id, order), what causal scrubbing groups prompts by."""
        if split not in self.splits or self.encoder is None:
            raise ConfigError(f"No drawn prompt set {split!r}; call setup() first (drawn: {list(self.splits)}).")
        return ioi_features(self.splits[split], self.encoder)

    def _set_specs(self) -> dict[str, SetSpec]:
        """Every generator's (template ids, templates, names, objects), keyed by set name (computed once)."""
        if self._specs:
            return self._specs
        hp = self.hparams
        self.encoder = load_tokenizer(hp.model_name)
        # A toy model's own split, when it stored one: its held-out names are then the ones it never saw.
        split = checkpoint_name_split(hp.model_name, hp.held_out_name_fraction)
        held_out_names, train_names = split or split_names(
            default_names(self.encoder), hp.held_out_name_fraction, hp.seed
        )
        self.held_out_names, self.train_names = held_out_names, train_names

        self._specs = ioi_set_specs(self.encoder, hp.held_out_templates, train_names, held_out_names)
        return self._specs

    def _replicas(self) -> tuple[int, int]:
        """(number of processes, this process's rank); (1, 0) outside a Trainer."""
        trainer = getattr(self, "trainer", None)
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def _loader(self, split: str, sampler: Sampler) -> DataLoader:
        return DataLoader(
            PromptDataset(self.splits[split]),
            batch_size=self.hparams.batch_size,
            sampler=sampler,
            collate_fn=collate,
            num_workers=self.hparams.num_workers,
        )

    def train_dataloader(self) -> ResumableLoader:
        # The shuffle is a function of (seed, epoch) — Lightning calls `set_epoch` — not of the global RNG,
        # and the loader records how far into the epoch it is: a run resumed from any step, mid-epoch
        # included, sees the batches the uninterrupted one saw. With N processes, rank r takes perm[r::N],
        # so the ranks' batch t together are the one-process batch t (batch size B·N) when N divides n_train.
        replicas, rank = self._replicas()
        dataset = PromptDataset(self.splits["train"])
        if len(dataset) % replicas and rank == 0:
            warnings.warn(
                f"--data.n_train {len(dataset)} is not divisible by the {replicas} processes: the sampler repeats "
                f"{replicas - len(dataset) % replicas} prompts each epoch, so training differs from one process's.",
                stacklevel=2,
            )
        sampler = ResumableSampler(dataset, num_replicas=replicas, rank=rank, seed=self.hparams.seed)
        return ResumableLoader(
            dataset,
            sampler,
            batch_size=self.hparams.batch_size,
            collate_fn=collate,
            num_workers=self.hparams.num_workers,
        )

    def _evaluation_loader(self, split: str) -> DataLoader:
        # Each prompt on exactly one rank, none repeated (DistributedSampler pads by repeating prompts,
        # which the summed metrics would count twice).
        replicas, rank = self._replicas()
        dataset = PromptDataset(self.splits[split])
        if len(dataset) < replicas:
            raise ConfigError(
                f"The {split} set has {len(dataset)} prompts for {replicas} processes; every process needs one. "
                "Raise --data.n_val / --data.n_test or use fewer devices."
            )
        return self._loader(
            split, UnrepeatedDistributedSampler(dataset, num_replicas=replicas, rank=rank, shuffle=False)
        )

    def val_dataloader(self) -> DataLoader:
        return self._evaluation_loader("val")

    def test_dataloader(self) -> list[DataLoader]:
        return [self._evaluation_loader(name) for name in self.test_set_names]

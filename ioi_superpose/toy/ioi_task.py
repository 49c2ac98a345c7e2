"""Toy IOI, the task: IOI prompts on a word vocabulary, labelled with the IO at END.

The prompts come from the same generator, templates and corruptions as the GPT-2 data
(`data/ioi.py`), tokenized by a `WordTokenizer` (one token per word), so the whole IOI pipeline —
metrics, off-distribution sets, patching, the main job — runs unchanged on the toy model:
`python -m ioi_superpose.train fit --config experiments/toy_ioi.yaml`.

Train it with `python -m ioi_superpose.train_toy fit --config experiments/toy_ioi_model.yaml --replace_checkpoint true`:

- `ToyIOIDataModule` (here): fresh seeded IOI prompts every step, labelled with the IO name at END only,
  drawn from the training names; the held-out names are split off with the main job's rule
  (`data.datamodule.split_names`), so the model never sees the names of the main job's
  `held_out_names` test set.
- `FrozenNameEmbeddings` (callback, `toy/name_embeddings.py`): every name token gets a seeded random vector,
  the same in the
  embedding (row of W_E) and the unembedding (column of W_U, with b_U = 0), never trained; during
  training the training names' vectors are redrawn at every step.
- `ExportToyIOIModel` (callback, `toy/export.py`): the toy-model export plus IOI metrics (IO-over-S accuracy, mean
  logit difference, top-1 accuracy) per name split and template family.

Why random name embeddings, shared by embedding and unembedding, never trained: see
`toy/name_embeddings.py`.

Other choices, each measured on this CPU (seeded runs of 1000 steps):
- LayerNorm on: without it the model stayed at chance (loss plateau) for the whole budget.
- Shortformer positions (positional embeddings in keys and queries only, not in the residual stream):
  the IOI algorithm appeared after ~250 steps for every seed tried; with standard positions it took
  500 to >1000 steps depending on the seed.
- Training families: the 30 IOI templates plus the long templates and their mirrors (the names of the
  first clause swapped). Without long prompts, positions past the IOI prompts' length stay untrained
  (long templates at chance); without the mirrors, each long template has its IO at a fixed position and
  the model answers by position (the name-swap corruption then no longer flips its answer). The
  duplicated-IO templates are never trained on: trained on them it also learns a positional shortcut;
  untrained they are a true off-distribution test (~65 % IO over S: the model partly relies on "the
  repeated name is the subject"), with a large clean − corrupted gap, so recovery stays meaningful.
- Templates are drawn uniformly from the union, so IOI templates are ~80 % of the prompts; a mixture
  balanced per family let the easier families dominate and delayed learning IOI.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import lightning as L
import torch
from jaxtyping import Int
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ioi_superpose.data.datamodule import split_names
from ioi_superpose.data.ioi import Corruption, IOIBatch, default_names, generate_ioi
from ioi_superpose.data.templates import DUPLICATED_IO_TEMPLATES, IOI_TEMPLATES, LONG_TEMPLATES, NAMES
from ioi_superpose.errors import ConfigError
from ioi_superpose.seeds import check_seed
from ioi_superpose.toy.batches import IGNORE_INDEX, TokenBatch
from ioi_superpose.toy.ioi_vocabulary import toy_ioi_tokenizer

Family = Literal["ioi", "long_templates", "duplicated_io"]
NameSplit = Literal["seen_names", "held_out_names"]

FAMILIES: dict[str, tuple[str, ...]] = {
    "ioi": IOI_TEMPLATES,
    "long_templates": LONG_TEMPLATES,
    "duplicated_io": DUPLICATED_IO_TEMPLATES,
}
_FIRST_TEMPLATE_ID = {
    "ioi": 0,
    "long_templates": len(IOI_TEMPLATES),
    "duplicated_io": len(IOI_TEMPLATES) + len(LONG_TEMPLATES),
}
"""Template ids as `IOIDataModule` numbers them (IOI, then long, then duplicated-IO)."""


def mirror_template(template: str) -> str:
    """The template with the names of its first clause swapped ("[B] and [A]" <-> "[A] and [B]")."""
    if "[B] and [A]" in template:
        return template.replace("[B] and [A]", "[A] and [B]", 1)
    return template.replace("[A] and [B]", "[B] and [A]", 1)


def io_labels(prompts: IOIBatch) -> Int[Tensor, "batch pos"]:
    """IGNORE_INDEX everywhere but END, where the label is the IO name."""
    labels = torch.full_like(prompts.clean_tokens, IGNORE_INDEX)
    labels[torch.arange(len(prompts)), prompts.end_pos] = prompts.answer_tokens[:, 0]
    return labels


class _SeededIOIBatches(Dataset[TokenBatch]):
    """`n_batches` batches of training prompts, batch i drawn from its own seed (fresh every step)."""

    def __init__(self, data: "ToyIOIDataModule", n_batches: int, seed: int) -> None:
        self.data, self.n_batches, self.seed = data, n_batches, seed

    def __len__(self) -> int:
        return self.n_batches

    def __getitem__(self, index: int) -> TokenBatch:
        if not 0 <= index < self.n_batches:
            raise IndexError(index)
        return self.data.training_batch(self.data.hparams.batch_size, seed=self.seed * 1_000_003 + index)


class ToyIOIDataModule(L.LightningDataModule):
    """Clean IOI prompts on the toy vocabulary, labelled with the IO at END.

    Training prompts use the training names and the `train_families` template families. Validation and
    test report accuracy per group `{seen_names,held_out_names}_{family}` for every family (groups are
    what `ToyModelTraining` logs as `val/group_acc/<group>`).
    """

    def __init__(
        self,
        batch_size: int = 256,
        train_batches: int = 1000,
        eval_prompts_per_group: int = 256,
        held_out_name_fraction: float = 0.2,
        name_split_seed: int = 0,
        train_families: tuple[Family, ...] = ("ioi", "long_templates"),
        mirror_templates: bool = True,
        seed: int = 0,
    ) -> None:
        """
        Args:
            batch_size: prompts per training step.
            train_batches: steps per epoch (each batch drawn fresh from its own seed).
            eval_prompts_per_group: validation/test prompts per (name split, family) group.
            held_out_name_fraction: share of the names never trained on. Must equal the main job's
                `--data.held_out_name_fraction` for its `held_out_names` set to be names this model never saw.
            name_split_seed: seed of the name split. Must equal the main job's `--data.seed` (both default 0).
            train_families: template families trained on: `ioi` (the paper's 30 templates),
                `long_templates`, `duplicated_io`; the others are only evaluated. Templates are drawn
                uniformly from the union, so the 30 IOI templates make most of the prompts.
            mirror_templates: also train on the mirror of each long / duplicated-IO template (the names
                of its first clause swapped; the IOI family already holds both orders), so that no
                template puts the IO at a fixed position and the model must compare names.
            seed: seed of the prompts (training, validation and test use disjoint streams).
        """
        super().__init__()
        self.save_hyperparameters()
        for option, value in dict(
            batch_size=batch_size, train_batches=train_batches, eval_prompts_per_group=eval_prompts_per_group
        ).items():
            if value < 1:
                raise ConfigError(f"--data.init_args.{option} must be >= 1, got {value}.")
        if not 0.0 < held_out_name_fraction < 1.0:
            raise ConfigError(
                f"--data.init_args.held_out_name_fraction must be in (0, 1), got {held_out_name_fraction}."
            )
        check_seed("--data.init_args.seed", seed)
        check_seed("--data.init_args.name_split_seed", name_split_seed)
        unknown = [family for family in train_families if family not in FAMILIES]
        if unknown or not train_families:
            raise ConfigError(
                f"--data.init_args.train_families must list some of {list(FAMILIES)}, got {list(train_families)}."
            )
        self.tokenizer = toy_ioi_tokenizer()
        self.held_out_names, self.train_names = split_names(
            default_names(self.tokenizer), held_out_name_fraction, name_split_seed
        )

    # --- what train_toy links into the model and what the export reads ------------------------------
    @property
    def d_vocab(self) -> int:
        return len(self.tokenizer)

    @property
    def n_ctx(self) -> int:
        """The longest prompt of any family (BOS included), so every test set fits."""
        return max(
            generate_ioi(self.tokenizer, 1, [template], [0], NAMES[:2]).clean_tokens.shape[1]
            for templates in FAMILIES.values()
            for template in templates
        )

    @property
    def group_names(self) -> list[str]:
        return [f"{split}_{family}" for split in ("seen_names", "held_out_names") for family in FAMILIES]

    @property
    def name_token_ids(self) -> list[int]:
        """Token ids of all names (training and held-out), in NAMES order."""
        return [self.tokenizer.encode(" " + name)[0] for name in default_names(self.tokenizer)]

    @property
    def train_name_token_ids(self) -> list[int]:
        """Token ids of the names that training prompts use."""
        return [self.tokenizer.encode(" " + name)[0] for name in self.train_names]

    def metadata(self) -> dict[str, Any]:
        """What the checkpoint records: the task, the tokenizer (to rebuild it) and the name split."""
        return {
            "task": "toy_ioi",
            "task_parameters": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.hparams.items()},
            "tokenizer": self.tokenizer.to_dict(),
            "held_out_names": list(self.held_out_names),
            "train_names": list(self.train_names),
            "group_names": self.group_names,
        }

    # --- prompts --------------------------------------------------------------------------------------
    def prompts(
        self, split: NameSplit, family: Family, n: int, seed: int, corruption: Corruption = "name_swap"
    ) -> IOIBatch:
        """`n` seeded IOI prompts of one family with the seen (training) or held-out names."""
        names = self.train_names if split == "seen_names" else self.held_out_names
        templates = FAMILIES[family]
        ids = range(_FIRST_TEMPLATE_ID[family], _FIRST_TEMPLATE_ID[family] + len(templates))
        return generate_ioi(self.tokenizer, n, list(templates), list(ids), names, corruption, seed)

    def training_batch(self, n: int, seed: int) -> TokenBatch:
        """`n` prompts with training names, each from a template drawn uniformly from `train_families`."""
        templates, ids, groups = [], [], []
        for family in self.hparams.train_families:
            first = _FIRST_TEMPLATE_ID[family]
            family_templates = list(FAMILIES[family])
            family_ids = list(range(first, first + len(family_templates)))
            if self.hparams.mirror_templates and family != "ioi":
                family_templates += [mirror_template(t) for t in FAMILIES[family]]
                family_ids += family_ids
            templates += family_templates
            ids += family_ids
            groups += [self.group_names.index(f"seen_names_{family}")] * len(family_templates)
        prompts = generate_ioi(self.tokenizer, n, templates, ids, self.train_names, "name_swap", seed)
        group_of_id = torch.full((max(ids) + 1,), -1, dtype=torch.long)
        group_of_id[torch.tensor(ids)] = torch.tensor(groups)
        return TokenBatch(
            tokens=prompts.clean_tokens, labels=io_labels(prompts), group=group_of_id[prompts.template_id]
        )

    def evaluation_batch(self, n: int, seed: int) -> TokenBatch:
        """About `n` prompts, split evenly over the groups (name split × family)."""
        per_group = max(n // len(self.group_names), 1)
        return self._token_batch(
            [
                (self.prompts(split, family, per_group, seed + 101 * index), index)
                for index, (split, family) in enumerate(self.groups())
            ]
        )

    def groups(self) -> list[tuple[NameSplit, Family]]:
        """(name split, family) of each group, in `group_names` order."""
        return [(split, family) for split in ("seen_names", "held_out_names") for family in FAMILIES]  # type: ignore[misc]

    def _token_batch(self, parts: Sequence[tuple[IOIBatch, int]]) -> TokenBatch:
        length = max(prompts.clean_tokens.shape[1] for prompts, _ in parts)
        pad = self.tokenizer.pad_token_id

        def padded(tensor: Tensor, value: int) -> Tensor:
            return torch.nn.functional.pad(tensor, (0, length - tensor.shape[1]), value=value)

        return TokenBatch(
            tokens=torch.cat([padded(p.clean_tokens, pad) for p, _ in parts]),
            labels=torch.cat([padded(io_labels(p), IGNORE_INDEX) for p, _ in parts]),
            group=torch.cat([torch.full((len(p),), group) for p, group in parts]),
        )

    # --- Lightning ------------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        self.train_set = _SeededIOIBatches(self, hp.train_batches, seed=hp.seed * 16)
        n_eval = hp.eval_prompts_per_group * len(self.group_names)
        self.val_batch = self.evaluation_batch(n_eval, seed=hp.seed * 16 + 1_000_000_001)
        self.test_batch = self.evaluation_batch(n_eval, seed=hp.seed * 16 + 2_000_000_002)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return DataLoader([self.val_batch], batch_size=None)

    def test_dataloader(self) -> DataLoader:
        return DataLoader([self.test_batch], batch_size=None)

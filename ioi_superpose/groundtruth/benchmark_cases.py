"""The benchmark's cases: a model, three disjoint prompt sets (train, dev, test) and where its carrying
heads attend, for the planted models (`toy.planted`, `toy.planted_hard`) and the shipped toy-IOI models
(suite "small"), or for the 144-head GPT-2-scale suite (`groundtruth.planted_gpt2`, suite "gpt2"), whose
exhaustive search runs over each case's planted heads (`BenchCase.candidates`).

Train prompts are what every method fits, ranks or prunes on; dev prompts give the dev ground truth that
hyperparameters are chosen against (on *other* cases, `toy.selection`) and the check of the
"smallest top-k that reaches the target" rule; test prompts give the ground truth each case is scored
against. Planted prompts differ by filler seed; toy-IOI prompts are `data.ioi_prompts` with seeds 0 / 1 / 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from jaxtyping import Int
from torch import Tensor

from ioi_superpose.data import ioi_prompts
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.engine.vocabulary import Head
from ioi_superpose.errors import ConfigError
from ioi_superpose.groundtruth.planted import PlantedCase, all_cases
from ioi_superpose.groundtruth.planted_gpt2 import SRC_POS, gpt2_cases
from ioi_superpose.groundtruth.planted_hard import hard_cases
from ioi_superpose.models import HookedTransformer, load_frozen_model

SPLIT_SEEDS = {"train": 0, "dev": 1, "test": 2}
CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"
TRAINED = {
    # name: (checkpoint, corruption). toy_ioi keeps the main job's name swap (where greedy from all heads
    # returns 4 heads and the learned α 3); the dropout-trained models use abc, under which their
    # directions disagree (under name swap denoising is noising of the swapped pair: one experiment).
    "toy_ioi": ("toy_ioi.pt", "name_swap"),
    "toy_ioi_redundant": ("toy_ioi_redundant.pt", "abc"),
    "toy_ioi_backups": ("toy_ioi_backups.pt", "abc"),
}
Kind = Literal["planted", "trap", "negative", "trained"]
SUITES = ("small", "gpt2")
GPT2_SEPARATING = ("and", "backup", "negative", "decoy", "trap_8")
"""The 144-head cases built against single-head patching (the AND pair, the backup only noising reveals),
direct logit attribution (the decoy), single-head effects of the wrong sign (the negative head) and the minimal-set
step from all heads without learning (the trap)."""


@dataclass
class BenchCase:
    name: str
    kind: Kind
    model: HookedTransformer
    splits: dict[str, ContrastBatch]
    """train / dev / test prompts."""
    attention_targets: dict[str, Int[Tensor, " n"]] | None
    """Per split, the position the carrying heads attend to from END (source token; IO for toy IOI);
    None where no such position exists (the attention-weighted baseline is then n/a)."""
    candidates: tuple[Head, ...] | None = None
    """The heads the exhaustive ground truth searches over (None: every head of the model). At 144 heads,
    the case's planted heads: the suite verifies that no distractor moves a minimal set's effect."""
    separates: bool | None = None
    """Whether the case is separating (None: by kind, see `separating`)."""
    promised: dict[str, tuple[tuple[Head, ...], ...]] | None = None
    """Per direction, the minimal sets the suite promises for cuts (`rest="free"`), where it promises any."""

    @property
    def separating(self) -> bool:
        """Built to separate learning from greedy search and baselines (traps, trained toy-IOI models; at 144
        heads `GPT2_SEPARATING`)."""
        return self.kind in ("trap", "trained") if self.separates is None else self.separates


def planted_bench_case(case: PlantedCase, n_prompts: int, kind: Kind = "planted") -> BenchCase:
    splits = {split: case.prompts(n_prompts, seed) for split, seed in SPLIT_SEEDS.items()}
    targets = None
    if case.attention_target is not None:
        targets = {split: torch.full((n_prompts,), case.attention_target) for split in splits}
    return BenchCase(case.name, kind, case.model, splits, targets)


def trained_bench_case(name: str, n_prompts: int) -> BenchCase:
    checkpoint, corruption = TRAINED[name]
    path = str(CHECKPOINTS / checkpoint)
    model = load_frozen_model(path)
    splits, targets = {}, {}
    for split, seed in SPLIT_SEEDS.items():
        batch = ioi_prompts(path, n=n_prompts, corruption=corruption, seed=seed)
        # A plain contrast batch (no IOI roles): every case's prompts are patched and ablated alike.
        splits[split] = ContrastBatch.from_tokens(batch.clean_tokens, batch.corrupted_tokens, batch.answer_tokens,
                                                  batch.end_pos, name=f"{name}_{split}")  # fmt: skip
        targets[split] = batch.io_pos
    return BenchCase(name, "trained", model, splits, targets)


def gpt2_bench_cases(n_prompts: int = 32, names: list[str] | None = None) -> list[BenchCase]:
    """The 144-head suite's cases (or those named), in the suite's order, on one model. The carrying heads
    attend from END to the source token (position 0), except in `composition` (6.4 attends to the slot)."""
    suite = gpt2_cases()
    known = [c.name for c in suite]
    unknown = sorted(set(names or ()) - set(known))
    if unknown:
        raise ConfigError(f"--cases: unknown gpt2 benchmark cases {unknown}; known: {known}.")
    out = []
    for case in suite:
        if names is not None and case.name not in names:
            continue
        splits = {split: case.prompts(n_prompts, seed) for split, seed in SPLIT_SEEDS.items()}
        targets = None if case.name == "composition" else {s: torch.full((n_prompts,), SRC_POS) for s in splits}
        out.append(BenchCase(case.name, "planted", case.model, splits, targets, candidates=case.heads,
                             separates=case.name in GPT2_SEPARATING,
                             promised={"denoising": case.denoising_minimal,
                                       "noising": case.noising_minimal}))  # fmt: skip
    return out


def bench_cases(
    n_planted: int = 32, n_trained: int = 64, names: list[str] | None = None, suite: str = "small"
) -> list[BenchCase]:
    """Every case (or those named), in a fixed order: planted, traps and negative heads, trained; or, for
    `suite="gpt2"`, the 144-head suite's cases with `n_planted` prompts per split."""
    if suite not in SUITES:
        raise ConfigError(f"--suite must be one of {list(SUITES)}, got {suite!r}.")
    if suite == "gpt2":
        return gpt2_bench_cases(n_planted, names)
    planted = [(c, "planted") for c in all_cases()]
    kinds = {"trap_8": "trap", "trap_12": "trap", "negative": "negative"}
    planted += [(c, kinds[c.name]) for c in hard_cases()]
    known = [c.name for c, _ in planted] + list(TRAINED)
    unknown = sorted(set(names or ()) - set(known))
    if unknown:
        raise ConfigError(f"--cases: unknown benchmark cases {unknown}; known: {known}.")
    wanted = set(known if names is None else names)
    cases = [planted_bench_case(c, n_planted, kind) for c, kind in planted if c.name in wanted]
    return cases + [trained_bench_case(name, n_trained) for name in TRAINED if name in wanted]

"""K combinations trained in one batched forward of the frozen model (one model, K × batch rows).

`runs.patched_end_logits` already folds the variants of a `Combination` into the batch (row
`v * batch + b`). A `StackedCombination` makes K learnable members of one family the K variants of
one combination, so a single patched forward (and backward) per step serves all K.

`BatchedSuperposition` trains K ordinary `HeadSuperposition`s this way: one frozen model, one
reference cache, one data order, and the loss Σ_k (objective_k + λ_k · penalty_k). Member k's
parameters reach only its own rows and its own penalty, so its gradient is that of its own loss
alone, and Adam is element-wise, so one optimiser with one parameter group per member (its own lr)
is K independent optimisers: the K members end where K separate runs end, up to float rounding. The
members stay `HeadSuperposition`s: after fit each one is evaluated, summarised and written by the
existing code (validation, test sets, per-prompt distributions, baselines, `RunWriter`, pruning).

Members may differ only in `BATCHABLE` settings (λ, init, lr, the hard-concrete gate seed); anything
that changes the data, its order or the reference runs (direction, objective, family, seed, data) must
be equal. Gradient clipping across all parameters would couple the members, so a batched fit refuses it.
Tested in one process (CPU); the objectives are all-reduced as in single runs, but a batched fit under
DDP has not been run.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import lightning as L
import torch
from jaxtyping import Float
from torch import Tensor, nn

from ioi_superpose.combinations import Combination, LearnedFamily, ScalarCombination, batch_roles, mix
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.engine.rest import with_rest
from ioi_superpose.engine.runs import BaseRun, Reference, patched_end_logits
from ioi_superpose.errors import ConfigError, NonFiniteLossError
from ioi_superpose.training.system import HeadSuperposition, pruning_batches

BATCHABLE: tuple[str, ...] = ("l1", "init", "lr", "gate_seed")
"""`HeadSuperposition` settings in which the members of one batched fit may differ."""


class StackedCombination(Combination):
    """K learnable members of one family as the K variants of one combination: variant k is member k.

    `vectorise` (default: when every member is `scalar`) mixes all members' α in one `mix` call;
    otherwise each member's own forward runs on its variant's slice (any family, including ones added
    later, as long as its forward takes one variant).
    """

    def __init__(self, members: Sequence[LearnedFamily], vectorise: bool | None = None) -> None:
        super().__init__()
        if not members:
            raise ValueError("a stacked combination needs at least one member")
        families = sorted({type(member).__name__ for member in members})
        if len(families) != 1:
            raise ConfigError(f"the members of a batched fit must share one family, got {families}.")
        self.members = nn.ModuleList(members)
        scalar = all(isinstance(member, ScalarCombination) for member in members)
        if vectorise and not scalar:
            raise ValueError("the vectorised path mixes scalar α only; use vectorise=False for other families")
        self.vectorise = scalar if vectorise is None else vectorise

    @property
    def n_variants(self) -> int:
        return len(self.members)

    def select(self, rows: range) -> "StackedCombination":
        return StackedCombination(list(self.members)[rows.start : rows.stop], self.vectorise)

    def first_layer(self) -> int:
        return min(member.first_layer() for member in self.members)

    @contextmanager
    def using_roles(self, roles: Tensor | None) -> Iterator[None]:
        """Every member's `using_roles` (only `per_position` reads them)."""
        with ExitStack() as stack:
            for member in self.members:
                stack.enter_context(member.using_roles(roles))
            yield

    def forward(
        self,
        layer: int,
        z_base: Float[Tensor, "variants batch pos head d_head"],
        z_source: Float[Tensor, "batch pos head d_head"],
    ) -> Float[Tensor, "variants batch pos head d_head"]:
        if z_base.shape[0] != len(self.members):
            raise ValueError(f"z_base has {z_base.shape[0]} variants; this stack has {len(self.members)} members")
        if self.vectorise:
            return mix(z_base, z_source, torch.stack([member.coefficients[layer] for member in self.members]))
        return torch.cat([member(layer, z_base[k : k + 1], z_source) for k, member in enumerate(self.members)])


def check_batchable(systems: Sequence[HeadSuperposition]) -> None:
    """Members must share the frozen model and every setting outside `BATCHABLE`."""
    first = systems[0]
    # The rotation's temperature schedule and report, and the circuit criteria, run in a single fit's hooks only.
    if first.hparams.get("combination") == "rotation" or first.hparams.get("circuit_criteria"):
        raise ConfigError(
            "--model.combination rotation and --model.circuit_criteria are not supported in a batched fit yet "
            "(their end-of-fit reports would be missing): train these points one at a time (--batch_variants 1)."
        )
    for k, system in enumerate(systems[1:], start=1):
        if system.frozen is not first.frozen:
            raise ConfigError(f"batched member {k} holds another frozen model; build every member on the same one.")
        differences = [
            f"{key}: {first.hparams[key]!r} vs {system.hparams.get(key)!r}"
            for key in first.hparams
            if key not in BATCHABLE and first.hparams[key] != system.hparams.get(key)
        ]
        if differences:
            raise ConfigError(
                f"batched member {k} differs from member 0 in settings that cannot be batched ("
                + "; ".join(differences)
                + f"). Only {list(BATCHABLE)} may differ; train the others in separate groups."
            )


class BatchedSuperposition(L.LightningModule):
    """Train K `HeadSuperposition`s (members) in one patched forward of K × batch rows per step.

    Member 0's reference cache and objective serve all (they are equal by `check_batchable`). The
    members' own trainers never run: after fit each member is a trained `HeadSuperposition` with its
    `steps_trained` set, ready for the single-run evaluation and writing code.
    """

    def __init__(
        self, systems: Sequence[HeadSuperposition], max_rows: int | None = None, vectorise: bool | None = None
    ) -> None:
        """
        Args:
            systems: the members, each built as it would be for a run of its own, on one frozen model.
            max_rows: rows per folded forward (None: all K × batch rows at once; a cap chunks the members).
            vectorise: `StackedCombination`'s path (None: vectorised for scalar members).
        """
        super().__init__()
        if not systems:
            raise ConfigError("a batched fit needs at least one member.")
        check_batchable(systems)
        self.systems = nn.ModuleList(systems)
        self.max_rows, self.vectorise = max_rows, vectorise
        self.stack = StackedCombination([system.combination for system in systems], vectorise)
        self._cache_described = False

    @property
    def lead(self) -> HeadSuperposition:
        return self.systems[0]

    def on_fit_start(self) -> None:
        if self.trainer.gradient_clip_val:
            raise ConfigError(
                "gradient clipping (--trainer.gradient_clip_val) takes the norm over every member's parameters, "
                "which would couple them: a batched fit needs it off (or --batch_variants 1)."
            )
        self.lead.reference_cache.clear()
        self._cache_described = False

    def on_train_epoch_end(self) -> None:
        if self.lead.reference_cache.keep_activations and not self._cache_described and self.trainer.is_global_zero:
            self._cache_described = True
            print(self.lead.reference_cache.describe() + f" Shared by {len(self.systems)} batched members.")

    def patched_end_logits(self, batch: ContrastBatch, reference: Reference) -> Float[Tensor, "members batch k"]:
        """Every member's END logits in one folded forward (row k * batch + b is member k, prompt b)."""
        base = BaseRun.prepare(self.lead.frozen, self.lead.run_tokens(batch), prefixes=False)
        vocab_index = None if self.lead.objective.full_vocab else batch.answer_tokens
        max_rows = len(self.systems) * len(batch) if self.max_rows is None else self.max_rows
        with self.stack.using_roles(batch_roles(batch)):
            return patched_end_logits(
                base, reference.source_z, with_rest(self.stack, self.lead.rest), batch.end_pos, vocab_index,
                max_rows=max_rows,
            )

    def member_terms(
        self, batch: ContrastBatch, global_batch: bool = False
    ) -> tuple[Reference, list[dict[str, Tensor]]]:
        """The reference runs of a training batch and every member's `loss_terms`, from one folded forward."""
        reference = self.lead.reference(batch, cached_rows=True)
        end_logits = self.patched_end_logits(batch, reference)
        return reference, [system.terms_of(end_logits[k], batch, reference, global_batch) for k, system in
                           enumerate(self.systems)]  # fmt: skip

    def training_step(self, batch: ContrastBatch, batch_idx: int) -> Tensor:
        for system in self.systems:
            system.steps_trained = self.global_step  # the λ warm-up of each member reads this fit's step
        reference, member_terms = self.member_terms(batch, global_batch=True)
        total = sum(terms["loss"] for terms in member_terms)
        logs: dict[str, float | Tensor] = {}
        for k, terms in enumerate(member_terms):
            if not torch.isfinite(terms["loss"]):
                raise NonFiniteLossError(
                    f"The loss of batched member {k} is {terms['loss'].item()} at training step {self.global_step} "
                    f"(objective {terms['objective'].item()}, penalty {terms['l1'].item()}). Training stopped. "
                    "Lower its --model.lr, or use --model.bounded true."
                )
            logs[f"train/{k}/loss"] = terms["loss"]
            logs[f"train/{k}/recovery"] = reference.recovery(terms["answer_logits"].detach())
        self.log_dict({"train/loss": total, **logs}, batch_size=len(batch))
        return total

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # One group per member: Adam is element-wise, so this is K independent optimisers with their own lr.
        groups = [{"params": list(system.combination.parameters()), "lr": system.hparams.lr} for system in self.systems]
        return torch.optim.Adam(groups)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        for system in self.systems:
            system.combination.project_()

    def on_fit_end(self) -> None:
        """Each member's step count, and its minimal-set step (`prune_target`), as its own fit would end."""
        for system in self.systems:
            system.steps_trained = self.global_step
        if self.trainer.interrupted:
            return
        for system in self.systems:
            if system.hparams.prune_target is not None:
                batches = pruning_batches(self.trainer, system.hparams.prune_prompts)
                system.prune_([batch.to(system.device) for batch in batches])

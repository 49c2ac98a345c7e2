"""The LightningModule: a frozen model, a learnable head combination, loss = objective + λ·‖α‖₁."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, Optional

import lightning as L
import torch
from jaxtyping import Float
from torch import Tensor, nn
from torchmetrics import MetricCollection

from ioi_superpose.combinations import LearnedFamily
from ioi_superpose.combinations.stacked import StackedCombination
from ioi_superpose.console import LOG
from ioi_superpose.data.answer_metrics import answer_values
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.data.splits import IN_DISTRIBUTION, metric_prefix
from ioi_superpose.engine.ablations import Ablation, ablated_reference
from ioi_superpose.engine.rest import Rest
from ioi_superpose.engine.runs import Reference, notion_end_logits, recovery_of, reference_runs
from ioi_superpose.errors import ConfigError, NonFiniteLossError
from ioi_superpose.fitting.fitted import FittedCombination
from ioi_superpose.fitting.objectives import OBJECTIVES, Objective, across_ranks
from ioi_superpose.fitting.settings import BATCHABLE, SuperpositionConfig, flat_settings, settings_doc
from ioi_superpose.models import HookedTransformer, describe_model, load_frozen_model
from ioi_superpose.training.cache import ReferenceCache
from ioi_superpose.training.metrics import IOAccuracy, MeanLogitDiff, NormalisedRecovery, ObjectiveLoss
from ioi_superpose.training.non_finite import non_finite_cause


def contrast_metrics(prefix: str, objective: Objective) -> MetricCollection:
    """What every evaluation set reports. Sum states: exact across batches and ranks (`loss` is the
    objective of the whole set, as one batch, plus the L1 term)."""
    return MetricCollection(
        {
            "recovery": NormalisedRecovery(),
            "logit_diff": MeanLogitDiff(),
            "clean_logit_diff": MeanLogitDiff(),
            "corrupted_logit_diff": MeanLogitDiff(),
            "accuracy": IOAccuracy(),
            "clean_accuracy": IOAccuracy(),
            "loss": ObjectiveLoss(objective),
        },
        prefix=prefix,
        compute_groups=False,  # each metric is fed its own inputs
    )


class HeadSuperposition(L.LightningModule):
    """Learn a sparse combination α[layer, head] of head outputs that carries a behaviour.

    Each training step runs the base prompts with every head's z mixed towards the source prompts'
    z by α, reads the answer logits at END only, and minimises the objective plus λ·‖α‖₁. Only α
    trains; the model is frozen.
    """

    def __init__(self, preloaded_model: HookedTransformer | None = None, **settings: Any) -> None:
        """`settings`: the flat settings of `fitting.settings.flat_settings`, by name (the `--model.*` flags; their
        documentation: `superposition_module`'s, or `python -m ioi_superpose.train fit --help`). Every check is the
        config's: errors name the field; the CLIs rename it to the flag. `preloaded_model`: Python API only, an already
        loaded HookedTransformer, used instead of loading `model_name`."""
        super().__init__()
        self.config = SuperpositionConfig.from_settings(**settings)
        # Every setting, defaults filled in, in the flags' order: what a checkpoint records and a resume compares.
        self.save_hyperparameters({setting.name: settings.get(setting.name, setting.default)
                                   for setting in flat_settings()})  # fmt: skip
        model = preloaded_model if preloaded_model is not None else load_frozen_model(self.config.model_name)
        # Deliberately not a submodule: the frozen weights are never saved in our checkpoints (they
        # hold α; the model is reloaded from `model_name`) nor wrapped or synchronised by DDP.
        # `_apply` moves it wherever the module goes.
        self.use_frozen_model(model)
        self.combination: LearnedFamily = self.config.family.build(model.cfg.n_layers, model.cfg.n_heads,
                                                                   model.cfg.d_head)  # fmt: skip
        self.peers = nn.ModuleList()
        """The other members of a batched fit (`batched`); empty for a run of its own (K = 1)."""
        self.max_rows: int | None = None
        self.vectorise: bool | None = None
        self.steps_trained: int | None = None
        """Optimiser steps this combination took in its last fit, for every member; a peer's λ warm-up reads it
        (set by the lead each step) instead of its own trainer's step count. None: during its own fit."""
        self.objective = OBJECTIVES[self.config.optim.objective]()
        cache = self.config.cache
        self.reference_cache = ReferenceCache(cache.cache_source_activations, cache.dtype, cache.device,
                                              cache.max_bytes)  # fmt: skip
        self._cache_described = False
        self.val_metrics = contrast_metrics(metric_prefix("val", IN_DISTRIBUTION), self.objective)
        self.test_metrics = nn.ModuleDict(
            {name: contrast_metrics(metric_prefix("test", name), self.objective) for name in self.config.test_sets}
        )

    # ----------------------------------------------------------------------------------------------
    # K >= 1 members

    @property
    def members(self) -> list["HeadSuperposition"]:
        """The modules this one trains: itself, then its peers (`batched`)."""
        return [self, *self.peers]

    @classmethod
    def batched(
        cls, systems: Sequence["HeadSuperposition"], max_rows: int | None = None, vectorise: bool | None = None
    ) -> "HeadSuperposition":
        """K modules trained as one: `systems[0]` holds the others as peers and trains every member's combination
        in one patched forward of K × batch rows per step; after fit each member is a trained module of its own
        (its `steps_trained` set), evaluated and written as its own run would be.

        One frozen model, one reference cache (member 0's), one data order, and the loss Σ_k (objective_k +
        λ_k · penalty_k). Member k's parameters reach only its own rows and its own penalty, so its gradient is
        that of its own loss alone, and Adam is element-wise: one optimiser with one parameter group per member
        (its own lr) is K independent optimisers, and the K members end where K separate runs end, up to float
        rounding. Members may differ only in `BATCHABLE` settings (λ, init, lr, the hard-concrete gate seed);
        gradient clipping across all parameters would couple them, so a batched fit refuses it. Tested in one
        process (CPU); the objectives are all-reduced as in single runs, but a batched fit under DDP has not
        been run.

        Args:
            systems: the members, each built as it would be for a run of its own, on the same model (a member
                that loaded its own copy is given member 0's).
            max_rows: rows per folded forward (None: all K × batch rows at once; a cap chunks the members).
            vectorise: `StackedCombination`'s path (None: vectorised for scalar members).
        """
        if not systems:
            raise ConfigError("a batched fit needs at least one member.")
        check_batchable(systems)
        lead = systems[0]
        for system in systems[1:]:
            system.use_frozen_model(lead.frozen)
        lead.peers = nn.ModuleList(systems[1:])
        lead.max_rows, lead.vectorise = max_rows, vectorise
        return lead

    def use_frozen_model(self, model: HookedTransformer) -> None:
        """Hold `model` as the frozen model (not a submodule, see `__init__`): batched members share one."""
        object.__setattr__(self, "frozen", model)

    # ----------------------------------------------------------------------------------------------
    # the frozen model

    def _apply(self, fn: Any, recurse: bool = True) -> "HeadSuperposition":
        """Every move of the module — by Lightning's strategy, by `.to`, by the CPU move that ends each
        Trainer stage — moves the frozen model too: one mechanism, no placement in hooks."""
        super()._apply(fn, recurse)
        device = self.combination.coefficients.device
        if torch.device(self.frozen.cfg.device) != device:
            self.frozen.to(device, print_details=False)  # TransformerLens's `to` also updates cfg.device
        return self

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["frozen_model"] = describe_model(self.frozen)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved, current = checkpoint.get("frozen_model"), describe_model(self.frozen)
        if saved is not None and saved != current:
            raise ConfigError(
                f"This checkpoint was trained on model {saved}, but this run uses {current}. Resume with the "
                "model the checkpoint was made for (--model.model_name), or start a new run without --ckpt_path."
            )

    def on_fit_start(self) -> None:
        if self.peers and self.trainer.gradient_clip_val:
            raise ConfigError(
                "gradient clipping (--trainer.gradient_clip_val) takes the norm over every member's parameters, "
                "which would couple them: a batched fit needs it off (or --batch_variants 1)."
            )
        self.reference_cache.clear()
        self._cache_described = False
        for member in self.members:
            member.steps_trained = None
            if hasattr(member.combination, "set_total_steps"):  # rotation: anneal the mask's temperature over the fit
                member.combination.set_total_steps(int(self.trainer.estimated_stepping_batches))

    def on_train_epoch_end(self) -> None:
        # Every training prompt has been seen once: the cache is as full as it gets. Said once per fit.
        if self.reference_cache.keep_activations and not self._cache_described:
            self._cache_described = True
            if self.trainer.is_global_zero:
                shared = f" Shared by {len(self.members)} batched members." if self.peers else ""
                share = " (this process's share)" if self.trainer.world_size > 1 else ""
                LOG.info(self.reference_cache.describe() + share + shared)  # CLI runs print it, API calls do not

    def on_fit_end(self) -> None:
        """Every member's step count (a batched member's λ warm-up and summary read it). The work that follows a fit
        (pruning, the circuit criteria, head types, rotation's dimension count) is not the module's: the CLI and the
        API run it once the fit has ended (`analyses.post_fit.after_fit`)."""
        for member in self.members:
            member.steps_trained = self.global_step

    # ----------------------------------------------------------------------------------------------
    # runs

    def fitted(self) -> FittedCombination:
        """This module's combination, model and settings as the analyses, baselines and results read them."""
        return FittedCombination(self.frozen, self.combination, self.config)

    @property
    def rest(self) -> Rest:
        # A checkpoint from before `rest` (or `ablation`) existed rebuilds the module with its default.
        return self.config.optim.rest

    @property
    def ablation(self) -> Ablation:
        return self.config.optim.ablation  # type: ignore[return-value]

    @torch.no_grad()
    def reference(self, batch: ContrastBatch, cached_rows: bool = False) -> Reference:
        """The unpatched source and base runs for `batch` (no grad).

        `cached_rows`: `batch` holds rows of the training set, whose per-prompt results are cached by
        `batch.index`. Only training steps set it: rows of any other set would collide with those keys.
        """
        cached = self.reference_cache.get(batch, self.config.optim.direction) if cached_rows else None
        # (The cache's keys are prompts, its z the recorded run's: one `rest` per module, so never mixed.)
        if cached is not None:
            return cached
        if self.ablation != "corrupted":
            reference = ablated_reference(self.frozen, batch, self.ablation, self.objective.full_vocab)
            if cached_rows:
                self.reference_cache.put(batch, reference)
            return reference
        reference = reference_runs(
            self.frozen, batch.clean_tokens, batch.corrupted_tokens, batch.end_pos, batch.answer_tokens,
            self.config.optim.direction, source_log_probs=self.objective.full_vocab,
            answer_weights=batch.answer_weights, metric=batch.metric,
            # Without cached activations the source run is redone every step; the base run need not be.
            base_answer_logits=self.reference_cache.base_answer_logits(batch) if cached_rows else None,
            rest=self.rest,
        )  # fmt: skip
        if cached_rows:
            self.reference_cache.put(batch, reference)
        return reference

    def patched_end_logits(self, batch: ContrastBatch, reference: Reference) -> Float[Tensor, "batch k"]:
        """END logits of the base run with α-mixed heads: the answer pair, or the whole vocabulary."""
        return self.folded_end_logits(batch, reference, self.combination)[0]

    def folded_end_logits(
        self, batch: ContrastBatch, reference: Reference, combination: LearnedFamily | StackedCombination
    ) -> Float[Tensor, "variants batch k"]:
        """The one patched forward: END logits of every variant of `combination` (this module's, or the stack of
        all members': row k * batch + b is member k, prompt b)."""
        vocab_index = None if self.objective.full_vocab else batch.answer_tokens
        return notion_end_logits(self.frozen, batch, reference, combination, self.rest, vocab_index, self.max_rows)

    def loss_terms(self, batch: ContrastBatch, reference: Reference, global_batch: bool = False) -> dict[str, Tensor]:
        """The named parts of the loss on `batch`, and the patched answer logits (the whole of a step's model work).

        `global_batch`: the objective is that of the union of every DDP rank's `batch` (its statistics
        summed across ranks; see `objectives.across_ranks` for why the gradients then come out right), so
        N processes at batch B/N train as one at batch B. Training steps only: every rank must call it.
        """
        return self.terms_of(self.patched_end_logits(batch, reference), batch, reference, global_batch)

    def terms_of(
        self,
        end_logits: Float[Tensor, "batch k"],
        batch: ContrastBatch,
        reference: Reference,
        global_batch: bool = False,
    ) -> dict[str, Tensor]:
        """`loss_terms` from this combination's patched END logits (computed here, or in a batched forward of
        several members' combinations: `batched`)."""
        full_vocab = self.objective.full_vocab
        answer_logits = answer_values(batch.metric, end_logits, batch.answer_tokens) if full_vocab else end_logits
        statistics = self.objective.statistics(end_logits, answer_logits, reference)
        objective = self.objective.from_statistics(across_ranks(statistics) if global_batch else statistics)
        l1 = self.combination.penalty()
        return {"loss": objective + self.l1_weight() * l1, "objective": objective, "l1": l1,
                "answer_logits": answer_logits, "statistics": statistics}  # fmt: skip

    @torch.no_grad()
    def recovery_of(
        self, batch: ContrastBatch, alpha: Float[Tensor, "*variants layer head"]
    ) -> Float[Tensor, "*variants"]:
        """Recovery on `batch` with α fixed to `alpha` (one or several variants; the learned α is untouched), against
        this module's reference runs (its `rest` and `ablation`)."""
        batch = batch.to(self.device)
        reference = self.reference(batch)
        return recovery_of(self.frozen, batch, alpha, self.config.optim.direction, self.rest, reference=reference)

    # ----------------------------------------------------------------------------------------------
    # training

    api_arguments: bool = False
    """Set by the Python API (`ioi_superpose.api`): messages then name its arguments, not the CLI flags."""

    def option_name(self, name: str) -> str:
        """How the user set the setting `name`: `--model.l1` on the command line, `l1` in the Python API."""
        return name if self.api_arguments else f"--model.{name}"

    def l1_weight(self) -> float:
        step = self.global_step if self.steps_trained is None else self.steps_trained
        warmup = self.config.optim.l1_warmup_steps
        ramp = 1.0 if warmup == 0 else min(1.0, step / warmup)
        return self.config.optim.l1 * ramp

    def trained_combination(self) -> LearnedFamily | StackedCombination:
        """What a training step patches with: this module's combination, or (K > 1) the stack of every member's."""
        if not self.peers:
            return self.combination
        return StackedCombination([member.combination for member in self.members], self.vectorise)

    def member_terms(
        self, batch: ContrastBatch, global_batch: bool = False
    ) -> tuple[Reference, list[dict[str, Tensor]]]:
        """The reference runs of a training batch and every member's `loss_terms`, from one folded forward."""
        reference = self.reference(batch, cached_rows=True)
        end_logits = self.folded_end_logits(batch, reference, self.trained_combination())
        return reference, [member.terms_of(end_logits[k], batch, reference, global_batch) for k, member in
                           enumerate(self.members)]  # fmt: skip

    def training_step(self, batch: ContrastBatch, batch_idx: int) -> Tensor:
        for member in self.peers:
            member.steps_trained = self.global_step  # the λ warm-up of each member reads this fit's step
        reference, member_terms = self.member_terms(batch, global_batch=True)
        for k, terms in enumerate(member_terms):
            if not torch.isfinite(terms["loss"]):
                whose = f"of batched member {k} " if self.peers else ""
                member = self.members[k]
                cause = non_finite_cause(member.config, member.combination.coefficients.detach(), reference,
                                         self.global_step, member.option_name)  # fmt: skip
                raise NonFiniteLossError(
                    f"The loss {whose}is {terms['loss'].item()} at training step {self.global_step} (objective "
                    f"{terms['objective'].item()}, L1 {terms['l1'].item()}). Training stopped"
                    + ("" if self.api_arguments else "; the checkpoints saved before this step are kept")
                    + f". Cause: {cause}"
                )
        if self.peers:
            total = sum(terms["loss"] for terms in member_terms)
            logs: dict[str, float | Tensor] = {"train/loss": total}
            for k, terms in enumerate(member_terms):
                logs[f"train/{k}/loss"] = terms["loss"]
                logs[f"train/{k}/recovery"] = reference.recovery(terms["answer_logits"].detach())
            self.log_dict(logs, batch_size=len(batch))
            return total
        (terms,) = member_terms
        self.log_dict(
            {
                "train/loss": terms["loss"],
                "train/objective": terms["objective"],
                "train/recovery": reference.recovery(terms["answer_logits"]),
                "train/l1": terms["l1"],
                "train/l0": float(self.combination.l0(self.config.optim.l0_threshold)),
                "train/l1_weight": self.l1_weight(),
            },
            batch_size=len(batch),
        )
        return terms["loss"]

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        for member in self.members:
            member.combination.project_()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # One group per member: Adam is element-wise, so this is K independent optimisers with their own lr.
        return torch.optim.Adam(
            [{"params": list(member.combination.parameters()), "lr": member.config.optim.lr} for member in self.members]
        )

    # ----------------------------------------------------------------------------------------------
    # evaluation

    def _evaluate(self, batch: ContrastBatch, metrics: MetricCollection) -> None:
        reference = self.reference(batch)
        terms = self.loss_terms(batch, reference)
        clean, corrupted = reference.clean_and_corrupted()
        patched = terms["answer_logits"]
        weights, metric = batch.answer_weights, batch.metric
        metrics["recovery"].update(patched, clean, corrupted, weights, metric)
        metrics["logit_diff"].update(patched, weights, metric)
        metrics["clean_logit_diff"].update(clean, weights, metric)
        metrics["corrupted_logit_diff"].update(corrupted, weights, metric)
        metrics["accuracy"].update(patched, weights, metric)
        metrics["clean_accuracy"].update(clean, weights, metric)
        metrics["loss"].update(terms["statistics"], self.l1_weight() * terms["l1"].detach(), len(batch))
        # Logged as metric objects: reduced (summed states) once per epoch, so DDP ranks with unequal
        # numbers of batches neither hang nor double-count.
        self.log_dict(metrics, batch_size=len(batch), add_dataloader_idx=False)

    def validation_step(self, batch: ContrastBatch, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics)

    def test_step(self, batch: ContrastBatch, batch_idx: int, dataloader_idx: int = 0) -> None:
        names = list(self.test_metrics)
        if dataloader_idx >= len(names):
            raise ConfigError(
                f"test dataloader {dataloader_idx} has no metrics: the module was built for test sets {names}."
            )
        self._evaluate(batch, self.test_metrics[names[dataloader_idx]])


def check_batchable(systems: Sequence[HeadSuperposition]) -> None:
    """Members must share the model and every setting outside `BATCHABLE`."""
    first = systems[0]
    # The rotation's temperature schedule and report, the circuit criteria and the scrub are written for single runs.
    if not first.combination.units_are_heads or first.config.prune.circuit_criteria or first.config.prune.scrub:
        raise ConfigError(
            "--model.combination rotation, --model.circuit_criteria and --model.scrub are not supported in a batched "
            "fit yet: train these points one at a time (--batch_variants 1)."
        )
    for k, system in enumerate(systems[1:], start=1):
        if system.frozen is not first.frozen and describe_model(system.frozen) != describe_model(first.frozen):
            raise ConfigError(
                f"batched member {k} holds another model ({describe_model(system.frozen)} vs "
                f"{describe_model(first.frozen)}); build every member on the same one."
            )
        differences = [
            f"{key}: {value!r} vs {theirs.get(key)!r}"
            for mine, theirs in [(first.config.settings(), system.config.settings())]
            for key, value in mine.items()
            if key not in BATCHABLE and value != theirs.get(key)
        ]
        if differences:
            raise ConfigError(
                f"batched member {k} differs from member 0 in settings that cannot be batched ("
                + "; ".join(differences)
                + f"). Only {list(BATCHABLE)} may differ; train the others in separate groups."
            )


def superposition_module(**settings: Any) -> HeadSuperposition:
    """The LightningModule of these settings: what `--model` builds (LightningCLI reads this function's signature
    and documentation, both generated from `fitting.settings.flat_settings`)."""
    return HeadSuperposition(**settings)


_PRELOADED = inspect.Parameter("preloaded_model", inspect.Parameter.KEYWORD_ONLY, default=None,
                               annotation=Optional[HookedTransformer])  # noqa: UP045 (jsonargparse reads it)
superposition_module.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [setting.parameter() for setting in flat_settings()] + [_PRELOADED], return_annotation=HeadSuperposition
)
superposition_module.__doc__ = (
    f"{superposition_module.__doc__}\n\n{settings_doc(flat_settings())}\n    preloaded_model: Python API only: an "
    "already loaded HookedTransformer, used instead of loading `model_name`.\n"
)

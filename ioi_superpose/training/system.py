"""The LightningModule: a frozen model, a learnable head combination, loss = objective + λ·‖α‖₁."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from jaxtyping import Float
from torch import Tensor, nn
from torchmetrics import MetricCollection

from ioi_superpose.combinations import LearnedFamily, batch_roles
from ioi_superpose.combinations.stacked import StackedCombination
from ioi_superpose.console import LOG
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.engine.rest import Rest, run_tokens, with_rest
from ioi_superpose.engine.runs import (
    BaseRun,
    Direction,
    Reference,
    base_and_source,
    patched_end_logits,
    recovery_of,
    reference_runs,
)
from ioi_superpose.errors import ConfigError, NonFiniteLossError
from ioi_superpose.models import HookedTransformer, describe_model, load_frozen_model
from ioi_superpose.training.cache import ReferenceCache
from ioi_superpose.training.config import BATCHABLE, IN_DISTRIBUTION, CacheDevice, CacheDType, SuperpositionConfig
from ioi_superpose.training.metrics import IOAccuracy, MeanLogitDiff, NormalisedRecovery, ObjectiveLoss
from ioi_superpose.training.non_finite import non_finite_cause
from ioi_superpose.training.objectives import OBJECTIVES, Objective, ObjectiveName, across_ranks
from ioi_superpose.training.pruning import PruneResult, minimal_set

if TYPE_CHECKING:
    from ioi_superpose.results.circuit import Ablation

HEAD_TYPE_PROMPTS = 64
"""`head_types`: the training prompts the head types are scored on (the detectors loop in Python per prompt)."""


def metric_prefix(stage: str, set_name: str) -> str:
    """`val/`, `test/` for the in-distribution set, `test/<set>/` for the others."""
    return f"{stage}/" if set_name == IN_DISTRIBUTION else f"{stage}/{set_name}/"


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

    def __init__(
        self,
        model_name: str = "gpt2-small",
        direction: Direction = "denoising",
        objective: ObjectiveName = "logit_diff",
        l1: float = 1e-3,
        l1_warmup_steps: int = 0,
        lr: float = 0.05,
        bounded: bool = True,
        init: float = 1.0,
        l0_threshold: float = 0.05,
        cache_source_activations: bool = True,
        cache_dtype: CacheDType = "float32",
        cache_device: CacheDevice = "same",
        cache_max_mb: float | None = None,
        test_sets: Sequence[str] = (IN_DISTRIBUTION,),
        combination: str = "scalar",
        temperature: float | None = None,
        gate_seed: int | None = None,
        mixing_target: int | None = None,
        rotation_layers: list[int] | None = None,
        rotation_temperature_start: float | None = None,
        rotation_temperature_end: float | None = None,
        rotation_target: float | None = None,
        rotation_joint: bool | None = None,
        circuit_criteria: bool = False,
        head_types: bool = False,
        ablation: str = "corrupted",
        prune_target: float | None = None,
        prune_prompts: int = 256,
        rest: Rest = "free",
        preloaded_model: HookedTransformer | None = None,
    ) -> None:
        """
        Args:
            model_name: TransformerLens model name (gpt2-small, …), a directory holding a Hugging Face
                GPT-2 checkpoint, or a toy checkpoint file (.pt) made by `ioi_superpose.cli.train_toy`.
            direction: `denoising` runs the corrupted prompts and patches in the clean ones' head outputs
                (finds heads sufficient for the behaviour); `noising` runs the clean prompts and patches
                in the corrupted ones (finds heads necessary for it).
            objective: `logit_diff` drives the normalised effect of the patch to 1 (for denoising: the
                recovery of the clean logit difference); `kl` matches the source run's next-token
                distribution at END, KL(source ‖ patched): the clean run's when denoising, the corrupted
                run's when noising; `maximize` pushes the effect as high as it goes (can exceed 1).
            l1: weight λ of the L1 penalty on α (sparsity). Must be >= 0.
            l1_warmup_steps: λ rises linearly from 0 to `l1` over this many steps (0: no warm-up).
                Training and validation losses use the same, current λ.
            lr: Adam learning rate for α. Must be > 0.
            bounded: keep α in [0, 1] (projected after each step); False lets α take any real value.
            init: initial value of every α (1.0 starts from the full source run and prunes).
            l0_threshold: a head counts towards L0 when |α| exceeds this.
            cache_source_activations: keep each training prompt's source head outputs after first use
                (the model is frozen, so they never change): one forward+backward per step instead of
                two forwards and a backward, at the cost of memory for n_layers×pos×d_model per prompt
                (590 KB for GPT-2 small at 16 tokens in float32). The run prints the cache's size once
                the first epoch has filled it.
            cache_dtype: dtype the cached activations are stored in (`bfloat16` / `float16` halve the
                memory; rows are cast back to the model's dtype when used, so training is close to, not
                exactly, float32's).
            cache_device: `same`: the cache lives where the model does; `cpu`: in host memory (rows are
                copied to the model's device at each step).
            cache_max_mb: at most this many MB of cached activations (None: no cap). Rows beyond it are
                not cached: their batches are recomputed, with the same result, and the run says so once.
            test_sets: names of the test dataloaders, in order (the CLI links them from the datamodule).
            combination: the family of the learned combination (`ioi_superpose.combinations`):
                `scalar` α[layer, head] at all positions (L1); `per_position` α[layer, head, role] with roles
                IO, S1, S1+1, S2, END, other (IOI batches; other tasks only END/other) (L1); `hard_concrete`
                a stochastic L0 gate per head (expected-L0 penalty, deterministic gates in evaluation);
                `mixing` a map M[layer, head, source_layer, source_head] across heads: a head's patch adds
                M-weighted z differences of the heads of its own and earlier layers (`combinations/mixing.py`;
                L1; identity init = `scalar`); `rotation` a learned orthogonal basis of each layer's concatenated
                z with a sigmoid mask (boundless DAS, `combinations/rotation.py`; penalty Σ mask). `l1` weighs each
                family's own penalty.
            temperature: hard_concrete only: the temperature β of the gates (null: 2/3, Louizos et al. 2018).
            gate_seed: hard_concrete only: seed of the gates' own noise generator (null: 0).
            mixing_target: mixing only: patch only this layer's heads, each receiving from every head of
                this and earlier layers ("all the heads in one layer"; init diag(init) on that layer).
                None: every layer receives from itself and all earlier layers.
            rotation_layers: rotation only: the layers that get a learned rotation R and mask (null: all).
            rotation_temperature_start: rotation only: the mask's temperature at the start of the fit (null: 1).
            rotation_temperature_end: rotation only: its temperature at the end (null: 0.05), annealed
                geometrically over the fit's optimiser steps, as boundless DAS anneals its boundaries'.
            rotation_target: rotation only: after fit, the number of rotated dimensions needed is the smallest
                k whose hard mask on the top-k dimensions reaches this effect (null: 0.9) on the first
                `prune_prompts` training prompts; in summary.json.
            rotation_joint: rotation only: one R and mask over the concatenated z of all `rotation_layers` (null:
                false, one per layer), patched from fixed activations: every selected layer's z is set from the
                unpatched base and source runs, so a later selected layer does not recompute from the earlier
                one's patch (the causal caveat: `combinations/rotation_joint.py`). Needs rest free.
            circuit_criteria: after fit (and pruning), score the learned head set (the heads of the combination's
                [layer, head] view above `l0_threshold`) with the IOI paper's faithfulness, completeness and
                minimality under every ablation (`ioi_superpose.results.circuit`) on the first `prune_prompts`
                training prompts; in summary.json under `circuit`. Not for `rotation` (its units are directions).
            head_types: after fit (and pruning), score every head's type (previous-token, duplicate-token,
                induction, copying, attention from END to IO/S1/S2: `ioi_superpose.results.head_types`) on the first
                `HEAD_TYPE_PROMPTS` (64) of the first `prune_prompts` training prompts, and list the learned heads
                (the [layer, head] view above `l0_threshold`); in summary.json under `head_types`. IOI prompts only
                (other prompts: the reason is recorded).
            ablation: the source of a noising patch (`ioi_superpose.results.circuit`): `corrupted` (the paired
                corrupted prompt, default), `resample` (another clean prompt of the batch, a seeded derangement,
                aligned at END), `mean` (the batch's mean z per position role), `zero`. The reference "corrupted"
                run is then the clean prompts with every head so ablated (recovery 0), the intact model
                recovery 1. Noising only.
            prune_target: after fit, shrink the support to a minimal set (`ioi_superpose.training.pruning`): drop
                units in blocks (with back-off) while the effect on the training prompts stays >= this (denoising:
                recovery >= R; noising: recovery <= 1 - R), then a 1-minimality pass. Kept units get weight 1.
                A target the learned support misses leaves α as learned (a warning; `reached: false`). None: no
                pruning.
            prune_prompts: training prompts (the first ones of the training loader) the pruning reads.
            rest: what the heads outside the set do (`ioi_superpose.engine.rest`): `free` (a cut: the base run with
                the set's z moved towards the source run, everything else recomputes) or `frozen` (a circuit,
                as ACDC / subnetwork probing / Edge Pruning: the source run with every head's z at
                z_base + α (z_current − z_base), so α = 0 freezes a head at its base-run value). Training,
                evaluation and the minimal-set step all use it.
            preloaded_model: Python API only: an already loaded HookedTransformer, used instead of
                loading `model_name`.
        """
        super().__init__()
        # Every check is the config's (`training/config.py`): errors name the field; the CLIs rename it to the flag.
        self.config = SuperpositionConfig.from_settings(
            model_name=model_name, direction=direction, objective=objective, l1=l1, l1_warmup_steps=l1_warmup_steps,
            lr=lr, bounded=bounded, init=init, l0_threshold=l0_threshold,
            cache_source_activations=cache_source_activations, cache_dtype=cache_dtype, cache_device=cache_device,
            cache_max_mb=cache_max_mb, test_sets=test_sets, combination=combination, temperature=temperature,
            gate_seed=gate_seed, mixing_target=mixing_target, prune_target=prune_target, prune_prompts=prune_prompts,
            rotation_layers=None if rotation_layers is None else tuple(rotation_layers),
            rotation_temperature_start=rotation_temperature_start, rotation_temperature_end=rotation_temperature_end,
            rotation_target=rotation_target, rotation_joint=rotation_joint, circuit_criteria=circuit_criteria,
            head_types=head_types,
            ablation=ablation, rest=rest,
        )  # fmt: skip
        self.save_hyperparameters(ignore=["preloaded_model"])
        model = preloaded_model if preloaded_model is not None else load_frozen_model(model_name)
        # Deliberately not a submodule: the frozen weights are never saved in our checkpoints (they
        # hold α; the model is reloaded from `model_name`) nor wrapped or synchronised by DDP.
        # `_apply` moves it wherever the module goes.
        self.use_frozen_model(model)
        self.combination: LearnedFamily = self.config.family.build(model.cfg.n_layers, model.cfg.n_heads,
                                                                   model.cfg.d_head)  # fmt: skip
        self.circuit_result: dict | None = None
        """circuit_criteria only: {ablation: the criteria (`circuit.CircuitScores.to_dict`) or {"error": why}}."""
        self.rotation_result: dict | None = None
        """rotation only: the dimension count and head loadings after fit (`RotationCombination.analyse`)."""
        self.head_types_result: dict | None = None
        """head_types only: the head-type scores after fit (`score_head_types_`)."""
        self.peers = nn.ModuleList()
        """The other members of a batched fit (`batched`); empty for a run of its own (K = 1)."""
        self.max_rows: int | None = None
        self.vectorise: bool | None = None
        self.prune_result: PruneResult | None = None
        """The minimal-set step's result after fit (when `prune_target` is set)."""
        self.steps_trained: int | None = None
        """Optimiser steps this combination took in its last fit, for every member; a peer's λ warm-up reads it
        (set by the lead each step) instead of its own trainer's step count. None: during its own fit."""
        self.objective = OBJECTIVES[objective]()
        cache = self.config.cache
        self.reference_cache = ReferenceCache(cache_source_activations, cache.dtype, cache.device, cache.max_bytes)
        self._cache_described = False
        self.val_metrics = contrast_metrics(metric_prefix("val", IN_DISTRIBUTION), self.objective)
        self.test_metrics = nn.ModuleDict(
            {name: contrast_metrics(metric_prefix("test", name), self.objective) for name in test_sets}
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
        """Every member's step count, then on the first `prune_prompts` training prompts: for `rotation` the
        dimension count and head loadings of the learned mask, the minimal-set step (`prune_target`), and the
        circuit criteria of the resulting head set (`circuit_criteria`)."""
        for member in self.members:
            member.steps_trained = self.global_step
        if self.trainer.interrupted:
            return
        for member in self.members:
            batches = [batch.to(member.device) for batch in pruning_batches(self.trainer, member.hparams.prune_prompts)]
            if member.hparams.combination == "rotation":
                member.analyse_rotation_(batches)
            if member.hparams.prune_target is not None:
                member.prune_(batches)
            if member.hparams.circuit_criteria or member.hparams.get("head_types", False):
                splits = getattr(self.trainer.datamodule, "splits", None)  # one batch of the first prune_prompts rows
                prompts = (splits["train"][: member.hparams.prune_prompts].trimmed() if splits is not None
                           else batches[0])  # fmt: skip
                if member.hparams.circuit_criteria:
                    member.score_circuit_(prompts)
                if member.hparams.get("head_types", False):
                    member.score_head_types_(prompts[:HEAD_TYPE_PROMPTS].trimmed())

    @torch.no_grad()
    def score_circuit_(self, prompts: ContrastBatch) -> dict:
        """The circuit criteria of the learned head set on `prompts`, under every ablation
        (`ioi_superpose.results.circuit`); an ablation the prompts cannot support (resample with a single
        prompt) is recorded with its reason."""
        from ioi_superpose.results.circuit import ABLATIONS, circuit_scores  # the criteria need the whole engine

        mask = self.combination.head_coefficients().abs() > self.hparams.l0_threshold
        heads = [tuple(int(i) for i in head) for head in mask.nonzero().tolist()]
        result: dict = {}
        for ablation in ABLATIONS:
            try:
                result[ablation] = circuit_scores(self.frozen, heads, prompts.to(self.device), ablation).to_dict()
            except ConfigError as error:
                result[ablation] = {"error": str(error)}
        self.circuit_result = result
        return result

    @torch.no_grad()
    def score_head_types_(self, prompts: ContrastBatch) -> dict:
        """Every head's type scores on `prompts` (`ioi_superpose.results.head_types`), with the learned heads listed;
        prompts without IOI roles are recorded with the reason."""
        from ioi_superpose.results.head_types import head_types  # TransformerLens's head detector

        mask = self.combination.head_coefficients().abs() > self.hparams.l0_threshold
        result: dict = {"prompts": len(prompts), "heads": mask.nonzero().tolist()}
        try:
            scores = head_types(self.frozen, prompts.to(self.device))  # type: ignore[arg-type]
            result["scores"] = {name: [[round(float(v), 4) for v in row] for row in value.tolist()]
                                for name, value in scores.items()}  # fmt: skip
        except ConfigError as error:
            result["error"] = str(error)
        self.head_types_result = result
        return result

    @torch.no_grad()
    def analyse_rotation_(self, batches: Sequence[ContrastBatch]) -> dict:
        """`rotation`'s dimension count and head loadings on `batches` (`ioi_superpose.combinations.rotation`)."""
        was_training = self.combination.training
        self.combination.eval()
        self.rotation_result = self.combination.analyse(  # type: ignore[operator]
            self.frozen, [batch.to(self.device) for batch in batches], self.hparams.direction,
            float(self.config.family.rotation("rotation_target")),
        )  # fmt: skip
        self.combination.train(was_training)
        return self.rotation_result

    @torch.no_grad()
    def prune_(self, batches: Sequence[ContrastBatch]) -> PruneResult:
        """Shrink the combination to a minimal set on `batches` (see `ioi_superpose.training.pruning`)."""
        was_training = self.combination.training
        self.combination.eval()
        result = minimal_set(self.frozen, batches, self.hparams.direction, self.combination,
                             float(self.hparams.prune_target), self.hparams.l0_threshold, rest=self.rest)  # fmt: skip
        if result.reached:
            self.combination.set_mask_(result.mask)
        else:  # the learned weights stay: a 0/1 set that misses the target must not replace them
            warnings.warn(
                f"The minimal-set step did not reach {self.option_name('prune_target')} {result.target}: the "
                f"binarised support ({len(result.support)} units above {self.option_name('l0_threshold')}) has "
                f"effect {result.start_effect:.4f} (best seen {result.best_effect:.4f}). The learned weights are "
                "kept unchanged; summary.json's prune section records reached: false. Lower the target, or train "
                "closer to 0/1 weights.",
                stacklevel=2,
            )
        self.combination.train(was_training)
        self.prune_result = result
        return result

    # ----------------------------------------------------------------------------------------------
    # runs

    def base_and_source_tokens(self, batch: ContrastBatch) -> tuple[Tensor, Tensor]:
        """(base, source) tokens for this direction."""
        return base_and_source(batch.clean_tokens, batch.corrupted_tokens, self.hparams.direction)

    @property
    def rest(self) -> Rest:
        return self.hparams.get("rest", "free")  # checkpoints from before `rest` existed: a cut

    @property
    def ablation(self) -> Ablation:
        return self.hparams.get("ablation", "corrupted")  # checkpoints from before `ablation`: the paired prompt

    def run_tokens(self, batch: ContrastBatch) -> Tensor:
        """The tokens a patched forward runs on: base for a cut, source for a circuit (`ioi_superpose.engine.rest`)."""
        return run_tokens(*self.base_and_source_tokens(batch), self.rest)

    @torch.no_grad()
    def reference(self, batch: ContrastBatch, cached_rows: bool = False) -> Reference:
        """The unpatched source and base runs for `batch` (no grad).

        `cached_rows`: `batch` holds rows of the training set, whose per-prompt results are cached by
        `batch.index`. Only training steps set it: rows of any other set would collide with those keys.
        """
        cached = self.reference_cache.get(batch, self.hparams.direction) if cached_rows else None
        # (The cache's keys are prompts, its z the recorded run's: one `rest` per module, so never mixed.)
        if cached is not None:
            return cached
        if self.ablation != "corrupted":
            from ioi_superpose.results.circuit import ablated_reference  # the ablations need the whole engine

            reference = ablated_reference(self.frozen, batch, self.ablation, self.objective.full_vocab)
            if cached_rows:
                self.reference_cache.put(batch, reference)
            return reference
        reference = reference_runs(
            self.frozen, batch.clean_tokens, batch.corrupted_tokens, batch.end_pos, batch.answer_tokens,
            self.hparams.direction, source_log_probs=self.objective.full_vocab,
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
        base = BaseRun.prepare(self.frozen, self.run_tokens(batch), prefixes=False)
        vocab_index = None if self.objective.full_vocab else batch.answer_tokens
        max_rows = combination.n_variants * len(batch) if self.max_rows is None else self.max_rows
        return patched_end_logits(
            base, reference.source_z, with_rest(combination, self.rest), batch.end_pos, vocab_index,
            roles=batch_roles(batch), max_rows=max_rows,
        )  # fmt: skip

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
        answer_logits = end_logits.gather(-1, batch.answer_tokens) if self.objective.full_vocab else end_logits
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
        return recovery_of(self.frozen, batch, alpha, self.hparams.direction, self.rest, reference=reference)

    # ----------------------------------------------------------------------------------------------
    # training

    api_arguments: bool = False
    """Set by the Python API (`ioi_superpose.api`): messages then name its arguments, not the CLI flags."""

    def option_name(self, name: str) -> str:
        """How the user set the setting `name`: `--model.l1` on the command line, `l1` in the Python API."""
        return name if self.api_arguments else f"--model.{name}"

    def l1_weight(self) -> float:
        step = self.global_step if self.steps_trained is None else self.steps_trained
        warmup = self.hparams.l1_warmup_steps
        ramp = 1.0 if warmup == 0 else min(1.0, step / warmup)
        return self.hparams.l1 * ramp

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
                cause = non_finite_cause(member.hparams, member.combination.coefficients.detach(), reference,
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
                "train/l0": float(self.combination.l0(self.hparams.l0_threshold)),
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
            [{"params": list(member.combination.parameters()), "lr": member.hparams.lr} for member in self.members]
        )

    # ----------------------------------------------------------------------------------------------
    # evaluation

    def _evaluate(self, batch: ContrastBatch, metrics: MetricCollection) -> None:
        reference = self.reference(batch)
        terms = self.loss_terms(batch, reference)
        clean, corrupted = reference.clean_and_corrupted()
        patched = terms["answer_logits"]
        metrics["recovery"].update(patched, clean, corrupted)
        metrics["logit_diff"].update(patched)
        metrics["clean_logit_diff"].update(clean)
        metrics["corrupted_logit_diff"].update(corrupted)
        metrics["accuracy"].update(patched)
        metrics["clean_accuracy"].update(clean)
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


def pruning_batches(trainer: L.Trainer, n_prompts: int) -> list[ContrastBatch]:
    """The first `n_prompts` training prompts of `trainer`'s fit, in batches: what the minimal-set step reads."""
    splits = getattr(trainer.datamodule, "splits", None)
    if splits is not None:
        # The same prompts on every rank (not the rank's shard): every DDP process prunes alike.
        prompts = splits["train"][:n_prompts]
        size = trainer.datamodule.hparams.batch_size
        return [prompts[start : start + size].trimmed() for start in range(0, len(prompts), size)]
    batches, rows = [], 0  # the API: one process, one full-batch loader
    for batch in trainer.train_dataloader:
        batches.append(batch)
        rows += len(batch)
        if rows >= n_prompts:
            break
    return batches


def check_batchable(systems: Sequence[HeadSuperposition]) -> None:
    """Members must share the model and every setting outside `BATCHABLE`."""
    first = systems[0]
    # The rotation's temperature schedule and report, and the circuit criteria, are written for single runs.
    if first.hparams.get("combination") == "rotation" or first.hparams.get("circuit_criteria"):
        raise ConfigError(
            "--model.combination rotation and --model.circuit_criteria are not supported in a batched fit yet: "
            "train these points one at a time (--batch_variants 1)."
        )
    for k, system in enumerate(systems[1:], start=1):
        if system.frozen is not first.frozen and describe_model(system.frozen) != describe_model(first.frozen):
            raise ConfigError(
                f"batched member {k} holds another model ({describe_model(system.frozen)} vs "
                f"{describe_model(first.frozen)}); build every member on the same one."
            )
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

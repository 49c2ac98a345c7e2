"""One call for notebooks: learn a head combination on given prompts with the same LightningModule, and
score fixed ones (`recovery_of`, from the engine)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from jaxtyping import Int
from torch import Tensor

from ioi_superpose.data.batch import ContrastBatch, PromptDataset, collate
from ioi_superpose.engine.runs import Direction, check_token_ids, logit_diff, recovery_of
from ioi_superpose.errors import ConfigError, SettingError
from ioi_superpose.models import HookedTransformer, freeze
from ioi_superpose.results.summary import top_heads
from ioi_superpose.training.config import BATCHABLE
from ioi_superpose.training.objectives import ObjectiveName
from ioi_superpose.training.system import HeadSuperposition

__all__ = ["LearnedCombination", "evaluate_combination", "learn_combination", "learn_combinations", "recovery_of"]


@dataclass
class LearnedCombination:
    coefficients: Tensor
    """The learned weights in the family's shape: [n_layers, n_heads] (scalar; hard_concrete: the
    deterministic gates), [n_layers, n_heads, role] (per_position, roles `combinations.ROLES`) or
    [n_layers, n_heads, source_layer, source_head] (mixing)."""
    recovery: float
    """(patched − corrupted) / (clean − corrupted) of the mean logit difference on the given prompts."""
    clean_logit_diff: float
    corrupted_logit_diff: float
    patched_logit_diff: float
    l0: int
    """Units (heads, or (head, role) pairs) with |weight| above `l0_threshold`."""
    support: list[tuple[int, ...]]
    """Those units: (layer, head), (layer, head, role index) for per_position, (layer, head, source_layer,
    source_head) for mixing."""
    combination: str = "scalar"
    prune: dict | None = None
    """The minimal-set step's record (`pruning.PruneResult.to_dict`) when `prune_target` was given."""

    def top_heads(self, k: int = 10) -> list[dict[str, float | int]]:
        """The k heads of largest |α|, as {"layer", "head", "alpha"}."""
        return top_heads(self.coefficients, k=k)


def learn_combination(
    model: HookedTransformer,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupted_tokens: Int[Tensor, "batch pos"],
    answer_tokens: Int[Tensor, "batch 2"],
    objective: ObjectiveName = "logit_diff",
    direction: Direction = "denoising",
    l1: float = 1e-3,
    steps: int = 200,
    lr: float = 0.05,
    bounded: bool = True,
    seed: int = 0,
    init: float = 1.0,
    l0_threshold: float = 0.05,
    l1_warmup_steps: int = 0,
    combination: str = "scalar",
    prune_target: float | None = None,
    temperature: float | None = None,
    mixing_target: int | None = None,
) -> LearnedCombination:
    """Learn α[layer, head] on these prompts (full batch, `steps` Adam steps) and report its recovery.

    `answer_tokens` are (correct, incorrect) for the clean prompts, read at the last position. The
    model is frozen in place (eval mode, no gradients) — it is never trained. `combination` picks the
    family (`scalar`, `per_position` — here only the END/other roles, the prompts being plain token
    rows — `hard_concrete`, gates seeded by `seed`, or `mixing`, a map across heads, with `mixing_target`);
    `prune_target` R ends with the minimal-set step on
    these prompts (kept units at weight 1; effect ≥ R, see `ioi_superpose.training.pruning`). `temperature`
    (hard_concrete, default 2/3) and `mixing_target` (mixing) belong to one family each; given with another, they
    are refused.
    """
    prompts, loader = _prompts(model, clean_tokens, corrupted_tokens, answer_tokens, steps, seed)
    gate_seed = seed if combination == "hard_concrete" else None  # `seed` seeds the gates of hard_concrete only
    system = _system(model, len(prompts), API_NAMES, objective=objective, direction=direction, l1=l1,
                     l1_warmup_steps=l1_warmup_steps, lr=lr, bounded=bounded, init=init, l0_threshold=l0_threshold,
                     combination=combination, temperature=temperature, gate_seed=gate_seed,
                     mixing_target=mixing_target, prune_target=prune_target)  # fmt: skip
    _trainer(model, steps).fit(system, train_dataloaders=loader)
    return evaluate_combination(system.to(_device(model)), prompts)


def learn_combinations(
    model: HookedTransformer,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupted_tokens: Int[Tensor, "batch pos"],
    answer_tokens: Int[Tensor, "batch 2"],
    members: Sequence[Mapping[str, float]],
    objective: ObjectiveName = "logit_diff",
    direction: Direction = "denoising",
    steps: int = 200,
    bounded: bool = True,
    seed: int = 0,
    l0_threshold: float = 0.05,
    l1_warmup_steps: int = 0,
    combination: str = "scalar",
    prune_target: float | None = None,
    temperature: float | None = None,
    max_rows: int | None = None,
) -> list[LearnedCombination]:
    """`learn_combination` for K settings at once, in one batched forward of K × batch rows per step
    (`HeadSuperposition.batched`). `members`: K dicts of `l1`, `init`, `lr`, `gate_seed` (defaults: 1e-3,
    1.0, 0.05, `seed`); member k's result equals `learn_combination(..., **members[k])` (with
    `seed=gate_seed`) up to float rounding. `max_rows` caps the rows of one forward (None: all)."""
    if not members:
        raise ConfigError("members must hold at least one member's settings (a dict of l1, init, lr, gate_seed).")
    for k, member in enumerate(members):
        unknown = sorted(set(member) - set(BATCHABLE))
        if unknown:
            raise ConfigError(f"members[{k}] sets {unknown}; a member may only set {list(BATCHABLE)}.")
    prompts, loader = _prompts(model, clean_tokens, corrupted_tokens, answer_tokens, steps, seed)
    shared = dict(objective=objective, direction=direction, l1_warmup_steps=l1_warmup_steps, bounded=bounded,
                  l0_threshold=l0_threshold, combination=combination, temperature=temperature,
                  prune_target=prune_target)  # fmt: skip
    defaults = {"l1": 1e-3, "init": 1.0, "lr": 0.05}
    if combination == "hard_concrete":
        defaults["gate_seed"] = seed  # `seed` seeds the gates of hard_concrete only
    systems = [
        _system(model, len(prompts), _member_names(k, member), **shared, **{**defaults, **member})
        for k, member in enumerate(members)
    ]
    _trainer(model, steps).fit(HeadSuperposition.batched(systems, max_rows=max_rows), train_dataloaders=loader)
    return [evaluate_combination(system.to(_device(model)), prompts) for system in systems]


def _device(model: HookedTransformer) -> torch.device:
    return next(model.parameters()).device


def _prompts(
    model: HookedTransformer,
    clean_tokens: Tensor,
    corrupted_tokens: Tensor,
    answer_tokens: Tensor,
    steps: int,
    seed: int,
) -> tuple[ContrastBatch, torch.utils.data.DataLoader]:
    """Checked prompts and their one full-batch loader; seeds and freezes as every API fit does."""
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}.")
    for name, tokens in (
        ("clean_tokens", clean_tokens),
        ("corrupted_tokens", corrupted_tokens),
        ("answer_tokens", answer_tokens),
    ):
        check_token_ids(model, tokens, name)
    prompts = ContrastBatch.from_tokens(clean_tokens.cpu(), corrupted_tokens.cpu(), answer_tokens.cpu())
    L.seed_everything(seed, verbose=False)
    freeze(model)
    loader = torch.utils.data.DataLoader(PromptDataset(prompts), batch_size=len(prompts), collate_fn=collate)
    return prompts, loader


API_NAMES: dict[str, str] = {"gate_seed": "seed"}
"""Settings `learn_combination` takes under another name than the config field (`training/config.py`)."""


def _member_names(k: int, member: Mapping[str, float]) -> Callable[[str], str]:
    """How `learn_combinations` names a setting in an error: `members[k]['l1']` when member k set it."""
    return lambda name: f"members[{k}][{name!r}]" if name in member else API_NAMES.get(name, name)


def _system(
    model: HookedTransformer, n_prompts: int, names: Mapping[str, str] | Callable[[str], str], **settings: Any
) -> HeadSuperposition:
    """The module of these settings; a `SettingError` names each setting as the API's caller passed it."""
    rename = names if callable(names) else (lambda name: names.get(name, name))
    try:
        return HeadSuperposition(
            model_name=model.cfg.model_name, prune_prompts=n_prompts, preloaded_model=model, **settings
        )
    except SettingError as error:
        raise error.named(rename) from None


def _trainer(model: HookedTransformer, steps: int) -> L.Trainer:
    device = _device(model)
    return L.Trainer(
        max_steps=steps,
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=[device.index or 0] if device.type == "cuda" else 1,  # the model's own GPU
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
    )


@torch.no_grad()
def evaluate_combination(system: HeadSuperposition, prompts: ContrastBatch) -> LearnedCombination:
    """Recovery and logit differences of `system`'s current α on `prompts` (one batch)."""
    system.eval()
    prompts = prompts.to(system.device)
    reference = system.reference(prompts)
    patched = system.loss_terms(prompts, reference)["answer_logits"]
    clean, corrupted = reference.clean_and_corrupted()
    threshold = system.hparams.l0_threshold
    return LearnedCombination(
        coefficients=system.combination.coefficients.detach().cpu().clone(),
        recovery=float(reference.recovery(patched)),
        clean_logit_diff=float(logit_diff(clean).mean()),
        corrupted_logit_diff=float(logit_diff(corrupted).mean()),
        patched_logit_diff=float(logit_diff(patched).mean()),
        l0=system.combination.l0(threshold),
        support=system.combination.support(threshold),
        combination=system.hparams.get("combination", "scalar"),
        prune=None if system.prune_result is None else system.prune_result.to_dict(),
    )

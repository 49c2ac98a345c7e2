"""Ablations: the value an ablated head's z takes, and the reference runs of a noising patch with that source.

`ABLATIONS` (`--model.ablation`, the ablation kinds of the circuit criteria, `analyses.circuit`):

- `corrupted`: the head's z on the row's paired corrupted prompt (the patch source of every paired run);
- `resample`: its z on *another* clean prompt of the batch: row b takes row π(b)'s, π a derangement (no row keeps
  its own prompt) drawn with `seed` — a prompt of the same distribution whose names are unrelated to row b's. The two
  prompts are aligned at END (position p of row b reads position p − END_b + END_π(b), clamped at 0): index for index
  when they have one length, and END always reads END;
- `mean`: the mean of its z over a reference set (default: the clean prompts themselves) per position role (IO, S1,
  S1+1, S2, END, other; `data.roles.position_roles`): every position takes the mean of its role;
- `zero`: zeros.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ioi_superpose.data.answer_metrics import answer_values
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.data.roles import ROLES, batch_roles
from ioi_superpose.engine.patch import HeadWeights
from ioi_superpose.engine.rest import Rest
from ioi_superpose.engine.runs import BaseRun, Reference, end_logits, head_z, patched_end_logits, reference_runs
from ioi_superpose.engine.vocabulary import Direction
from ioi_superpose.errors import ConfigError
from ioi_superpose.models import HookedTransformer

Ablation = Literal["corrupted", "resample", "mean", "zero"]
ABLATIONS: tuple[Ablation, ...] = get_args(Ablation)


def check_ablation(ablation: str, direction: str, rest: str) -> Ablation:
    """`ablation` if it is one of `ABLATIONS` and makes sense as the source of a patch in `direction` with `rest`
    (`engine/rest.py`): any ablation in a noising cut, only `corrupted` otherwise — denoising patches the clean
    run's z in (an ablation is what a *removed* head's z becomes; `OptimConfig` refuses it the same way), and a
    circuit (`rest="frozen"`) runs on the source prompt, which only `corrupted` has."""
    if ablation not in ABLATIONS:
        raise ConfigError(f"ablation must be one of {list(ABLATIONS)}, got {ablation!r}.")
    if ablation != "corrupted" and direction != "noising":
        raise ConfigError(
            f"ablation={ablation!r} replaces the source of a noising patch (what a removed head's z becomes); "
            f"direction={direction!r} patches the clean run's z into the corrupted run. Pass direction='noising', "
            "or ablation='corrupted'."
        )
    if ablation != "corrupted" and rest != "free":
        raise ConfigError(
            f"ablation={ablation!r} has no source tokens for rest={rest!r} (a circuit runs on the source prompt). "
            "Pass rest='free' (the set's complement ablated is the circuit question: engine/rest.py), or "
            "ablation='corrupted'."
        )
    return ablation  # type: ignore[return-value]


def derangement(n: int, seed: int) -> Tensor:
    """A seeded permutation of range(n) with no fixed point (n >= 2): a random cycle order, each row to the next."""
    if n < 2:
        raise ConfigError("the resample ablation needs at least 2 prompts (each row takes another row's prompt).")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    target = torch.empty(n, dtype=torch.long)
    target[order] = order.roll(-1)
    return target


def aligned_z(
    pool: Float[Tensor, "n pos head d_head"],
    sources: Int[Tensor, "rows head"],
    pool_end: Int[Tensor, " n"],
    row_end: Int[Tensor, " rows"],
) -> Float[Tensor, "rows pos head d_head"]:
    """Row r's head h takes the z of that head on prompt `sources[r, h]` of `pool`, aligned at END: position p reads
    the source's position p − row_end[r] + pool_end[source], clamped to [0, pos) — index for index when the prompts
    have one length, and END always reads END. The resample ablation's rule (`resampled`, every head of a row from one
    other prompt) and causal scrubbing's (`analyses.scrubbing`, each head from its own drawn prompt)."""
    pos, heads = pool.shape[1], sources.shape[1]
    device = pool.device
    sources, pool_end, row_end = sources.to(device), pool_end.to(device), row_end.to(device)
    shift = pool_end[sources] - row_end[:, None]  # [rows, head]
    position = (torch.arange(pos, device=device)[None, :, None] + shift[:, None, :]).clamp(0, pos - 1)
    return pool[sources[:, None, :], position, torch.arange(heads, device=device)[None, None, :]]


def resampled(
    z: Float[Tensor, "layer batch pos head d_head"], end_pos: Tensor, seed: int
) -> Float[Tensor, "layer batch pos head d_head"]:
    """Row b takes row π(b)'s z, aligned at END (see the module docstring)."""
    sources = derangement(z.shape[1], seed)[:, None].expand(-1, z.shape[3])  # every head of row b from row π(b)
    return torch.stack([aligned_z(layer_z, sources, end_pos, end_pos) for layer_z in z])


@torch.no_grad()
def ablation_values(
    model: HookedTransformer,
    prompts: ContrastBatch,
    ablation: Ablation,
    reference: ContrastBatch | None = None,
    seed: int = 0,
) -> Float[Tensor, "layer batch pos head d_head"]:
    """The z every head takes when ablated, for each clean prompt (see the module docstring)."""
    if ablation not in ABLATIONS:
        raise ConfigError(f"ablation must be one of {list(ABLATIONS)}, got {ablation!r}.")
    clean = prompts.clean_tokens
    if ablation == "corrupted":
        return head_z(model, prompts.corrupted_tokens)[0]
    if ablation == "zero":
        cfg = model.cfg
        return torch.zeros(cfg.n_layers, *clean.shape, cfg.n_heads, cfg.d_head, device=cfg.device)
    if ablation == "resample":
        return resampled(head_z(model, clean)[0], prompts.end_pos, seed)
    reference = prompts if reference is None else reference
    z_reference = head_z(model, reference.clean_tokens)[0]  # [layer, batch', pos', head, d_head]
    roles_reference = batch_roles(reference).to(z_reference.device)
    roles = batch_roles(prompts).to(z_reference.device)
    means = torch.zeros(len(ROLES), *z_reference.shape[:1], *z_reference.shape[3:], device=z_reference.device)
    for role in roles.unique().tolist():
        where = roles_reference == role
        if not where.any():
            raise ConfigError(
                f"ablation='mean': the reference prompts have no position of role {ROLES[role]!r} that the prompts "
                "have; give reference prompts of the same kind (an IOIBatch for IOI roles)."
            )
        means[role] = z_reference[:, where].mean(1)  # [layer, head, d_head]
    return means[roles].permute(2, 0, 1, 3, 4)  # [batch, pos, layer, …] -> [layer, batch, pos, head, d_head]


@torch.no_grad()
def ablated_reference(
    model: HookedTransformer, batch: ContrastBatch, ablation: Ablation, full_vocab: bool = False, seed: int = 0
) -> Reference:
    """The reference runs of a *noising* patch whose source is `ablation` (`--model.ablation`): base = the clean
    prompts, source z = the ablation's values for every head (computed on this batch: `mean` over its own prompts,
    `resample` within it), source run = the clean prompts with every head ablated so. Recovery then reads 1 for the
    intact model and 0 for every head ablated."""
    values = ablation_values(model, batch, ablation, seed=seed)
    cfg = model.cfg
    every_head = HeadWeights(torch.ones(1, cfg.n_layers, cfg.n_heads)).to(cfg.device)
    base = BaseRun.prepare(model, batch.clean_tokens, prefixes=False)
    source_logits = patched_end_logits(base, values, every_head, batch.end_pos, None)[0]  # [batch, vocab]
    return Reference(
        direction="noising",
        source_z=values,
        source_answer_logits=answer_values(batch.metric, source_logits, batch.answer_tokens),
        base_answer_logits=end_logits(model, batch.clean_tokens, batch.end_pos, batch.answer_tokens, batch.metric),
        source_log_probs=source_logits.log_softmax(-1) if full_vocab else None,
        answer_weights=batch.answer_weights,
        metric=batch.metric,
    )


def notion_reference(
    model: HookedTransformer,
    batch: ContrastBatch,
    direction: Direction,
    rest: Rest = "free",
    ablation: Ablation = "corrupted",
) -> Reference:
    """The reference runs a patch with this source (`ablation`) and notion (`rest`) is measured against: the paired
    prompts' (`reference_runs`), or a noising ablation's (`ablated_reference`); what `check_ablation` refuses is
    refused."""
    if check_ablation(ablation, direction, rest) != "corrupted":
        return ablated_reference(model, batch, ablation)
    return reference_runs(model, batch.clean_tokens, batch.corrupted_tokens, batch.end_pos, batch.answer_tokens,
                          direction, rest=rest, answer_weights=batch.answer_weights, metric=batch.metric)  # fmt: skip

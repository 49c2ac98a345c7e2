"""Is a head set a circuit? The IOI paper's criteria (Wang et al. 2022, §4) under four ablations.

**Behaviour** F(S): the mean logit difference (correct − incorrect answer at END) of the clean prompts when every
head *outside* the set S is ablated, i.e. its z replaced (all positions) by the ablation's value, and the heads in S
run normally (on whatever the ablated heads before them wrote: a knockout, not a path patch). F(M) is the intact
model (S = every head).

**Ablations** (the value an ablated head's z takes; `ABLATIONS`):

- `corrupted`: the head's z on the row's paired corrupted prompt (today's patch source);
- `resample`: its z on *another* clean prompt of the batch: row b takes row π(b)'s, π a derangement (no row keeps
  its own prompt) drawn with `seed` — a prompt of the same distribution whose names are unrelated to row b's. The two
  prompts are aligned at END (position p of row b reads position p − END_b + END_π(b), clamped at 0): index for index
  when they have one length, and END always reads END;
- `mean`: the mean of its z over a reference set (default: the clean prompts themselves) per position role (IO, S1,
  S1+1, S2, END, other; `combinations.position_roles`): every position takes the mean of its role;
- `zero`: zeros.

**Criteria** (for a set C of heads):

- faithfulness: F(C) against F(M) — `faithfulness` = F(C) / F(M), `faithfulness_gap` = |F(M) − F(C)|;
- completeness: for K ⊆ C, the incompleteness |F(C \\ K) − F(M \\ K)| (a complete circuit's remainder behaves like
  the model's when the same heads are removed); the worst K is searched greedily as in the IOI paper: from K = ∅,
  add the head of C that raises the score most, up to K = C; the largest score met and its K are reported;
- minimality: for each v ∈ C, max over K ⊆ C \\ {v} of |F(C \\ (K ∪ {v})) − F(C \\ K)| (how much v matters once K is
  gone), K searched greedily the same way; reported with the score relative to |F(C)|.

In a model whose heads add independent contributions to the logit difference (one attention layer, no layer norm),
the incompleteness of every K equals |F(M) − F(C)| and v's minimality score is |Δ_v|, the change ablating v alone
makes: `tests/test_circuit.py` builds such a model and checks both against hand-computed contributions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch
from jaxtyping import Float
from torch import Tensor

from ioi_superpose.combinations import ROLES, HeadWeights, batch_roles
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.engine.rest import Rest
from ioi_superpose.engine.runs import (
    BaseRun,
    Direction,
    Head,
    Reference,
    aligned_z,
    end_logits,
    head_z,
    logit_diff,
    patched_end_logits,
    reference_runs,
)
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
    answers = batch.answer_tokens.to(source_logits.device)
    return Reference(
        direction="noising",
        source_z=values,
        source_answer_logits=source_logits.gather(-1, answers),
        base_answer_logits=end_logits(model, batch.clean_tokens, batch.end_pos, batch.answer_tokens),
        source_log_probs=source_logits.log_softmax(-1) if full_vocab else None,
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
                          direction, rest=rest)  # fmt: skip


@dataclass
class CircuitScores:
    """The criteria of one head set under one ablation (see the module docstring)."""

    ablation: str
    heads: list[Head]
    model_logit_diff: float
    """F(M)."""
    circuit_logit_diff: float
    """F(C)."""
    faithfulness: float
    """F(C) / F(M)."""
    faithfulness_gap: float
    """|F(M) − F(C)|."""
    completeness: dict[str, Any]
    """{"score": the largest incompleteness met, "K": its K, "relative": score / |F(M)|, "trajectory": greedy steps}."""
    minimality: dict[str, dict[str, Any]]
    """Per head "l.h": {"score", "K", "relative": score / |F(C)|}."""

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items()} | {"heads": [list(h) for h in self.heads]}


class _Evaluator:
    """F(S) for many sets S at once: one folded, chunked run of the clean prompts per call."""

    def __init__(self, model: HookedTransformer, prompts: ContrastBatch, values: Tensor) -> None:
        self.model, self.prompts, self.values = model, prompts, values
        self.base = BaseRun.prepare(model, prompts.clean_tokens, prefixes=True)
        self.n_layers, self.n_heads = model.cfg.n_layers, model.cfg.n_heads

    def __call__(self, kept_sets: Sequence[frozenset[Head]]) -> list[float]:
        ablated = torch.ones(len(kept_sets), self.n_layers, self.n_heads)
        for row, kept in enumerate(kept_sets):
            for layer, head in kept:
                ablated[row, layer, head] = 0.0
        logits = patched_end_logits(self.base, self.values, HeadWeights(ablated).to(self.model.cfg.device),
                                    self.prompts.end_pos, self.prompts.answer_tokens)  # fmt: skip
        return logit_diff(logits).mean(-1).tolist()


def _greedy(candidates: Sequence[Head], score_of: Any) -> tuple[float, list[Head], list[dict[str, Any]]]:
    """Grow K one head at a time, each time adding the candidate that maximises `score_of` (a batch of K's to
    scores); the best score met (K = ∅ included), its K, and the trajectory."""
    k: list[Head] = []
    best_score, best_k = float(score_of([frozenset()])[0]), []
    trajectory = []
    remaining = list(candidates)
    while remaining:
        options = [frozenset(k + [head]) for head in remaining]
        scores = score_of(options)
        pick = max(range(len(remaining)), key=lambda i: scores[i])
        k.append(remaining.pop(pick))
        trajectory.append({"K": [list(h) for h in k], "score": round(float(scores[pick]), 5)})
        if scores[pick] > best_score:
            best_score, best_k = float(scores[pick]), list(k)
    return best_score, best_k, trajectory


@torch.no_grad()
def circuit_scores(
    model: HookedTransformer,
    heads: Sequence[Head],
    prompts: ContrastBatch,
    ablation: Ablation = "corrupted",
    reference: ContrastBatch | None = None,
    seed: int = 0,
) -> CircuitScores:
    """Faithfulness, completeness and minimality of `heads` on `prompts` under `ablation` (module docstring).

    `reference`: the mean ablation's reference prompts (default: `prompts`). `seed`: the resample ablation's
    derangement.
    """
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    circuit = [tuple(int(i) for i in head) for head in heads]
    bad = [h for h in circuit if not (0 <= h[0] < n_layers and 0 <= h[1] < n_heads)]
    if bad or len(set(circuit)) != len(circuit):
        raise ConfigError(
            f"heads must be distinct (layer, head) pairs of this {n_layers}×{n_heads} model; got {list(heads)}."
        )
    prompts = prompts.to(model.cfg.device)
    evaluate = _Evaluator(model, prompts, ablation_values(model, prompts, ablation, reference, seed))
    everything = frozenset((layer, head) for layer in range(n_layers) for head in range(n_heads))
    c = frozenset(circuit)
    f_model, f_circuit = evaluate([everything, c])

    def incompleteness(ks: Sequence[frozenset[Head]]) -> list[float]:
        values = evaluate([c - k for k in ks] + [everything - k for k in ks])
        return [abs(a - b) for a, b in zip(values[: len(ks)], values[len(ks) :])]

    score, worst_k, trajectory = _greedy(circuit, incompleteness)
    minimality = {}
    for v in circuit:

        def matters(ks: Sequence[frozenset[Head]], v: Head = v) -> list[float]:
            values = evaluate([c - k - {v} for k in ks] + [c - k for k in ks])
            return [abs(a - b) for a, b in zip(values[: len(ks)], values[len(ks) :])]

        v_score, v_k, _ = _greedy([h for h in circuit if h != v], matters)
        minimality[f"{v[0]}.{v[1]}"] = {"score": round(v_score, 5), "K": [list(h) for h in v_k],
                                        "relative": round(v_score / max(abs(f_circuit), 1e-9), 5)}  # fmt: skip
    return CircuitScores(
        ablation=ablation, heads=circuit, model_logit_diff=round(f_model, 5), circuit_logit_diff=round(f_circuit, 5),
        faithfulness=round(f_circuit / f_model, 5) if abs(f_model) > 1e-9 else float("nan"),
        faithfulness_gap=round(abs(f_model - f_circuit), 5),
        completeness={"score": round(score, 5), "K": [list(h) for h in worst_k],
                      "relative": round(score / max(abs(f_model), 1e-9), 5), "trajectory": trajectory},
        minimality=minimality,
    )  # fmt: skip


def all_ablations(
    model: HookedTransformer, heads: Sequence[Head], prompts: ContrastBatch, **kwargs: Any
) -> dict[str, CircuitScores]:
    """`circuit_scores` under every ablation kind."""
    return {ablation: circuit_scores(model, heads, prompts, ablation, **kwargs) for ablation in ABLATIONS}

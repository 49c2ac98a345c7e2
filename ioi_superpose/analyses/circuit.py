"""Is a head set a circuit? The IOI paper's criteria (Wang et al. 2022, §4) under four ablations.

**Behaviour** F(S): the mean logit difference (correct − incorrect answer at END) of the clean prompts when every
head *outside* the set S is ablated, i.e. its z replaced (all positions) by the ablation's value, and the heads in S
run normally (on whatever the ablated heads before them wrote: a knockout, not a path patch). F(M) is the intact
model (S = every head).

**Ablations** (the value an ablated head's z takes: corrupted, resample, mean, zero) are the engine's
(`ioi_superpose.engine.ablations`).

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
from typing import Any

import torch
from torch import Tensor

from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.engine.ablations import ABLATIONS, Ablation, ablation_values
from ioi_superpose.engine.metric import answer_metric
from ioi_superpose.engine.patch import HeadWeights
from ioi_superpose.engine.runs import BaseRun, patched_end_logits
from ioi_superpose.engine.vocabulary import Head
from ioi_superpose.errors import ConfigError
from ioi_superpose.models import HookedTransformer


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
        prompts = self.prompts
        logits = patched_end_logits(self.base, self.values, HeadWeights(ablated).to(self.model.cfg.device),
                                    prompts.end_pos, prompts.answer_tokens, metric=prompts.metric)  # fmt: skip
        return answer_metric(logits, self.prompts.answer_weights, self.prompts.metric).mean(-1).tolist()


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

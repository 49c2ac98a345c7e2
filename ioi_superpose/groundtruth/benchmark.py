"""Every head-finding method on every planted case, scored against the exhaustive ground truth.

Protocol (denoising, threshold 0.9): each case draws three disjoint prompt sets by seed — train (0),
dev (1), test (2), 32 prompts each. A method's hyperparameter (threshold t, k, λ) is chosen on the dev
prompts — fit/score on dev, pick the value with the best mean F1 to the nearest dev minimal set over all
cases — then the method is run on the train prompts with that value and scored on the test prompts:
precision and recall of its head set against the NEAREST minimal set of the test search (highest F1),
its L0 against the minimal L0, and the recovery of its patch on the test prompts (a head set: weight 1;
a learned combination without the minimal-set step: its own weights).

Methods: single-head activation patching thresholded at t (t ∈ 0.1, 0.3, 0.5 of the normalised effect);
attribution patching and direct logit attribution (score / max score ≥ t); path patching to the logits
(≥ t); uniform top-k by activation patching (k ∈ 1, 2, 3); attention-weighted top-k (heads attending
most from END to the case's source position, n/a where the case has no such target); each learned family
with λ ∈ {1e-3, 1e-2}, with and without the minimal-set step (prune target 0.9).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ioi_superpose.api import learn_combination
from ioi_superpose.baselines.scorers import SCORERS
from ioi_superpose.combinations import FAMILIES, PerPositionCombination, ScalarCombination
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.engine.runs import hook_name
from ioi_superpose.groundtruth.exhaustive import search_subsets, subset_effects
from ioi_superpose.groundtruth.planted import PlantedCase, all_cases
from ioi_superpose.training.pruning import minimal_set

THRESHOLD = 0.9
N_PROMPTS = 32
SEEDS = {"train": 0, "dev": 1, "test": 2}
SCORE_GRID = (0.1, 0.3, 0.5)
K_GRID = (1, 2, 3)
L1_GRID = (1e-3, 1e-2)
Heads = frozenset


def batch_of(prompts) -> ContrastBatch:
    return ContrastBatch.from_tokens(prompts.clean_tokens, prompts.corrupted_tokens, prompts.answer_tokens)


def nearest(heads: Heads, minimal_sets: list[list[tuple[int, int]]]) -> tuple[float, float, frozenset]:
    """(precision, recall) against the minimal set of highest F1 with `heads`."""
    best = (0.0, 0.0, frozenset())
    best_f1 = -1.0
    for m in minimal_sets:
        m = frozenset(m)
        hits = len(heads & m)
        p = hits / len(heads) if heads else 0.0
        r = hits / len(m)
        f1 = 0.0 if p + r == 0 else 2 * p * r / (p + r)
        if f1 > best_f1:
            best, best_f1 = (p, r, m), f1
    return best


def f1(heads: Heads, minimal_sets) -> float:
    p, r, _ = nearest(heads, minimal_sets)
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


class Scores:
    """Per-head scores of the score-based baselines on one prompt set (computed once, then thresholded)."""

    def __init__(self, case: PlantedCase, prompts) -> None:
        model = case.model
        n_layers = model.cfg.n_layers
        # The registry's scorers (`baselines/scorers.py`), as a run's baseline callbacks compute them.
        batch = batch_of(prompts)
        self.activation = SCORERS["activation_patching"](model, batch, "denoising")
        self.attribution = SCORERS["attribution_patching"](model, batch, "denoising")
        self.dla = SCORERS["direct_logit_attribution"](model, batch, "denoising")
        self.path = SCORERS["path_patching"](model, batch, "denoising")
        self.attention = None
        if case.attention_target is not None:
            names = [hook_name("pattern", layer) for layer in range(n_layers)]
            _, cache = model.run_with_cache(prompts.clean_tokens, names_filter=lambda n: n in names)
            self.attention = torch.stack([cache[n][:, :, -1, case.attention_target].mean(0) for n in names])


def above(score: Tensor, t: float) -> Heads:
    """Heads whose score / max |score| ≥ t (positive scores only)."""
    top = float(score.abs().max())
    if top == 0:
        return frozenset()
    return frozenset(tuple(h) for h in ((score / top) >= t).nonzero().tolist())


def top_k(score: Tensor, k: int) -> Heads:
    idx = score.flatten().topk(min(k, score.numel())).indices
    return frozenset((int(i) // score.shape[1], int(i) % score.shape[1]) for i in idx)


SCORE_METHODS: dict[str, tuple[Callable[[Scores, Any], Heads | None], tuple]] = {
    "activation patching (t)": (
        lambda s, t: frozenset(tuple(h) for h in (s.activation >= t).nonzero().tolist()),
        SCORE_GRID,
    ),
    "attribution patching (t)": (lambda s, t: above(s.attribution, t), SCORE_GRID),
    "direct logit attribution (t)": (lambda s, t: above(s.dla, t), SCORE_GRID),
    "path patching → logits (t)": (lambda s, t: above(s.path, t), SCORE_GRID),
    "uniform top-k": (lambda s, k: top_k(s.activation, k), K_GRID),
    "attention-weighted top-k": (lambda s, k: None if s.attention is None else top_k(s.attention, k), K_GRID),
}


def quiet_learn(case: PlantedCase, prompts, family: str, l1: float):
    return learn_combination(case.model, prompts.clean_tokens, prompts.corrupted_tokens, prompts.answer_tokens,
                             combination=family, l1=l1, steps=80, seed=0)  # fmt: skip


def learned_variants(case: PlantedCase, prompts, family: str, l1: float) -> dict[str, tuple[Heads, Tensor, Any]]:
    """{"": (heads, coefficients, family module), "+ minimal set": ...} from one fit on `prompts`."""
    learned = quiet_learn(case, prompts, family, l1)
    coefficients = learned.coefficients
    n_layers, n_heads = coefficients.shape[:2]
    module = (PerPositionCombination if coefficients.dim() == 3 else ScalarCombination)(
        n_layers, n_heads, bounded=False
    )
    with torch.no_grad():
        module.coefficients.copy_(coefficients)
    heads = frozenset(unit[:2] for unit in learned.support)
    pruned = minimal_set(case.model, [batch_of(prompts)], "denoising", module, THRESHOLD, 0.05)
    pruned_module = type(module)(n_layers, n_heads, bounded=False)
    pruned_module.set_mask_(pruned.mask)
    return {
        "": (heads, coefficients, module),
        " + minimal set": (
            frozenset(unit[:2] for unit in pruned.support),
            pruned_module.coefficients.detach(),
            pruned_module,
        ),
    }


def recovery_of_heads(case: PlantedCase, prompts, heads: Heads) -> float:
    mask = torch.zeros(1, case.model.cfg.n_layers, case.model.cfg.n_heads, dtype=torch.bool)
    for h in heads:
        mask[(0, *h)] = True
    return float(subset_effects(case.model, prompts, mask, "denoising")[0])


def recovery_of_module(case: PlantedCase, prompts, module) -> float:
    from ioi_superpose.training.pruning import mask_effects  # the same pooled effect, with the module's own weights

    with torch.no_grad():
        weights = module.coefficients.detach()
    # mask_effects patches 0/1 masks; pass the weights themselves (fixed variants accept any values).
    return float(mask_effects(case.model, [batch_of(prompts)], "denoising", module, weights[None])[0])


def run_benchmark() -> dict[str, Any]:
    start = time.perf_counter()
    cases = all_cases()
    sets = {c.name: {split: c.prompts(N_PROMPTS, seed) for split, seed in SEEDS.items()} for c in cases}
    truth = {c.name: {split: search_subsets(c.model, sets[c.name][split], "denoising", THRESHOLD)
                      for split in ("dev", "test")} for c in cases}  # fmt: skip
    chosen: dict[str, Any] = {}
    results: dict[str, dict[str, Any]] = {}
    # Score-based baselines: choose t / k on dev, apply on train scores, score on test.
    dev_scores = {c.name: Scores(c, sets[c.name]["dev"]) for c in cases}
    train_scores = {c.name: Scores(c, sets[c.name]["train"]) for c in cases}
    for method, (select, grid) in SCORE_METHODS.items():

        def dev_f1(value, select=select):
            picks = [(c, select(dev_scores[c.name], value)) for c in cases]
            vals = [f1(h, truth[c.name]["dev"].minimal_sets) for c, h in picks if h is not None]
            return sum(vals) / len(vals) if vals else 0.0

        best = max(grid, key=dev_f1)
        chosen[method] = best
        for c in cases:
            heads = select(train_scores[c.name], best)
            results.setdefault(c.name, {})[method] = None if heads is None else score_heads(c, sets, truth, heads)
    # Learned families.
    # mixing's units are entries of a map across heads, not heads: no head set to score against minimal sets.
    for family in (family for family in FAMILIES if family != "mixing"):
        dev = {l1: {c.name: learned_variants(c, sets[c.name]["dev"], family, l1) for c in cases} for l1 in L1_GRID}
        for suffix in ("", " + minimal set"):
            method = f"learned {family}{suffix}"
            best = max(L1_GRID, key=lambda l1: sum(f1(dev[l1][c.name][suffix][0], truth[c.name]["dev"].minimal_sets)
                                                    for c in cases))  # fmt: skip
            chosen[method] = best
        for c in cases:
            variants_by_l1 = {}
            for suffix in ("", " + minimal set"):
                method = f"learned {family}{suffix}"
                l1 = chosen[method]
                if l1 not in variants_by_l1:
                    variants_by_l1[l1] = learned_variants(c, sets[c.name]["train"], family, l1)
                heads, _, module = variants_by_l1[l1][suffix]
                results[c.name][method] = score_heads(c, sets, truth, heads, module)
    seconds = time.perf_counter() - start
    return {
        "threshold": THRESHOLD, "n_prompts": N_PROMPTS, "seeds": SEEDS, "chosen_on_dev": chosen,
        "truth": {name: truth[name]["test"].to_dict() for name in truth}, "results": results,
        "seconds": round(seconds, 1),
    }  # fmt: skip


def score_heads(case, sets, truth, heads: Heads, module=None) -> dict[str, Any]:
    test_truth = truth[case.name]["test"]
    p, r, nearest_set = nearest(heads, test_truth.minimal_sets)
    test = sets[case.name]["test"]
    recovery = recovery_of_module(case, test, module) if module is not None else recovery_of_heads(case, test, heads)
    return {
        "heads": sorted(list(h) for h in heads), "nearest_minimal_set": sorted(list(h) for h in nearest_set),
        "precision": round(p, 3), "recall": round(r, 3), "l0": len(heads), "min_l0": test_truth.min_size,
        "recovery": round(recovery, 3),
    }  # fmt: skip


def markdown(report: dict[str, Any]) -> str:
    cases = list(report["results"])
    methods = list(next(iter(report["results"].values())))
    lines = [
        "# Benchmark: head-finding methods on planted ground truth",
        "",
        f"`python -m ioi_superpose.benchmark` — denoising, threshold {report['threshold']}, {report['n_prompts']} "
        f"prompts per split; hyperparameters chosen on the dev seed, scored on the test seed "
        f"({report['seconds']} s on our 2-core CPU). Each cell: precision / recall against the nearest minimal "
        "set, L0 (minimal L0), recovery on the test prompts. See `ioi_superpose/groundtruth/benchmark.py`.",
        "",
        "Ground truth (exhaustive search, test prompts): "
        + "; ".join(f"{name}: {report['truth'][name]['minimal_sets']}" for name in cases),
        "",
        "| method (chosen on dev) | " + " | ".join(cases) + " | mean F1 |",
        "| --- | " + " | ".join("---" for _ in cases) + " | --- |",
    ]
    for method in methods:
        cells, f1s = [], []
        for name in cases:
            r = report["results"][name][method]
            if r is None:
                cells.append("n/a")
                continue
            cells.append(f"{r['precision']:.2f}/{r['recall']:.2f}, L0 {r['l0']} ({r['min_l0']}), {r['recovery']:.2f}")
            p, q = r["precision"], r["recall"]
            f1s.append(0.0 if p + q == 0 else 2 * p * q / (p + q))
        chosen = report["chosen_on_dev"][method]
        lines.append(f"| {method} [{chosen}] | " + " | ".join(cells) + f" | {sum(f1s) / len(f1s):.2f} |")
    return "\n".join(lines) + "\n" + NOTES + minimal_set_misses(report)


def minimal_set_misses(report: dict[str, Any]) -> str:
    """Where a method with the minimal-set step is not exact in this run (a sentence for the notes)."""
    misses = [
        f"{method} on `{name}` (L0 {r['l0']}, minimal {r['min_l0']}, test recovery {r['recovery']:.2f})"
        for name, by_method in report["results"].items()
        for method, r in by_method.items()
        if method.endswith("+ minimal set") and r is not None and (r["precision"] < 1 or r["recall"] < 1)
    ]
    if not misses:
        return "\nIn this run every method with the minimal-set step is exact on every case.\n"
    return (
        "\nIn this run the minimal-set step is not exact here: " + "; ".join(misses) + ". The step prunes on its "
        "own prompts: a set that reaches the target there can fall short of it, or miss a head, on the test prompts.\n"
    )


NOTES = """
## Where the learned combination loses (measured in the run that wrote this file)

Without the minimal-set step every learned family over-selects where the ground truth has ties or
decoys: on `or` scalar and per_position keep both backup heads at partial weights (L0 2, minimal 1),
on `decoy` they keep the decoy 0.0 beside the real head 1.1 (L0 2: patching 0.0 costs nothing, its
write is cancelled, so only the small λ pushes it out), and hard_concrete keeps 3 heads on `decoy`
(0.0, 1.0, 1.1) and both path heads on `composition`. The minimal-set step removes these over-
selections, but it is greedy backward elimination from the learned support, not an exhaustive search: it can
only return a subset of what was learned and, with ties, one of the minimal sets (which one is
arbitrary). Attribution patching is as good as the unpruned learned α on these small cases at a
fraction of the cost; single-head activation patching and direct logit attribution miss the AND pair
(no head alone moves the logits), and DLA and path patching to the logits pick the decoy. These cases
are small and planted (≤ 4 heads); the benchmark covers denoising only.
"""

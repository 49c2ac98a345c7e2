"""Every head-finding method, with controls, on cases with exhaustive ground truth, in both directions and
both notions of a head set (`rest`: "free", a cut; "frozen", a circuit — `ioi_superpose.engine.rest`).

Suites (`Config.suite`): "small" (planted models of 2–12 heads and the trained toy-IOI models) and "gpt2"
(the 144-head suite `groundtruth.planted_gpt2`: 12 layers × 12 heads with MLPs and LayerNorm). At 144 heads
the ground truth and the oracle search the case's planted heads (`BenchCase.candidates`); the report
carries `benchmark_truth.distractor_checks` in each notion, which measure that no distractor matters.
Every method, set, step and effect of a block runs in that block's notion (`rest`): the learned fits,
the minimal-set step, the smallest-top-k check, the test effects and the ground truth; the activation
patching score is the single-head circuit under "frozen"; the other baseline scores have one definition.

Protocol (threshold 0.9; `groundtruth.benchmark_cases`: train / dev / test prompts per case). Every method
fits, ranks or prunes on the TRAIN prompts. Ground truth is exhaustive subset search (`search_subsets`)
in the same direction, on the dev prompts (for selection) and the test prompts (for scoring). A head set
is scored on the test prompts: precision / recall / F1 against the NEAREST test minimal set (highest F1),
its L0 against the minimal L0, and its effect there (denoising: recovery; noising: 1 − recovery).
"Smallest top-k ≥ target" tries k up to `Config.max_top_k` (None: every head) and takes every head when
none reaches the target.

Hyperparameters (threshold t, k, λ) are chosen leave-one-case-out (`groundtruth.selection`): for case c, the
value with the best mean dev-truth F1 over every OTHER case of the same direction; c's own data never
enters its choice (`report["chosen"]` records the value and the cases it was chosen on).

Methods (rows):
- baselines, each from its per-head score on the train prompts, through the scorer registry
  (`baselines/scorers.py`: activation patching, attribution patching, EAP-IG, path patching to the logits —
  each a normalised effect from the base run towards the source run, larger = more important in both
  directions —, direct logit attribution, head-level ACDC's kept set as 0/1; and attention from END to the
  case's source / IO position): `(t)` the threshold rule score / max ≥ t; `top-k` (k by leave-one-case-out);
  `smallest top-k ≥ target` (the smallest k whose top-k set reaches the target on the case's DEV prompts;
  no ground truth used); `+ step` the minimal-set step from all heads, its blocks taken in the ranking's
  order, least important first (`pruning.minimal_set(order=pruning.order_scores(ranking))`);
- controls: `random ranking + step` (the mean over `random_orders` seeded random orders), `all heads +
  step` (control a: α = 1 everywhere, then the minimal-set step, ties in head order — no learning), `exhaustive
  oracle` (the smallest set reaching the target on the train prompts: the best any method can do on them);
- learned families (`api.learn_combinations`, one batched fit of every λ × init): `learned F` (its
  support, patched with its own weights), `+ step` (the minimal-set step from the learned support, smallest
  |α| first), `+ restarts + step` (among the inits, the stepped set that reaches the target on the DEV
  prompts with the fewest heads, then the highest dev effect), `+ α-ordered step` (the step from all
  heads, smallest |α| first). λ grids are per family (hard_concrete's expected-L0 penalty is on
  another scale than L1).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from ioi_superpose.analyses.exhaustive import subset_effects
from ioi_superpose.analyses.pruning import mask_effects, minimal_set, order_scores
from ioi_superpose.api import learn_combinations
from ioi_superpose.baselines.scorers import SCORERS
from ioi_superpose.combinations import PerPositionCombination, ScalarCombination
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.engine.rest import RESTS, Rest, check_rest
from ioi_superpose.engine.vocabulary import Direction, Head, hook_name
from ioi_superpose.groundtruth.benchmark_cases import BenchCase, bench_cases
from ioi_superpose.groundtruth.benchmark_truth import distractor_checks, search_truth
from ioi_superpose.groundtruth.selection import f1, f1_of, leave_one_case_out, mean_with_interval, nearest
from ioi_superpose.models import HookedTransformer

Heads = frozenset
ATTENTION = "attention"
"""The benchmark's own ranking beside the registry's baselines: the attention from END to the case's source."""
ATTENTION_LABEL = "attention to source"


def score_rows() -> list[tuple[str, str, bool, bool]]:
    """(name, label, threshold row, top-k row) of every ranking the benchmark scores, in row order: each baseline of
    the registry (`baselines.scorers.SCORERS`: its label, a top-k row where it says so), then the attention."""
    baselines = [(name, scorer.label, True, scorer.top_k) for name, scorer in SCORERS.items()]
    return [*baselines, (ATTENTION, ATTENTION_LABEL, False, True)]


LEARNED_VARIANTS = ("", " + step", " + restarts + step", " + α-ordered step")
CONTROL_A = "all heads + step (control a)"
"""Control (a): α = 1 on every head, then the minimal-set step: no learning, no ranking."""


@dataclass
class Config:
    threshold: float = 0.9
    n_planted: int = 32
    n_trained: int = 64
    directions: tuple[str, ...] = ("denoising", "noising")
    rests: tuple[str, ...] = ("free", "frozen")
    """The notions of a head set to run (`engine.rest`): every block is one direction in one notion."""
    suite: str = "small"
    """"small" (the 13 cases) or "gpt2" (the 144-head suite)."""
    cases: list[str] | None = None
    """Case names (None: every case)."""
    score_grid: tuple[float, ...] = (0.1, 0.3, 0.5)
    k_grid: tuple[int, ...] = (1, 2, 3, 4)
    families: tuple[str, ...] = ("scalar", "per_position", "hard_concrete")
    lambda_grids: dict[str, tuple[float, ...]] = field(
        default_factory=lambda: {
            "scalar": (1e-3, 1e-2, 3e-2),
            "per_position": (1e-3, 1e-2, 3e-2),
            "hard_concrete": (3e-2, 1e-1, 3e-1),
        }
    )
    inits: tuple[float, ...] = (1.0, 0.5)
    random_orders: int = 5
    """Seeded random rankings per case (the random control's row is their mean)."""
    steps: int = 80
    lr: float = 0.05
    seed: int = 0
    max_top_k: int | None = None
    """The largest k the "smallest top-k ≥ target" rule tries (None: every head)."""
    truth_check_prompts: int = 8
    """Test prompts of the distractor checks (`benchmark_truth`; cases with candidate heads only; 0: none)."""

    @classmethod
    def gpt2(cls, **overrides: Any) -> "Config":
        """The 144-head configuration, shrunk to run both directions and notions of the 9 cases in about half an
        hour on 2 shared CPU cores: 32 prompts per split (8 tokens: the suite's n_ctx), 40 Adam steps, λ
        grids of two values, 3 random orders, smallest top-k up to 16, hard_concrete left out."""
        settings: dict[str, Any] = dict(
            suite="gpt2", n_planted=32, steps=40, families=("scalar", "per_position"),
            lambda_grids={"scalar": (1e-3, 3e-2), "per_position": (1e-3, 3e-2), "hard_concrete": (3e-2, 3e-1)},
            random_orders=3, max_top_k=16,
        )  # fmt: skip
        return cls(**{**settings, **overrides})

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


def heads_of(mask: Tensor) -> Heads:
    return frozenset(tuple(int(i) for i in h) for h in mask.nonzero().tolist())


def mask_of(heads: Heads, n_layers: int, n_heads: int) -> Tensor:
    mask = torch.zeros(n_layers, n_heads, dtype=torch.bool)
    for h in heads:
        mask[h] = True
    return mask


def ranking(score: Tensor) -> list[tuple[int, int]]:
    """Heads from most to least important (largest score first; ties by index)."""
    n_heads = score.shape[1]
    order = sorted(range(score.numel()), key=lambda i: (-float(score.flatten()[i]), i))
    return [(i // n_heads, i % n_heads) for i in order]


def above(score: Tensor, t: float) -> Heads:
    """Heads whose score / max score ≥ t (nothing when no score is positive)."""
    top = float(score.max())
    if top <= 0:
        return frozenset()
    return heads_of((score / top) >= t)


def all_ones(n_layers: int, n_heads: int) -> ScalarCombination:
    module = ScalarCombination(n_layers, n_heads, bounded=False)
    with torch.no_grad():
        module.coefficients.fill_(1.0)
    return module


def step_from_all(
    model: HookedTransformer, batches: Sequence[ContrastBatch], direction: Direction, target: float,
    order: Sequence[Head] | None, rest: Rest = "free",
) -> Heads:  # fmt: skip
    """The minimal-set step from every head (α = 1), trying heads in `order` first (None: head index order)."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    scores = None if order is None else order_scores(order, (n_layers, n_heads))
    result = minimal_set(model, batches, direction, all_ones(n_layers, n_heads), target, 0.05, order=scores,
                         rest=rest)  # fmt: skip
    return frozenset(tuple(u) for u in result.support)


def top_k_effects(
    model: HookedTransformer, batch: ContrastBatch, direction: Direction, ranked: Sequence[Head], rest: Rest = "free",
    max_k: int | None = None,
) -> Float[Tensor, " k"]:  # fmt: skip
    """The effect on `batch` of the top k heads of `ranked`, for k = 1 … `max_k` (None: every head), in one run."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    largest = len(ranked) if max_k is None else min(max_k, len(ranked))
    masks = torch.stack([mask_of(frozenset(ranked[:k]), n_layers, n_heads) for k in range(1, largest + 1)])
    return subset_effects(model, batch, masks, direction, rest=rest)


def smallest_top_k(
    model: HookedTransformer, batch: ContrastBatch, direction: Direction, ranked: Sequence[Head], target: float,
    rest: Rest = "free", max_k: int | None = None,
) -> Heads:  # fmt: skip
    """The smallest k whose top-k heads of `ranked` reach `target` on `batch` (trying k ≤ `max_k`; None: every
    head); every head when none does."""
    effects = top_k_effects(model, batch, direction, ranked, rest, max_k)
    reaching = (effects >= target).nonzero()
    k = int(reaching[0]) + 1 if len(reaching) else len(ranked)
    return frozenset(ranked[:k])


def module_of(coefficients: Float[Tensor, "layer head *role"]) -> ScalarCombination | PerPositionCombination:
    """A learned fit's coefficients as an unbounded module of its family (per head, or per head and role)."""
    n_layers, n_heads = coefficients.shape[:2]
    module = (PerPositionCombination if coefficients.dim() == 3 else ScalarCombination)(n_layers, n_heads,
                                                                                         bounded=False)  # fmt: skip
    with torch.no_grad():
        module.coefficients.copy_(coefficients)
    return module


class Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def run(self, key: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        out = fn()
        self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - start
        return out


# --------------------------------------------------------------------------------------------------
# One case in one direction: every candidate head set (per hyperparameter value), with its cost.


def scores_of(case: BenchCase, direction: str, timer: Timer, rest: Rest = "free") -> dict[str, Tensor | None]:
    """Per-head scores on the train prompts, larger = more important in `direction` (activation patching in
    `rest`'s notion; the others have one definition)."""
    model, batch = case.model, case.splits["train"]
    n_layers = model.cfg.n_layers
    out: dict[str, Tensor | None] = {}
    # The registry's scorers (`baselines/scorers.py`), as a run's baseline callbacks compute them: each a
    # normalised effect from the base run (0) towards the source run (1), larger = more important.
    for name, scorer in SCORERS.items():
        kwargs = {"rest": rest} if scorer.notion and rest != "free" else {}
        out[name] = timer.run(name, lambda scorer=scorer, kw=kwargs: scorer.score(model, batch, direction, **kw))
    out[ATTENTION] = None
    if case.attention_targets is not None:
        target = case.attention_targets["train"]

        def attention() -> Tensor:
            names = [hook_name("pattern", layer) for layer in range(n_layers)]
            _, cache = model.run_with_cache(batch.clean_tokens, names_filter=lambda n: n in names)
            rows = torch.arange(len(target))
            return torch.stack([cache[n][rows, :, batch.end_pos, target].mean(0) for n in names])

        out[ATTENTION] = timer.run(ATTENTION, attention)
    return {k: None if v is None else v.detach().float().cpu() for k, v in out.items()}


def candidates_of(
    case: BenchCase, direction: str, config: Config, rest: Rest = "free"
) -> tuple[dict[str, Any], dict[str, float]]:
    """{method: {grid value: head set (or (head set, module) for a learned combination's own weights)}},
    and seconds per method, in `rest`'s notion. A method without hyperparameters has the single grid value None."""
    model = case.model
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    train = [case.splits["train"]]
    dev = case.splits["dev"]
    timer = Timer()
    target = config.threshold
    scores = scores_of(case, direction, timer, rest)
    out: dict[str, Any] = {}
    seconds: dict[str, float] = {}

    def step(order: list[tuple[int, int]] | None) -> Heads:
        return step_from_all(model, train, direction, target, order, rest)

    for name, label, threshold, top_k in score_rows():
        score = scores[name]
        cost = timer.seconds.get(name, 0.0)
        ranked = None if score is None else ranking(score)
        if threshold:
            out[f"{label} (t)"] = {t: above(score, t) for t in config.score_grid}
            seconds[f"{label} (t)"] = cost
        if top_k:
            out[f"{label} top-k"] = {k: None if ranked is None else frozenset(ranked[:k]) for k in config.k_grid}
            seconds[f"{label} top-k"] = cost
        method = f"{label} smallest top-k ≥ target"
        if ranked is None:
            out[method] = {None: None}
        else:
            out[method] = {None: timer.run(method, lambda r=ranked: smallest_top_k(
                model, dev, direction, r, target, rest, config.max_top_k))}  # fmt: skip
        seconds[method] = cost + timer.seconds.get(method, 0.0)
        method = f"{label} + step"
        out[method] = {None: None if ranked is None else timer.run(method, lambda r=ranked: step(r[::-1]))}
        seconds[method] = cost + timer.seconds.get(method, 0.0)

    # A random order is one draw of a random variable: the row averages `random_orders` seeded draws.
    generator = torch.Generator().manual_seed(config.seed)
    orders = [[(int(i) // n_heads, int(i) % n_heads) for i in torch.randperm(n_layers * n_heads, generator=generator)]
              for _ in range(config.random_orders)]  # fmt: skip
    out["random ranking + step"] = {None: timer.run("random", lambda: [step(order) for order in orders])}
    seconds["random ranking + step"] = timer.seconds["random"]
    out[CONTROL_A] = {None: timer.run("all", lambda: step(None))}
    seconds[CONTROL_A] = timer.seconds["all"]

    def oracle() -> Heads:
        search = search_truth(case, case.splits["train"], direction, target, rest)
        if not search.minimal_sets:
            return frozenset()
        names = ["+".join(f"{layer}.{head}" for layer, head in s) for s in search.minimal_sets]
        best = max(range(len(names)), key=lambda i: search.subset_effect[names[i]])
        return frozenset(search.minimal_sets[best])

    out["exhaustive oracle"] = {None: timer.run("oracle", oracle)}
    seconds["exhaustive oracle"] = timer.seconds["oracle"]

    for family in config.families:
        learned, family_seconds = learned_candidates(case, direction, family, config, rest)
        out.update(learned)
        seconds.update(family_seconds)
    return out, seconds


def learned_candidates(
    case: BenchCase, direction: str, family: str, config: Config, rest: Rest = "free"
) -> tuple[dict[str, Any], dict[str, float]]:
    """The four learned variants of `family`, per λ, from one batched fit of every λ × init."""
    model = case.model
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    prompts = case.splits["train"]
    train = [prompts]
    dev = case.splits["dev"]
    lambdas = config.lambda_grids[family]
    members = [{"l1": lam, "init": init} for lam in lambdas for init in config.inits]
    start = time.perf_counter()
    fits = learn_combinations(model, prompts.clean_tokens, prompts.corrupted_tokens, prompts.answer_tokens, members,
                              direction=direction, steps=config.steps, seed=config.seed,
                              combination=family, rest=rest)  # fmt: skip
    fit_seconds = time.perf_counter() - start
    step_seconds = {variant: 0.0 for variant in LEARNED_VARIANTS}
    out: dict[str, dict[float, Any]] = {f"learned {family}{variant}": {} for variant in LEARNED_VARIANTS}
    for index, lam in enumerate(lambdas):
        stepped = []
        for offset in range(len(config.inits)):
            fit = fits[index * len(config.inits) + offset]
            coefficients = fit.coefficients
            module = module_of(coefficients)
            t0 = time.perf_counter()
            pruned = minimal_set(model, train, direction, module, config.threshold, 0.05, rest=rest)
            heads = frozenset(tuple(unit[:2]) for unit in pruned.support)
            dev_effect = float(subset_effects(model, dev, mask_of(heads, n_layers, n_heads)[None], direction,
                                              rest=rest)[0])  # fmt: skip
            stepped.append((heads, dev_effect))
            step_seconds[" + restarts + step"] += time.perf_counter() - t0
            if offset == 0:  # the plain variants use the first init (1.0, the default)
                step_seconds[" + step"] += time.perf_counter() - t0
                out[f"learned {family}"][lam] = (frozenset(tuple(u[:2]) for u in fit.support), module)
                out[f"learned {family} + step"][lam] = heads
                t0 = time.perf_counter()
                per_head = coefficients.abs().flatten(2).amax(-1) if coefficients.dim() == 3 else coefficients.abs()
                out[f"learned {family} + α-ordered step"][lam] = step_from_all(
                    model, train, direction, config.threshold, ranking(per_head)[::-1], rest)  # fmt: skip
                step_seconds[" + α-ordered step"] += time.perf_counter() - t0
        # Restarts: keep the stepped set that reaches the target on dev with the fewest heads (then highest effect).
        best = min(stepped, key=lambda s: (s[1] < config.threshold, len(s[0]), -s[1]))
        out[f"learned {family} + restarts + step"][lam] = best[0]
    seconds = {f"learned {family}{variant}": fit_seconds + step_seconds[variant] for variant in LEARNED_VARIANTS}
    return out, seconds


# --------------------------------------------------------------------------------------------------
# Scoring and the whole run.


def effect_on_test(case: BenchCase, direction: str, candidate: Any, rest: Rest = "free") -> float:
    """Effect on the test prompts: a head set patched with weight 1; a learned combination with its own weights."""
    model, test = case.model, case.splits["test"]
    if isinstance(candidate, tuple):
        heads, module = candidate
        with torch.no_grad():
            weights = module.coefficients.detach()
        return float(mask_effects(model, [test], direction, module, weights[None], rest=rest)[0])
    mask = mask_of(candidate, model.cfg.n_layers, model.cfg.n_heads)
    return float(subset_effects(model, test, mask[None], direction, rest=rest)[0])


def head_set(candidate: Any) -> Heads | None:
    return candidate[0] if isinstance(candidate, tuple) else candidate


def score(case: BenchCase, direction: str, candidate: Any, truth, rest: Rest = "free") -> dict[str, Any] | None:
    """Scores of one candidate; a list of head sets (the random orders) scores as the mean of each
    number over its sets (heads: the first set's, `draws`: every set)."""
    if candidate is None:
        return None
    if isinstance(candidate, list):
        each = [score(case, direction, c, truth, rest) for c in candidate]
        mean = {key: round(sum(e[key] for e in each) / len(each), 3) for key in ("precision", "recall", "f1", "l0",
                                                                             "effect")}  # fmt: skip
        return {**each[0], **mean, "draws": [e["heads"] for e in each]}
    heads = head_set(candidate)
    p, r, nearest_set = nearest(heads, truth.minimal_sets)
    return {
        "heads": sorted(list(h) for h in heads), "nearest_minimal_set": sorted(list(h) for h in nearest_set),
        "precision": round(p, 3), "recall": round(r, 3), "f1": round(f1_of(p, r), 3), "l0": len(heads),
        "min_l0": truth.min_size, "effect": round(effect_on_test(case, direction, candidate, rest), 3),
    }  # fmt: skip


def run_benchmark(config: Config | None = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The whole table: `report["rests"][rest][direction]` is one block (truth, results, chosen, summary)."""
    config = config or Config()
    for rest in config.rests:
        check_rest(rest, "rests")
    if not config.rests:
        raise ValueError(f"rests must name at least one of {list(RESTS)}")
    start = time.perf_counter()
    cases = bench_cases(config.n_planted, config.n_trained, config.cases, config.suite)
    report: dict[str, Any] = {"config": config.to_dict(), "cases": {c.name: {"kind": c.kind, "separating": c.separating,
                              "heads": c.model.cfg.n_layers * c.model.cfg.n_heads,
                              "searched": None if c.candidates is None else sorted(list(h) for h in c.candidates)}
                              for c in cases}, "rests": {}}  # fmt: skip
    for rest in config.rests:
        report["rests"][rest] = {}
        for direction in config.directions:
            if progress:
                progress(f"{direction} rest={rest} ({time.perf_counter() - start:.0f} s)")
            report["rests"][rest][direction] = run_block(cases, direction, rest, config, progress, start)
    report["seconds"] = round(time.perf_counter() - start, 1)
    return report


def run_block(
    cases: list[BenchCase], direction: str, rest: Rest, config: Config, progress: Callable[[str], None] | None,
    start: float,
) -> dict[str, Any]:  # fmt: skip
    """Every method on every case in one direction and one notion, scored against that notion's truth."""
    truth = {c.name: {split: search_truth(c, c.splits[split], direction, config.threshold, rest)
                      for split in ("dev", "test")} for c in cases}  # fmt: skip
    checks = {}
    for c in cases:
        if c.candidates is not None and config.truth_check_prompts > 0:
            test = c.splits["test"]
            few = test[: config.truth_check_prompts]
            few_truth = search_truth(c, few, direction, config.threshold, rest)
            checks[c.name] = distractor_checks(c, few, direction, rest, few_truth.minimal_sets) | {
                "minimal_sets_on_these_prompts": [[list(h) for h in m] for m in few_truth.minimal_sets]}
    candidates, seconds = {}, {}
    for c in cases:
        if progress:
            progress(f"  {direction} rest={rest} {c.name} ({time.perf_counter() - start:.0f} s)")
        candidates[c.name], seconds[c.name] = candidates_of(c, direction, config, rest)
    methods = list(candidates[cases[0].name])
    results: dict[str, dict[str, Any]] = {c.name: {} for c in cases}
    chosen: dict[str, dict[str, Any]] = {c.name: {} for c in cases}
    for method in methods:
        grid = list(candidates[cases[0].name][method])
        dev_f1 = {} if grid == [None] else {
            c.name: {value: None if head_set(candidates[c.name][method][value]) is None
                     else f1(head_set(candidates[c.name][method][value]), truth[c.name]["dev"].minimal_sets)
                     for value in grid} for c in cases}  # fmt: skip
        for c in cases:
            value, used = (None, []) if grid == [None] else leave_one_case_out(dev_f1, c.name, grid)
            chosen[c.name][method] = {"value": value, "chosen_on": used}
            scored = score(c, direction, candidates[c.name][method][value], truth[c.name]["test"], rest)
            if scored is not None:
                scored["seconds"] = round(seconds[c.name][method], 3)
            results[c.name][method] = scored
    block_truth = {}
    for name, t in truth.items():
        # Small: the per-subset effects of the test search are dropped (None); at 144 heads, the single-head
        # effects too (NaN outside the planted heads: 144 mostly-null numbers per case).
        entry = t["test"].to_dict() | {"subset_effect": None}
        if name in checks:
            entry |= {"single_head_effect": None, "distractor_checks": checks[name]}
        case = next(c for c in cases if c.name == name)
        if case.promised is not None and rest == "free":
            promised = {frozenset(map(tuple, m)) for m in case.promised[direction]}
            entry["promised_free"] = promised == {frozenset(map(tuple, m)) for m in t["test"].minimal_sets}
        block_truth[name] = entry
    return {"truth": block_truth, "results": results, "chosen": chosen,
            "summary": summarise(results, {c.name: {"separating": c.separating} for c in cases}, config.seed)}


def summarise(results: dict[str, dict[str, Any]], cases: dict[str, Any], seed: int) -> dict[str, Any]:
    methods = list(next(iter(results.values())))
    out = {}
    for method in methods:
        rows = {name: r[method] for name, r in results.items() if r[method] is not None}
        separating = [r["f1"] for name, r in rows.items() if cases[name]["separating"]]
        out[method] = {
            "all": mean_with_interval([r["f1"] for r in rows.values()], seed),
            "separating": mean_with_interval(separating, seed),
            "exact_l0": sum(r["l0"] == r["min_l0"] for r in rows.values()),
            "seconds": round(sum(r["seconds"] for r in rows.values()), 1),
        }
    return out

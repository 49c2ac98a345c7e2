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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ioi_superpose.analyses.exhaustive import subset_effects
from ioi_superpose.analyses.pruning import mask_effects, minimal_set, order_scores
from ioi_superpose.api import learn_combinations
from ioi_superpose.baselines.scorers import SCORERS
from ioi_superpose.combinations import PerPositionCombination, ScalarCombination
from ioi_superpose.engine.rest import RESTS, Rest, check_rest
from ioi_superpose.engine.vocabulary import hook_name
from ioi_superpose.groundtruth.benchmark_cases import BenchCase, bench_cases
from ioi_superpose.groundtruth.benchmark_truth import distractor_checks, search_truth
from ioi_superpose.groundtruth.selection import f1, f1_of, leave_one_case_out, mean_with_interval, nearest

Heads = frozenset
SCORES = ("activation", "attribution", "eap_ig", "dla", "path", "acdc", "attention")
THRESHOLD_SCORES = ("activation", "attribution", "eap_ig", "dla", "path", "acdc")
TOP_K_SCORES = ("activation", "attention")
SCORE_LABELS = {"activation": "activation patching", "attribution": "attribution patching",
                "eap_ig": "EAP-IG", "dla": "direct logit attribution", "path": "path patching → logits",
                "acdc": "ACDC (heads, τ 0.01)",
                "attention": "attention to source"}  # fmt: skip
LEARNED_VARIANTS = ("", " + step", " + restarts + step", " + α-ordered step")


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
    for name, scorer in (("activation", "activation_patching"), ("attribution", "attribution_patching"),
                         ("eap_ig", "eap_ig"), ("dla", "direct_logit_attribution"), ("path", "path_patching"),
                         ("acdc", "acdc")):  # fmt: skip
        kwargs = {"rest": rest} if name == "activation" and rest != "free" else {}
        out[name] = timer.run(name, lambda scorer=scorer, kw=kwargs: SCORERS[scorer](model, batch, direction, **kw))
    out["attention"] = None
    if case.attention_targets is not None:
        target = case.attention_targets["train"]

        def attention() -> Tensor:
            names = [hook_name("pattern", layer) for layer in range(n_layers)]
            _, cache = model.run_with_cache(batch.clean_tokens, names_filter=lambda n: n in names)
            rows = torch.arange(len(target))
            return torch.stack([cache[n][rows, :, batch.end_pos, target].mean(0) for n in names])

        out["attention"] = timer.run("attention", attention)
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
        scores = None if order is None else order_scores(order, (n_layers, n_heads))
        result = minimal_set(model, train, direction, all_ones(n_layers, n_heads), target, 0.05, order=scores,
                             rest=rest)  # fmt: skip
        return frozenset(tuple(u) for u in result.support)

    for name in SCORES:
        score = scores[name]
        label = SCORE_LABELS[name]
        cost = timer.seconds.get(name, 0.0)
        ranked = None if score is None else ranking(score)
        if name in THRESHOLD_SCORES:
            out[f"{label} (t)"] = {t: above(score, t) for t in config.score_grid}
            seconds[f"{label} (t)"] = cost
        if name in TOP_K_SCORES:
            out[f"{label} top-k"] = {k: None if ranked is None else frozenset(ranked[:k]) for k in config.k_grid}
            seconds[f"{label} top-k"] = cost
        method = f"{label} smallest top-k ≥ target"
        if ranked is None:
            out[method] = {None: None}
        else:
            largest = len(ranked) if config.max_top_k is None else min(config.max_top_k, len(ranked))
            masks = torch.stack([mask_of(frozenset(ranked[:k]), n_layers, n_heads) for k in range(1, largest + 1)])
            effects = timer.run(method, lambda masks=masks: subset_effects(model, dev, masks, direction, rest=rest))
            reaching = (effects >= target).nonzero()
            k = int(reaching[0]) + 1 if len(reaching) else len(ranked)
            out[method] = {None: frozenset(ranked[:k])}
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
    out["all heads + step (control a)"] = {None: timer.run("all", lambda: step(None))}
    seconds["all heads + step (control a)"] = timer.seconds["all"]

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
            module = (PerPositionCombination if coefficients.dim() == 3 else ScalarCombination)(
                n_layers, n_heads, bounded=False
            )
            with torch.no_grad():
                module.coefficients.copy_(coefficients)
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
                order = ranking(per_head)[::-1]
                result = minimal_set(model, train, direction, all_ones(n_layers, n_heads), config.threshold, 0.05,
                                     order=order_scores(order, (n_layers, n_heads)), rest=rest)  # fmt: skip
                out[f"learned {family} + α-ordered step"][lam] = frozenset(tuple(u) for u in result.support)
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


# --------------------------------------------------------------------------------------------------
# The report.

STEP_VARIANTS = (" + step", " + restarts + step", " + α-ordered step")


def baseline_groups(methods: list[str]) -> dict[str, list[str]]:
    """Each baseline's variants (its threshold rule, top-k, smallest top-k, + step), and the random ranking."""
    groups = {label: [m for m in methods if m.startswith(label)] for label in SCORE_LABELS.values()}
    groups["random ranking"] = ["random ranking + step"]
    return groups


def _interval(stat: dict[str, Any]) -> str:
    if stat["mean"] is None:
        return "n/a"
    interval = stat["interval"]
    spread = "" if interval is None else f" [{interval[0]:.2f}, {interval[1]:.2f}]"
    return f"{stat['mean']:.2f}{spread} (n={stat['n']})"


REST_TITLES = {"free": "rest free (cuts: heads outside the set recompute)",
               "frozen": "rest frozen (circuits: heads outside the set keep their base-run z)"}


def blocks(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(title, block) for every notion and direction of the report, in run order."""
    return [(f"{direction.capitalize()}, {REST_TITLES[rest]}", block)
            for rest, by_direction in report["rests"].items() for direction, block in by_direction.items()]  # fmt: skip


def markdown(report: dict[str, Any]) -> str:
    config = report["config"]
    cases = report["cases"]
    separating = [name for name, c in cases.items() if c["separating"]]
    gpt2 = config.get("suite") == "gpt2"
    rest_flag = "both" if sorted(config["rests"]) == ["free", "frozen"] else config["rests"][0]
    command = "python -m ioi_superpose.benchmark " + ("--suite gpt2 " if gpt2 else "") + f"--rest {rest_flag} --out DIR"
    prompts = f"{config['n_planted']} prompts per split" + (
        "" if gpt2 else f" (planted), {config['n_trained']} (trained toy IOI)")  # fmt: skip
    grids = {family: list(values) for family, values in config["lambda_grids"].items()}  # the same after a JSON reload
    lines = [
        "# Benchmark: head-finding methods, with controls, against exhaustive ground truth"
        + (" — the 144-head GPT-2-scale suite" if gpt2 else ""),
        "",
        f"`{command}` — threshold {config['threshold']}, {prompts}, "
        f"{len(cases)} cases, directions {', '.join(config['directions'])}, notions {', '.join(config['rests'])}; "
        f"{report['seconds']} s on our shared "
        "2-core CPU. Protocol, methods and controls: the docstring of `ioi_superpose/groundtruth/benchmark.py`. "
        "Every method works on the train prompts; hyperparameters are chosen leave-one-case-out against the "
        "dev-prompt ground truth of the OTHER cases; every number below is on the test prompts against their "
        "own exhaustive search. Mean F1 over cases with a seeded bootstrap 95 % interval over cases (n = "
        "cases). Separating cases (built so that the step from all heads or the baselines fail): "
        f"{', '.join(separating)}. "
        "Seconds: the method's own computation summed over cases (a learned row includes its family's whole "
        "batched fit of every λ × init; a baseline row includes computing its score).",
        "",
        f"Grids: t ∈ {config['score_grid']}, k ∈ {config['k_grid']}, λ per family {grids}, "
        f"inits {config['inits']}, {config['steps']} Adam steps at lr {config['lr']}, "
        f"{config['random_orders']} random orders, smallest top-k up to k = {config.get('max_top_k') or 'all'}.",
        "",
        "Cases: " + "; ".join(f"`{name}` ({c['kind']}, {c['heads']} heads"
                              + (f", searched over {len(c['searched'])} planted" if c.get("searched") else "")
                              + ")" for name, c in cases.items()) + ".",  # fmt: skip
    ]
    for title, block in blocks(report):
        lines += ["", f"## {title}", "", "Minimal sets (test prompts): " + "; ".join(
            f"{name}: {t['minimal_sets'] if len(t['minimal_sets']) <= 4 else str(t['minimal_sets'][:4])[:-1] + ', …]'}"
            + ("" if len(t["minimal_sets"]) <= 4 else f" ({len(t['minimal_sets'])} sets)")
            for name, t in block["truth"].items())]  # fmt: skip
        lines += truth_lines(block)
        lines += ["", "| method | mean F1, all cases | mean F1, separating cases | L0 = minimal L0 | seconds |",
                  "| --- | --- | --- | --- | --- |"]  # fmt: skip
        for method, stat in block["summary"].items():
            lines.append(f"| {method} | {_interval(stat['all'])} | {_interval(stat['separating'])} | "
                         f"{stat['exact_l0']} of {stat['all']['n']} | {stat['seconds']} |")  # fmt: skip
        names = list(block["results"])
        lines += ["", "Per case — precision/recall against the nearest minimal set, L0 (minimal L0), effect on the "
                  "test prompts [hyperparameter chosen leave-one-case-out]:", "",
                  "| method | " + " | ".join(names) + " |",
                  "| --- | " + " | ".join("---" for _ in names) + " |"]  # fmt: skip
        for method in block["summary"]:
            cells = []
            for name in names:
                r = block["results"][name][method]
                value = block["chosen"][name][method]["value"]
                if r is None:
                    cells.append("n/a")
                    continue
                chosen = "" if value is None else f" [{value:g}]"
                cells.append(f"{r['precision']:.2f}/{r['recall']:.2f}, L0 {r['l0']} ({r['min_l0']}), "
                             f"{r['effect']:.2f}{chosen}")  # fmt: skip
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + across_blocks(report) + where_learning_loses(report)


def across_blocks(report: dict[str, Any]) -> str:
    """What holds over every block of this run: the methods exact everywhere, and where the notions' truths differ."""
    every = blocks(report)
    methods = list(every[0][1]["summary"])
    exact = [m for m in methods if all(r[m] is None or r[m]["f1"] == 1.0
                                       for _, block in every for r in block["results"].values())]  # fmt: skip
    lines = ["## Across every block (computed from this run)", "",
             f"Rows with F1 1 on every case in every block ({len(every)} blocks): "
             + (", ".join(exact) if exact else "none") + "."]  # fmt: skip
    rests = report["rests"]
    if set(rests) == {"free", "frozen"}:
        for direction in rests["free"]:
            differ = [
                f"{name} (cut {t['minimal_sets']}, circuit {rests['frozen'][direction]['truth'][name]['minimal_sets']})"
                for name, t in rests["free"][direction]["truth"].items()
                if sorted(map(sorted, t["minimal_sets"]))
                != sorted(map(sorted, rests["frozen"][direction]["truth"][name]["minimal_sets"]))
            ]
            lines.append("")
            lines.append(f"{direction.capitalize()}: minimal sets that differ between the notions (test prompts): "
                         + ("; ".join(differ) if differ else "none") + ".")  # fmt: skip
    return "\n".join(lines) + "\n\n"


def truth_lines(block: dict[str, Any]) -> list[str]:
    """At 144 heads: whether the found sets are the promised ones (cuts) and the distractor checks."""
    promised = {name: t["promised_free"] for name, t in block["truth"].items() if "promised_free" in t}
    checks = {name: t["distractor_checks"] for name, t in block["truth"].items() if "distractor_checks" in t}
    lines = []
    if promised:
        lines += ["", "Equal to the suite's promised minimal sets: " + "; ".join(
            f"{name} {'yes' if ok else 'NO'}" for name, ok in promised.items()) + "."]  # fmt: skip
    if checks:
        prompts = next(iter(checks.values()))["prompts"]
        lines += ["", f"Distractor checks ({prompts} test prompts, this notion): |all distractors at once| and max "
                  "|single distractor added to a minimal set| — " + "; ".join(
                      f"{name} {c['all_distractors']:.1e} / {c['max_single_addition']:.1e}"
                      + ("" if c["ok"] else " (ABOVE 0.01)") for name, c in checks.items()) + "."]  # fmt: skip
    return lines


def _mean_f1(block: dict[str, Any], method: str, names: list[str]) -> float | None:
    values = [block["results"][n][method]["f1"] for n in names if block["results"][n][method] is not None]
    return sum(values) / len(values) if values else None


CONTROL_A = "all heads + step (control a)"


def control_a_lines(block: dict[str, Any], stepped: list[str]) -> str:
    """Per learned + step row: on how many cases control (a) (no learning) has the same F1, a higher one, a
    lower one; naming the cases where it is not lower."""
    parts = []
    for method in stepped:
        same, better, worse = [], [], []
        for name, row in block["results"].items():
            mine, theirs = row[method], row[CONTROL_A]
            if mine is None or theirs is None:
                continue
            (same if theirs["f1"] == mine["f1"] else better if theirs["f1"] > mine["f1"] else worse).append(name)
        parts.append(f"{method}: control (a) matches it on {len(same)} cases, beats it on {len(better)}"
                     + (f" ({', '.join(better)})" if better else "") + f", loses on {len(worse)}"
                     + (f" ({', '.join(worse)})" if worse else ""))  # fmt: skip
    return "Control (a) (all heads + step, no learning) against learning, case by case on F1: " + "; ".join(parts) + "."


def where_learning_loses(report: dict[str, Any]) -> str:
    """The section written from this run's numbers: the goal checked row by row, and every loss."""
    cases = report["cases"]
    separating = [name for name, c in cases.items() if c["separating"]]
    lines = ["## Where the learned combination loses (computed from this run)", ""]
    for title, block in blocks(report):
        summary = block["summary"]
        methods = list(summary)
        learned = [m for m in methods if m.startswith("learned")]
        stepped = [m for m in learned if m.endswith(STEP_VARIANTS)]
        best_all = max(methods, key=lambda m: summary[m]["all"]["mean"] if m != "exhaustive oracle" else -1)
        lines.append(f"**{title}.** Best non-oracle row on mean F1 over all cases: "
                     f"{best_all} ({summary[best_all]['all']['mean']:.2f}); oracle "
                     f"{summary['exhaustive oracle']['all']['mean']:.2f}.")  # fmt: skip
        lines.append("")
        lines.append(control_a_lines(block, stepped))
        if not separating:
            lines += ["", "No separating case in this run: the rivals are not compared.", ""]
            continue
        groups = baseline_groups(methods)
        best_variant = {}
        for group, members in groups.items():
            scored = [m for m in members if _mean_f1(block, m, separating) is not None]
            if scored:
                best_variant[group] = max(scored, key=lambda m: _mean_f1(block, m, separating))
        rivals = {"all heads + step (control a)": "all heads + step (control a)", **best_variant}
        lines.append("")
        lines.append(
            "Rivals on the separating cases: control (a) and, per baseline, its variant of best mean F1 "
            "there (chosen on the scored cases themselves — generous to the baselines): "
            + "; ".join(f"{m} {_mean_f1(block, m, separating):.2f}" for m in rivals.values())
            + "."
        )
        lines.append("")
        for method in stepped:
            own = _mean_f1(block, method, separating)
            beaten_by = [m for m in rivals.values() if _mean_f1(block, m, separating) >= own]
            losses = []
            for name in separating:
                mine = block["results"][name][method]
                for rival in rivals.values():
                    theirs = block["results"][name][rival]
                    if theirs is not None and mine is not None and theirs["f1"] > mine["f1"]:
                        losses.append(f"`{name}` to {rival} ({mine['f1']:.2f} < {theirs['f1']:.2f})")
            all_rank = sorted(methods, key=lambda m: -summary[m]["all"]["mean"]).index(method) + 1
            verdict = ("strictly better than every rival" if not beaten_by else
                       "NOT strictly better than " + ", ".join(f"{m} ({_mean_f1(block, m, separating):.2f})"
                                                               for m in beaten_by))  # fmt: skip
            lines.append(f"- {method}: separating mean F1 {own:.2f}, {verdict}; rank {all_rank} of "
                         f"{len(methods)} on all cases ({summary[method]['all']['mean']:.2f})."
                         + (" Per-case losses: " + "; ".join(losses) + "." if losses else ""))  # fmt: skip
        misses = []
        for name in block["results"]:
            for method in stepped:
                r = block["results"][name][method]
                if r is not None and r["f1"] < 1:
                    misses.append(f"{method} on `{name}` (F1 {r['f1']:.2f}, L0 {r['l0']} vs {r['min_l0']}, "
                                  f"effect {r['effect']:.2f})")  # fmt: skip
        lines += ["", "Learned + step rows not exact: " + ("; ".join(misses) if misses else "none") + ".", ""]
        unstepped = {m: summary[m]["all"]["mean"] for m in learned if not m.endswith(STEP_VARIANTS)}
        lines.append("Without any step: " + "; ".join(f"{m} {v:.2f}" for m, v in unstepped.items()) + ".")
        lines.append("")
    return "\n".join(lines)

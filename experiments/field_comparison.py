"""The field's comparison on the GPT-2-shaped models trained here (issue 27 item 2; docs/field_comparison.md):

    python experiments/field_comparison.py                              # writes experiments/reports/field/
    experiments/peers/.venv/bin/python experiments/peers/field_peers.py  # first, for auto-circuit's rows

For each checkpoint (a task-mixture model, `toy.task_mixture`), task and direction, on training prompts of ONE
length (auto-circuit reads the answer at the last position, so every method sees the same prompts), every method
finds, for each target in `--targets`, the smallest head set it can whose effect on the training prompts reaches the
target (the project's effect: denoising recovery, noising 1 − recovery; `analyses.pruning`):

- `learned scalar + step`: one batched fit (`api.learn_combinations`) of α per init in `--inits`, then the minimal-set
  step from its support (smallest |α| first) — the benchmark's `learned F + step`; the first init is the row, the
  others measure stability across initialisations;
- `all heads + step`, `random order + step` (the benchmark's controls; one seeded order per sample);
- `<score> + step` (the step from all heads, least important first) and `<score> smallest top-k` (the smallest k whose
  top-k set reaches the target on the DEV prompts, k ≤ `--max-top-k`) for the registry's activation patching,
  attribution patching and EAP-IG (`baselines.scorers`: Hanna et al.'s input interpolation, ranked by SIGNED score),
  and for EAP-IG with auto-circuit's activation interpolation ranked by |score|
  (`baselines.circuit.eap_ig_scores(interpolation="activations")`);
- `ACDC (heads, τ 0.01)`: our head-level ACDC's kept set (one set, whatever the target);
- auto-circuit's EAP, EAP-IG, ACDC and subnetwork probing, read from `--peers` (written by
  experiments/peers/field_peers.py in its own venv on the same prompts): ranked by |score| (auto-circuit's own
  convention) `+ step` and `smallest top-k`, and ACDC's kept heads.

Every found set is then scored on held-out prompts: the task's in-distribution test set and each of its
off-distribution sets (`Task.off_distribution`), where the model's clean − corrupted gap is at least `MIN_GAP`
logits (below it the effect is a ratio of noise and is reported as n/a). Stability: mean pairwise IoU of the sets
found on `--samples` independent training-prompt samples, and across the α inits. Wall time: each method's score or
fit plus its steps over every target, on the first sample (the machine is shared: not a timing result).
"""

from __future__ import annotations

import argparse
import collections
import functools
import hashlib
import itertools
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ioi_superpose.analyses.exhaustive import subset_effects  # noqa: E402
from ioi_superpose.analyses.pruning import minimal_set  # noqa: E402
from ioi_superpose.api import learn_combinations  # noqa: E402
from ioi_superpose.baselines.circuit import acdc, eap_ig_scores  # noqa: E402
from ioi_superpose.baselines.scorers import SCORERS  # noqa: E402
from ioi_superpose.data.batch import ContrastBatch  # noqa: E402
from ioi_superpose.files import write_json  # noqa: E402
from ioi_superpose.groundtruth.benchmark import (  # noqa: E402
    mask_of,
    module_of,
    ranking,
    step_from_all,
    top_k_effects,
)
from ioi_superpose.models import load_frozen_model  # noqa: E402
from ioi_superpose.models.loading import load_toy_metadata  # noqa: E402
from ioi_superpose.toy.task_mixture import TaskMixtureDataModule  # noqa: E402

CHECKPOINTS = ("checkpoints/trained_task_mixture_seed0.pt", "checkpoints/trained_task_mixture_seed1.pt")
TARGETS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
MIN_GAP = 1.0
"""Held-out sets whose mean clean − corrupted logit difference is below this many logits get no effect (n/a)."""
SCORES = {
    "activation patching": "activation_patching",
    "attribution patching": "attribution_patching",
    "EAP-IG (inputs, signed)": "eap_ig",
}
"""Our ranked baselines: label → the registry's scorer (`baselines.scorers.SCORERS`)."""
EAP_IG_ACTIVATIONS = "EAP-IG (activations, |score|)"
ACDC = "ACDC (heads, τ 0.01)"
PEER_SCORES = ("auto-circuit EAP", "auto-circuit EAP-IG", "auto-circuit subnetwork probing")
PEER_ACDC = "auto-circuit ACDC"
LEARNED = "learned scalar + step"
NOT_SETTINGS = ("out", "peers", "model_name", "merge", "peer_wait", "note")
"""Arguments that say where things go, not what was run."""
Heads = frozenset


# --------------------------------------------------------------------------------------------------
# Prompts: the same for every method (and for experiments/peers/field_peers.py, which imports these).


def load(path: str) -> tuple[Any, TaskMixtureDataModule]:
    """A task-mixture checkpoint and the corpus that made it (its tasks and tokenizer)."""
    model, metadata = load_frozen_model(path), load_toy_metadata(Path(path))
    data = TaskMixtureDataModule(**{k: v for k, v in metadata["task_parameters"].items() if not k.startswith("_")})
    if data.tokenizer.to_dict() != metadata["tokenizer"]:
        raise SystemExit(f"{path}: its stored tokenizer is not the task mixture's; retrain it with this code.")
    return model, data


def one_length(data: TaskMixtureDataModule, task: str, set_name: str, n: int, seed: int) -> ContrastBatch:
    """`n` prompts of a task's set that all end at the set's most common END (drawn from 8n, in draw order),
    trimmed to that length: auto-circuit reads the answer at the last position."""
    batch = data.task_prompts(task, set_name, 8 * n, seed).batch
    end = collections.Counter(batch.end_pos.tolist()).most_common(1)[0][0]
    rows = (batch.end_pos == end).nonzero().flatten()[:n]
    if len(rows) < n:
        raise SystemExit(f"{task}/{set_name}: only {len(rows)} of {8 * n} prompts end at position {end}; ask fewer.")
    return batch[rows].trimmed()


def train_prompts(data: TaskMixtureDataModule, task: str, n: int, sample: int) -> ContrastBatch:
    """Training sample `sample` (its own seed) of the task's `train` set."""
    return one_length(data, task, "train", n, seed=100 + sample)


def dev_prompts(data: TaskMixtureDataModule, task: str, n: int) -> ContrastBatch:
    return one_length(data, task, "val", n, seed=200)


def held_out_sets(data: TaskMixtureDataModule, task: str, n: int) -> dict[str, ContrastBatch]:
    """The task's in-distribution test set and every off-distribution set (any lengths: our engine reads END)."""
    names = ("in_distribution", *data.tasks[task].off_distribution)
    return {name: data.task_prompts(task, name, n, seed=300).batch for name in names}


# --------------------------------------------------------------------------------------------------
# One (model, task, direction, sample): every method's set per target.


class Clock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = collections.defaultdict(float)

    def __call__(self, key: str, fn):
        start = time.perf_counter()
        out = fn()
        self.seconds[key] += time.perf_counter() - start
        return out


def as_list(heads: Heads) -> list[list[int]]:
    return sorted([int(layer), int(head)] for layer, head in heads)


def ranked_by_magnitude(grid: list[list[float]]) -> list[tuple[int, int]]:
    return ranking(torch.tensor(grid).abs())


def find_sets(model, train: ContrastBatch, dev: ContrastBatch, direction: str, args, sample: int,
              peers: Callable[[], dict[str, Any] | None]) -> dict[str, Any]:  # fmt: skip
    """{"sets": {method: {target: heads}}, "seconds": {method: s}, "fixed": {method: heads}} for one sample;
    `peers()`: auto-circuit's results on these prompts (None: no peer rows)."""
    shape = (model.cfg.n_layers, model.cfg.n_heads)
    clock = Clock()
    targets = args.targets
    sets: dict[str, dict[float, Heads]] = {}
    fixed: dict[str, Heads] = {}

    def stepped(method: str, order: list[tuple[int, int]] | None) -> None:
        sets[method] = {
            t: clock(method, lambda t=t: step_from_all(model, [train], direction, t, order)) for t in targets
        }

    def top_k(method: str, ranked: list[tuple[int, int]]) -> None:
        effects = clock(method, lambda: top_k_effects(model, dev, direction, ranked, max_k=args.max_top_k))
        out = {}
        for t in targets:
            reaching = (effects >= t).nonzero()
            out[t] = frozenset(ranked[: int(reaching[0]) + 1] if len(reaching) else ranked)
        sets[method] = out

    stepped("all heads + step", None)
    order = torch.randperm(shape[0] * shape[1], generator=torch.Generator().manual_seed(sample)).tolist()
    stepped("random order + step", [(i // shape[1], i % shape[1]) for i in order])

    rankings: dict[str, list[tuple[int, int]]] = {}
    for label, name in SCORES.items():
        score = clock(f"{label} + step", lambda name=name: SCORERS[name].score(model, train, direction))
        clock.seconds[f"{label} smallest top-k"] = clock.seconds[f"{label} + step"]
        rankings[label] = ranking(score.float().cpu())
    score = clock(f"{EAP_IG_ACTIVATIONS} + step", lambda: eap_ig_scores(
        model, train, direction, steps=args.ig_steps, interpolation="activations", endpoint=True))  # fmt: skip
    clock.seconds[f"{EAP_IG_ACTIVATIONS} smallest top-k"] = clock.seconds[f"{EAP_IG_ACTIVATIONS} + step"]
    rankings[EAP_IG_ACTIVATIONS] = ranking(score.abs().float().cpu())
    result = clock(ACDC, lambda: acdc(model, train, direction))
    fixed[ACDC] = frozenset(map(tuple, result.heads))
    for label, ranked in rankings.items():
        stepped(f"{label} + step", ranked[::-1])
        top_k(f"{label} smallest top-k", ranked)

    members = [{"l1": args.l1, "init": init} for init in args.inits]
    fits = clock(LEARNED, lambda: learn_combinations(
        model, train.clean_tokens, train.corrupted_tokens, train.answer_tokens, members, direction=direction,
        steps=args.fit_steps, seed=sample, end_positions=train.end_pos,
        answer_weights=train.answer_weights))  # fmt: skip
    fit_seconds = clock.seconds[LEARNED]
    for index, fit in enumerate(fits):
        module = module_of(fit.coefficients)
        method = LEARNED if index == 0 else f"learned scalar (init {args.inits[index]}) + step"
        sets[method] = {}
        clock.seconds[method] = fit_seconds
        for t in targets:
            pruned = clock(method, lambda t=t: minimal_set(model, [train], direction, module, t, 0.05))
            # A learned support that misses the target is the step's start (`reached: false`): that row has no set.
            sets[method][t] = frozenset(tuple(u) for u in pruned.support) if pruned.reached else None

    # auto-circuit's results last: experiments/peers/field_peers.py, running beside this script, has had the time.
    peer = peers()
    if peer is not None:
        for label in PEER_SCORES:
            ranked = ranked_by_magnitude(peer["scores"][label])
            clock.seconds[f"{label} + step"] = clock.seconds[f"{label} smallest top-k"] = peer["seconds"][label]
            stepped(f"{label} + step", ranked[::-1])
            top_k(f"{label} smallest top-k", ranked)
        fixed[PEER_ACDC] = frozenset(map(tuple, peer["acdc_heads"]))
        clock.seconds[PEER_ACDC] = peer["seconds"][PEER_ACDC]
    return {"sets": sets, "fixed": fixed, "seconds": dict(clock.seconds)}


def effect_of(model, batch: ContrastBatch, direction: str, heads: list[Heads]) -> list[float]:
    shape = (model.cfg.n_layers, model.cfg.n_heads)
    masks = torch.stack([mask_of(h, *shape) for h in heads])
    return [round(float(e), 4) for e in subset_effects(model, batch, masks, direction)]


def gap_of(model, batch: ContrastBatch) -> float:
    """The mean clean − corrupted logit difference (`subset_effects` of no head is 0 by construction: read it from the
    runs directly)."""
    from ioi_superpose.engine.metric import logit_diff
    from ioi_superpose.engine.runs import end_logits

    with torch.no_grad():
        values = [logit_diff(end_logits(model, tokens, batch.end_pos, batch.answer_tokens), batch.answer_weights).mean()
                  for tokens in (batch.clean_tokens, batch.corrupted_tokens)]  # fmt: skip
    return round(float(values[0] - values[1]), 4)


def iou(a: Heads | None, b: Heads | None) -> float | None:
    if a is None or b is None:
        return None
    return 1.0 if not a | b else len(a & b) / len(a | b)


def mean_iou(sets: list[Heads | None]) -> float | None:
    values = [iou(a, b) for a, b in itertools.combinations(sets, 2)]
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 3) if values else None


def area(sizes: dict[float, int | None], targets: list[float]) -> float | None:
    """Area under the set size vs target curve (trapezoids over the targets; None when a target has no set)."""
    values = [sizes[t] for t in targets]
    if any(v is None for v in values):
        return None
    return round(sum((targets[i + 1] - targets[i]) * (values[i] + values[i + 1]) / 2 for i in range(len(values) - 1)),
                 3)  # fmt: skip


def peer_entry(args, key: str) -> dict[str, Any] | None:
    """auto-circuit's results for this model and `key` from `--peers`, waiting up to `--peer-wait` seconds for
    experiments/peers/field_peers.py (run beside this script) to write them; None: no peer rows for this unit."""
    deadline = time.monotonic() + args.peer_wait
    while True:
        path = Path(args.peers)
        entry = json.loads(path.read_text()).get(args.model_name, {}).get(key) if path.exists() else None
        if entry is not None or time.monotonic() >= deadline:
            return entry
        time.sleep(10)


def run_unit(model, data, task: str, direction: str, args) -> dict[str, Any]:
    dev = dev_prompts(data, task, args.n_dev)
    samples = []
    for sample in range(args.samples):
        train = train_prompts(data, task, args.n_train, sample)
        if sample < args.peer_samples:
            peers = functools.partial(peer_entry, args, f"{task}/{direction}/{sample}")
        else:
            peers = lambda: None  # noqa: E731  (auto-circuit ran on the first --peer-samples samples only)
        start = time.perf_counter()
        samples.append(find_sets(model, train, dev, direction, args, sample, peers))
        print(f"    sample {sample}: {time.perf_counter() - start:.0f} s", flush=True)
    first = samples[0]
    methods = list(first["sets"])
    held_out = held_out_sets(data, task, args.n_held_out)
    gaps = {name: gap_of(model, batch) for name, batch in held_out.items()}
    # Every distinct set of the first sample, scored once on every held-out set the model does.
    distinct = sorted({h for m in methods for h in first["sets"][m].values() if h is not None} | set(first["fixed"].values()),
                      key=lambda h: (len(h), sorted(h)))  # fmt: skip
    effects = {name: dict(zip(distinct, effect_of(model, batch, direction, distinct)))
               for name, batch in held_out.items() if abs(gaps[name]) >= MIN_GAP and distinct}  # fmt: skip
    train0 = train_prompts(data, task, args.n_train, 0)
    train_effects = dict(zip(distinct, effect_of(model, train0, direction, distinct))) if distinct else {}
    rows: dict[str, Any] = {}
    targets = list(args.targets)
    for method in methods:
        found = first["sets"][method]
        sizes = {t: None if found[t] is None else len(found[t]) for t in targets}
        rows[method] = {
            "sizes": {str(t): sizes[t] for t in targets},
            "area": area(sizes, targets),
            "sets": {str(t): None if found[t] is None else as_list(found[t]) for t in targets},
            "train_effect": {str(t): None if found[t] is None else train_effects[found[t]] for t in targets},
            "held_out": {
                name: {str(t): None if found[t] is None else e[found[t]] for t in targets}
                for name, e in effects.items()
            },  # fmt: skip
            "sample_iou": {
                str(t): mean_iou([s["sets"][method][t] for s in samples if method in s["sets"]]) for t in targets
            },  # fmt: skip
            "seconds": round(first["seconds"].get(method, float("nan")), 2),
        }
    learned = [m for m in methods if m.startswith("learned scalar")]
    rows["learned scalar + step"]["init_iou"] = {str(t): mean_iou([first["sets"][m][t] for m in learned])
                                                 for t in targets}  # fmt: skip
    for method, heads in first["fixed"].items():
        rows[method] = {
            "set": as_list(heads), "size": len(heads), "train_effect": train_effects[heads],
            "held_out": {name: e[heads] for name, e in effects.items()},
            "sample_iou": mean_iou([s["fixed"].get(method) for s in samples]),
            "seconds": round(first["seconds"].get(method, float("nan")), 2),
        }  # fmt: skip
    return {"gaps": gaps, "train_gap": gap_of(model, train0), "rows": rows}


# --------------------------------------------------------------------------------------------------
# Report.


def curve_figure(unit: dict[str, Any], targets: list[float], title: str, path: Path) -> None:
    figure, axis = plt.subplots(figsize=(11, 5))
    colours = plt.get_cmap("tab20").colors
    for index, (method, row) in enumerate(unit["rows"].items()):
        if "sizes" not in row:
            axis.scatter([row["train_effect"]], [row["size"]], marker="x", s=60, label=f"{method} (one set)",
                         color=colours[index % len(colours)])  # fmt: skip
            continue
        sizes = [row["sizes"][str(t)] for t in targets]
        style = "-" if method.startswith("learned") else ("--" if "auto-circuit" in method else ":")
        axis.plot([t for t, s in zip(targets, sizes) if s is not None], [s for s in sizes if s is not None],
                  style, marker=".", label=method, color=colours[index % len(colours)],
                  lw=2.5 if method == LEARNED else 1.2)  # fmt: skip
    axis.set(xlabel="target effect on the training prompts", ylabel="heads in the set found (of 144)",
             title=title, yscale="log")  # fmt: skip
    axis.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)  # beside: not over lines
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def curve_methods(unit: dict[str, Any]) -> list[str]:
    return [m for m, row in unit["rows"].items() if "sizes" in row]


def beaten_by(unit: dict[str, Any]) -> list[str]:
    """Methods whose curve has a smaller area than the learned α's (fewer heads over the targets), or that reach a
    target the learned step missed."""
    mine = unit["rows"][LEARNED]["area"]
    out = []
    for method in curve_methods(unit):
        area = unit["rows"][method]["area"]
        if method.startswith("learned") or area is None:
            continue
        if mine is None or area < mine:
            out.append(method)
    return out


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def cell(text: str) -> str:
    """A markdown table cell (a method's name may hold |score|)."""
    return text.replace("|", "\\|")


def ordered_blocks(report: dict[str, Any]) -> list[tuple[str, str]]:
    """(model, "task/direction") pairs, task and direction first, so that the seeds of one case sit side by side."""
    blocks = [(name, key) for name, units in report["models"].items() for key in units]
    keys = list(dict.fromkeys(key for _, key in blocks))
    return sorted(blocks, key=lambda b: (keys.index(b[1]), b[0]))


def rank_of_learned(unit: dict[str, Any]) -> str:
    """'k of n': the learned α's place by area among the methods with a curve (1 = smallest; ties share a place)."""
    areas = [unit["rows"][m]["area"] for m in curve_methods(unit) if not m.startswith("learned")]
    mine = unit["rows"][LEARNED]["area"]
    if mine is None:
        return "no area (a target not reached)"
    return f"{1 + sum(a is not None and a < mine for a in areas)} of {len(areas) + 1}"


def area_figure(report: dict[str, Any], path: Path) -> None:
    """Area under each method's size vs target curve, per model × task × direction (log scale)."""
    blocks = ordered_blocks(report)
    methods = list(dict.fromkeys(m for n, k in blocks for m in curve_methods(report["models"][n][k])))
    figure, axis = plt.subplots(figsize=(max(8, 1.2 * len(blocks) + 4), 6))
    width = 0.8 / len(methods)
    colours = plt.get_cmap("tab20").colors
    for index, method in enumerate(methods):
        values = [report["models"][n][k]["rows"].get(method, {}).get("area") for n, k in blocks]
        axis.bar([b + index * width for b in range(len(blocks))], [v if v is not None else 0 for v in values], width,
                 label=method, color=colours[index % len(colours)],
                 edgecolor="black" if method == LEARNED else None)  # fmt: skip
    axis.set_xticks([b + 0.4 - width / 2 for b in range(len(blocks))], [f"{n}\n{k}" for n, k in blocks], fontsize=7)
    axis.set(ylabel="area under set size vs target (smaller: fewer heads)", yscale="log",
             title="Smallest sets found, summed over the targets")  # fmt: skip
    axis.legend(fontsize=6, ncol=3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def markdown(report: dict[str, Any]) -> str:
    settings = report["settings"]
    targets = [str(t) for t in settings["targets"]]
    lines = ["# The field's comparison on the models trained here", ""]
    if report.get("note"):
        lines += [f"**{report['note']}**", ""]
    # Who wins, first: where a peer or baseline beats the learned α.
    lost, won = [], []
    for name, units in report["models"].items():
        for key, unit in units.items():
            beaten = beaten_by(unit)
            areas = {m: unit["rows"][m]["area"] for m in curve_methods(unit) if unit["rows"][m]["area"] is not None}
            best = min(areas.values())
            winners = [m for m, a in areas.items() if a == best]
            mine = unit["rows"][LEARNED]["area"]
            line = (
                f"{name}, {key}: learned scalar + step area {fmt(mine)}; smallest area {fmt(best)} ("
                + (winners[0] if len(winners) == 1 else f"{len(winners)} of {len(areas)} methods tie")
                + ")"
            )
            (lost if beaten else won).append(line + (f"; beaten by {', '.join(beaten)}" if beaten else ""))
    lines += [
        "**Where a peer or baseline beats the learned α** (a smaller area under the set size vs target curve, i.e. "
        f"fewer heads over the targets {', '.join(targets)}, or a target the learned step did not reach): "
        f"{len(lost)} of {len(lost) + len(won)} model × task × direction blocks.", "",
        *[f"- {line}" for line in lost], "", "Where nothing beats it (ties included):", "",
        *[f"- {line}" for line in won], "",
    ]  # fmt: skip
    lines += [
        f"Written by `python experiments/field_comparison.py` ({report['seconds']} s on the shared 2-core machine "
        "under load: no timing here is a speed result) from `experiments/reports/field/report.json`; auto-circuit's "
        "rows from `experiments/peers/field_peers.py` in its own venv. Settings: "
        + ", ".join(f"{k} {v}" for k, v in settings.items() if k not in NOT_SETTINGS) + ".",
        "",
        "What each row is: see the module docstring of experiments/field_comparison.py. The effect is the project's "
        "cut (`rest=\"free\"`: heads outside the set recompute; denoising recovery, noising 1 − recovery); the "
        "circuit notion (`rest=\"frozen\"`) was not run (every piece takes `rest=`, but it doubles a run this "
        "machine could not afford). EAP-IG rows: `(inputs, signed)` is the benchmark's EAP-IG (Hanna et al.'s "
        "input interpolation, ranked by signed score); `(activations, |score|)` is auto-circuit's interpolation "
        "computed by our code, ranked by magnitude; `auto-circuit EAP-IG` is auto-circuit's own. ACDC: ours is "
        "head-level (heads only, visited output-backwards); auto-circuit's, as shipped, also prunes residual-stream "
        "and MLP edges and visits edges within a layer in an order that follows `hash(None)` (a set of edges), so "
        "its kept heads are not the circuit it evaluated. Each ACDC is one set whatever the target (a point, not a "
        "curve).",
        "",
    ]  # fmt: skip
    lines += (
        ["Checkpoints measured:", ""]
        + [
            f"- {name}: `{c['path']}`, training step {c['global_step']}, SHA-256 `{c['sha256'][:16]}…`"
            for name, c in report.get("checkpoints", {}).items()
        ]
        + [""]
    )
    lines += ["## Area under the set size vs target curve (heads × target; smaller is better)", "",
              "![areas](areas.png)", ""]  # fmt: skip
    blocks = ordered_blocks(report)
    methods = list(dict.fromkeys(m for name, key in blocks for m in curve_methods(report["models"][name][key])))
    lines += ["How the seeds differ (learned scalar + step: area, and its place by area among the methods):", ""]
    for key in dict.fromkeys(k for _, k in blocks):
        lines.append(f"- {key}: " + "; ".join(
            f"{n} area {fmt(report['models'][n][key]['rows'][LEARNED]['area'])}, place "
            f"{rank_of_learned(report['models'][n][key])}, train gap {report['models'][n][key]['train_gap']:+.2f}"
            for n, k in blocks if k == key))  # fmt: skip
    lines += [""]
    lines += ["| method | " + " | ".join(f"{n} {k}" for n, k in blocks) + " |",
              "| --- |" + " --- |" * len(blocks)]  # fmt: skip
    for method in methods:
        cells = [fmt(report["models"][n][k]["rows"].get(method, {}).get("area")) for n, k in blocks]
        lines.append(f"| {cell(method)} | " + " | ".join(cells) + " |")
    for name, key in blocks:
        unit = report["models"][name][key]
        gaps = ", ".join(f"{s} {g:+.2f}" for s, g in unit["gaps"].items())
        lines += [
            "", f"## {name}: {key}", "",
            f"![curve](curve_{name}_{key.replace('/', '_')}.png)", "",
            f"Clean − corrupted logit difference: training prompts {unit['train_gap']:+.2f}; held-out sets {gaps} "
            f"(effects only where |gap| ≥ {report['min_gap']}).", "",
            "| method | " + " | ".join(f"size @{t}" for t in targets) + " | area | held-out effect @0.9 | "
            "sample IoU @0.9 | seconds |",
            "| --- |" + " --- |" * (len(targets) + 4),
        ]  # fmt: skip
        for method, row in unit["rows"].items():
            if "sizes" in row:
                held = "; ".join(f"{s} {fmt(e.get('0.9'))}" for s, e in row["held_out"].items()) or "n/a"
                lines.append(f"| {cell(method)} | " + " | ".join(fmt(row["sizes"][t]) for t in targets)
                             + f" | {fmt(row['area'])} | {held} | {fmt(row['sample_iou'].get('0.9'))} | "
                             f"{fmt(row['seconds'], 1)} |")  # fmt: skip
        for method, row in unit["rows"].items():
            if "size" in row:
                held = "; ".join(f"{s} {fmt(e)}" for s, e in row["held_out"].items()) or "n/a"
                lines.append(f"| {cell(method)} (one set, train effect {fmt(row['train_effect'])}) | "
                             + " | ".join(str(row["size"]) for _ in targets)
                             + f" | – | {held} | {fmt(row['sample_iou'])} | {fmt(row['seconds'], 1)} |")  # fmt: skip
        init = unit["rows"][LEARNED].get("init_iou", {})
        lines += ["", "IoU of the learned step's sets across α inits " + ", ".join(map(str, settings["inits"]))
                  + ": " + ", ".join(f"@{t} {fmt(init.get(t))}" for t in targets) + "."]  # fmt: skip
    return "\n".join(lines) + "\n"


def checkpoint_record(path: str) -> dict[str, Any]:
    """Which weights a report measured: the file's SHA-256 and the training step it was exported at."""
    metadata = load_toy_metadata(Path(path))
    return {"path": path, "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest(),
            "global_step": metadata["metrics"]["global_step"]}  # fmt: skip


def write_report(report: dict[str, Any], out: Path) -> None:
    write_json(out / "report.json", report)
    (out / "report.md").write_text(markdown(report))
    area_figure(report, out / "areas.png")


def merge(paths: list[str], out: Path, note: str | None = None) -> None:
    """One report from runs of the same settings on different checkpoints (their figures copied beside it);
    `note`: a line under the title (what the runs were)."""
    reports = [json.loads(Path(p).read_text()) for p in paths]
    merged = dict(reports[0])
    if note:
        merged["note"] = note
    merged["settings"] = dict(
        reports[0]["settings"],
        checkpoints=list(dict.fromkeys(c for r in reports for c in r["settings"]["checkpoints"])),
        tasks=list(dict.fromkeys(t for r in reports for t in r["settings"]["tasks"])),
    )
    ignored = ("checkpoints", "tasks", *NOT_SETTINGS)
    for path, report in zip(paths, reports):
        differ = [k for k, v in report["settings"].items() if k not in ignored and merged["settings"].get(k) != v]
        if differ:
            raise SystemExit(f"{path}: settings {differ} differ from {paths[0]}'s; merge runs of one configuration.")
    merged["models"] = {}
    for report in reports:
        for name, units in report["models"].items():
            merged["models"].setdefault(name, {}).update(units)
    merged["checkpoints"] = {k: v for r in reports for k, v in r.get("checkpoints", {}).items()} or {
        Path(c).stem: checkpoint_record(c) for c in merged["settings"]["checkpoints"]
    }
    merged["seconds"] = round(sum(r["seconds"] for r in reports), 1)
    out.mkdir(parents=True, exist_ok=True)
    for path in paths:
        for figure in Path(path).parent.glob("curve_*.png"):
            if figure.parent.resolve() != out.resolve():
                shutil.copy(figure, out / figure.name)
    write_report(merged, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", nargs="+", default=list(CHECKPOINTS))
    parser.add_argument("--tasks", nargs="+", default=["ioi", "induction"])
    parser.add_argument("--directions", nargs="+", default=["denoising", "noising"])
    parser.add_argument("--targets", nargs="+", type=float, default=list(TARGETS))
    parser.add_argument("--samples", type=int, default=3, help="training-prompt samples (stability IoU)")
    parser.add_argument("--n-train", type=int, default=24)
    parser.add_argument("--n-dev", type=int, default=24)
    parser.add_argument("--n-held-out", type=int, default=48)
    parser.add_argument("--inits", nargs="+", type=float, default=[1.0, 0.5])
    parser.add_argument("--l1", type=float, default=1e-3)
    parser.add_argument("--fit-steps", type=int, default=40)
    parser.add_argument("--ig-steps", type=int, default=5)
    parser.add_argument("--max-top-k", type=int, default=32)
    parser.add_argument(
        "--peers",
        default="experiments/reports/field/peers.json",
        help="auto-circuit's scores (experiments/peers/field_peers.py); missing: no peer rows",
    )
    parser.add_argument("--peer-samples", type=int, default=3, help="samples auto-circuit ran on (the first ones)")
    parser.add_argument("--peer-wait", type=float, default=0.0, help="seconds to wait for a unit's peer results")
    parser.add_argument("--out", default="experiments/reports/field")
    parser.add_argument(
        "--merge",
        nargs="+",
        metavar="REPORT_JSON",
        help="no run: merge these runs' report.json (one model each, run side by side) into --out",
    )
    parser.add_argument("--note", help="with --merge: a line under the report's title")
    args = parser.parse_args()
    if args.merge:
        merge(args.merge, Path(args.out), args.note)
        return
    torch.set_num_threads(1)
    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"settings": dict(vars(args)), "min_gap": MIN_GAP, "models": {}}
    for path in args.checkpoints:
        model, data = load(path)
        name = args.model_name = Path(path).stem
        report["models"][name] = {}
        report.setdefault("checkpoints", {})[name] = checkpoint_record(path)
        for task in args.tasks:
            for direction in args.directions:
                print(f"{name} {task} {direction} ({time.perf_counter() - started:.0f} s)", flush=True)
                unit = run_unit(model, data, task, direction, args)
                report["models"][name][f"{task}/{direction}"] = unit
                curve_figure(unit, list(args.targets), f"{name}: {task}, {direction}",
                             out / f"curve_{name}_{task}_{direction}.png")  # fmt: skip
                write_report(report | {"seconds": round(time.perf_counter() - started, 1)}, out)
    report["seconds"] = round(time.perf_counter() - started, 1)
    write_report(report, out)
    print(f"done in {report['seconds']} s")


if __name__ == "__main__":
    main()

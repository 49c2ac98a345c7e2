"""`python -m ioi_superpose.report RUN_OR_SWEEP_DIR … --out DIR`

Turns finished runs (a directory with `summary.json`) and sweeps (a directory with `sweep.json`) into
`DIR/report.md` with its figures: one section per question of the seed notebook that the runs can
speak to, each saying plainly what the data does not show.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from ioi_superpose.analyses.max_activating_rows import worst_recovered
from ioi_superpose.arguments import OneLineParser
from ioi_superpose.errors import ConfigError, user_facing_main
from ioi_superpose.files import atomic_write, check_writable_dir, staged_directory
from ioi_superpose.plots import save_figure
from ioi_superpose.results.analysis import SEED_KEYS, compare_directions, identical_alpha, stability
from ioi_superpose.results.caveats import is_initial, prune_caveat
from ioi_superpose.results.pareto import pareto_figures
from ioi_superpose.results.run_figures import fronts_of
from ioi_superpose.results.schema import DirectionComparison, RunSummary, Stability, SweepSummary, Unit
from ioi_superpose.results.sweep_figures import recovery_against_l1

REPORT = "report.md"
MAX_ACTIVATING = "max_activating.json"
TABLES_DIR = "max_activating"
"""Each run's full max-activating table is copied into OUT/max_activating/, so the report links only files that
lie next to it (a report committed without its runs has no dangling links)."""


@dataclass
class Run:
    name: str
    directory: Path
    summary: RunSummary

    @property
    def label(self) -> str:
        s = self.summary
        return f"{self.name} ({s.direction}, {s.objective}, λ={s.setting('model', 'l1')})"


@dataclass
class Sweep:
    directory: Path
    summary: SweepSummary


def load(paths: Sequence[Path]) -> tuple[list[Run], list[Sweep]]:
    """The runs and sweeps in `paths`, each once: a run directory reached twice (given twice, spelled otherwise, or
    in two sweeps) is one run, a sweep given twice one sweep. Runs are named by their directory (`_unique_names`)."""
    runs: dict[Path, Run] = {}
    sweeps: dict[Path, Sweep] = {}
    for path in paths:
        if (path / "sweep.json").is_file():
            if path.resolve() in sweeps:
                continue
            sweep = Sweep(path, SweepSummary.read(path / "sweep.json"))
            sweeps[path.resolve()] = sweep
            for point in sweep.summary.points:
                directory = point.directory(path)
                if not (directory / "summary.json").is_file():
                    raise ConfigError(
                        f"{path}/sweep.json lists the point {point.point} at {directory}, which holds no summary.json: "
                        "the sweep was moved without its points, or a point was removed. Run the sweep again to "
                        "rewrite sweep.json, or leave the sweep out of the report."
                    )
                runs.setdefault(directory.resolve(), _run(directory, f"{path.name}/{point.point}"))
        elif (path / "summary.json").is_file():
            # `version_N` alone says nothing: name a run by its logger's name too.
            name = f"{path.parent.name}/{path.name}" if path.name.startswith("version_") else path.name
            runs.setdefault(path.resolve(), _run(path, name))
        else:
            raise ConfigError(f"{path} holds neither a summary.json (a finished run) nor a sweep.json (a sweep).")
    if not runs:
        raise ConfigError("the given directories hold no finished run.")
    return _unique_names(list(runs.values())), list(sweeps.values())


def _unique_names(runs: list[Run]) -> list[Run]:
    """Runs whose names collide (two loggers' `name/version_0` in different places) are named by as much of their
    directory's path as tells them apart: every table row, figure legend and copied file is then one run's."""
    for _ in range(64):  # each round lengthens the colliding names by one directory
        counts = Counter(run.name for run in runs)
        colliding = [run for run in runs if counts[run.name] > 1]
        if not colliding:
            return runs
        for run in colliding:
            parts = run.directory.resolve().parts
            depth = run.name.count("/") + 2
            run.name = "/".join(parts[-depth:]) if depth <= len(parts) else str(run.directory.resolve())
    return runs


def read_json(path: Path) -> dict[str, Any]:
    """A results file, or an error naming it (a truncated or hand-edited file is not a parse error without a name)."""
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(
            f"{path} is not valid JSON ({error}): it was cut short or edited. Run that run (or sweep) again to "
            "rewrite it, or leave its directory out of the report."
        ) from None


def _run(directory: Path, name: str) -> Run:
    return Run(name, directory, RunSummary.read(directory / "summary.json"))


def _fmt(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _heads(summary: RunSummary) -> str:
    def unit(h: Unit) -> str:  # a mixing entry names its source: target←source
        source = f"←{h.source_layer}.{h.source_head}" if h.source_layer is not None else ""
        return f"{h.layer}.{h.head}{source} ({h.alpha:.2f})"

    return ", ".join(unit(h) for h in summary.top_heads) or "none"


class Report:
    """Collects markdown and figures; writes them atomically into one directory."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.lines: list[str] = []
        self.figures: list[str] = []

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def figure(self, stem: str, figure: plt.Figure, caption: str) -> None:
        name = f"{stem}.png"
        atomic_write(self.out / name, lambda path: save_figure(figure, path))
        self.figures.append(name)
        self.add(f"![{caption}]({name})", "")

    def copy(self, source: Path, name: str) -> str:
        """Copy `source` to OUT/`name` (atomically) and return `name`, the link the report uses."""
        atomic_write(self.out / name, lambda path: shutil.copyfile(source, path))
        return name

    def write(self) -> Path:
        text = "\n".join(self.lines).rstrip() + "\n"
        return atomic_write(self.out / REPORT, lambda path: Path(path).write_text(text))


def sets_figure(runs: Sequence[Run]) -> plt.Figure:
    """Recovery on validation and on every test set, one group of bars per run."""
    set_names = ["val", *runs[0].summary.recovery.test]
    figure, axes = plt.subplots(figsize=(max(6, 0.9 * len(set_names)), 3.8))
    width = 0.8 / len(runs)
    for index, run in enumerate(runs):
        values = [run.summary.recovery.on(name) for name in set_names]
        axes.bar(
            [i + index * width for i in range(len(set_names))],
            [float("nan") if v is None else v for v in values],
            width,
            label=run.name,
        )
    axes.set_xticks(
        [i + 0.4 - width / 2 for i in range(len(set_names))], set_names, rotation=30, ha="right", fontsize=8
    )
    axes.set_ylabel("recovery (0 = base run, 1 = source run)")
    axes.set_xlabel("evaluation set")
    axes.axhline(1.0, color="grey", linewidth=0.5)
    axes.set_title("Recovery per evaluation set, one bar per run (denoising aims for 1, noising for 0; no bar: n/a)",
                   fontsize=9)  # fmt: skip
    axes.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, ncol=1 + len(runs) // 24)
    figure.tight_layout()
    return figure


def build_report(runs: Sequence[Run], sweeps: Sequence[Sweep], out: Path) -> Report:
    report = Report(out)
    gpt2 = [r for r in runs if r.summary.ioi_circuit is not None]
    report.add(
        "# ioi_superpose report",
        "",
        f"{len(runs)} run(s): " + ", ".join(f"`{r.name}`" for r in runs) + ".",
        "Models: " + ", ".join(sorted({f"`{r.summary.model_name}`" for r in runs})) + ".",
        "",
    )
    sweeps_section(report, sweeps)
    if not gpt2:
        report.add(
            "No run here is of GPT-2 small (none has its architecture), so nothing below speaks about "
            "GPT-2's IOI circuit; the questions are answered for the models that were run.",
            "",
        )

    report.add(
        "## The weights of superposition (notebook question 2)",
        "",
        "| run | direction | objective | L0 | val recovery | heads (α) |",
        "|---|---|---|---|---|---|",
    )
    for r in runs:
        s = r.summary
        report.add(
            f"| {r.name} | {s.direction} | {s.objective} | {s.l0} of {s.n_heads_total} | "
            f"{_fmt(s.recovery.val)} | {_heads(s)} |"
        )
    report.add("")
    caveats_section(report, runs)
    report.add(
        "### Recovery against the number of heads, per evaluation set (Pareto fronts)",
        "",
        "Each black marker is a learned α at the number of heads it patches and its recovery on the whole set "
        "(marker: combination family; filled: denoising, hollow: noising). Each line is a hand-made "
        "combination of a baseline ranking, computed once on validation prompts and evaluated on the first "
        "prompts of each set (the number is in the legend): uniform α = 1 on the top-k heads by activation, "
        "attribution or path patching, direct logit attribution or attention from END to the IO, and the "
        "attention-weighted combination; solid lines for denoising, dashed for noising (rankings whose curves are "
        "identical share one line, named together). Denoising aims for 1, noising for 0. Where the runs searched "
        "every head subset (models of at most 10 heads: their `exhaustive.json`), a thick grey line is the best set "
        "of each size and a star the smallest sets reaching the target: the true front on those prompts. Not shown: "
        "how each head's weight is used downstream; a set without a clean/corrupted gap has no points or lines.",
        "",
    )
    fronts = fronts_of([r.directory for r in runs])
    for set_name, figure in pareto_figures([r.summary for r in runs], fronts).items():
        report.figure(f"pareto_{set_name}", figure, f"recovery against the number of heads on {set_name}")
    for r in gpt2:
        circuit = r.summary.ioi_circuit
        assert circuit is not None  # `gpt2` holds the runs that have one
        report.add(
            f"`{r.name}` against the IOI paper's 26 heads: precision {_fmt(circuit.precision)}, recall "
            f"{_fmt(circuit.recall)}; by class "
            + ", ".join(f"{k} {_fmt(v, 2)}" for k, v in circuit.recall_by_class.items())
            + ".",
            "",
        )

    change_of_basis_section(report, runs)
    rotation_section(report, runs)
    circuit_criteria_section(report, runs)
    scrub_section(report, runs)
    head_types_section(report, runs)

    report.add("## Noising against denoising: do backup heads matter? (question 3)", "")
    if any(r.summary.setting("data", "corruption", "name_swap") == "name_swap" for r in runs):
        report.add(
            "Under the `name_swap` corruption the corrupted prompt is itself an IOI prompt with the names "
            "swapped, so denoising a head set on (clean, corrupted) is the same forward pass as noising it on "
            "(corrupted, clean) with the answers exchanged: over a set that holds both orders alike, the two "
            "directions must agree up to sampling noise (`tests/test_redundant_toy.py` checks the identity). "
            "A disagreement can only show under another corruption, e.g. `abc`.",
            "",
        )
    # Recomputed from the points, as stability below: a pair of identical runs is no comparison (`compare_directions`).
    comparisons = [(sweep, DirectionComparison.from_dict(c, str(sweep.directory))) for sweep in sweeps
                   for c in compare_directions([point.to_dict() for point in sweep.summary.points])]  # fmt: skip
    if comparisons:
        report.add(
            "| sweep | setting | denoising heads | noising heads | only denoising | only noising | IoU |",
            "|---|---|---|---|---|---|---|",
        )
        for sweep, c in comparisons:
            report.add(
                f"| {sweep.directory.name} | {c.setting} | {_names(c.denoising_heads)} | {_names(c.noising_heads)} | "
                f"{_names(c.only_denoising)} | {_names(c.only_noising)} | {_fmt(c.iou, 2)} |"
            )
        report.add(
            "",
            "Heads found only by noising are necessary without being sufficient alone (backup-like); "
            "heads found only by denoising are sufficient but have a backup. Not shown: which heads take "
            "over when another is removed (that is a path question).",
            "",
        )
    else:
        report.add("No sweep here runs both directions with the same settings: nothing to compare.", "")

    report.add("## Off distribution (the notebook's sanity check)", "")
    report.figure("sets", sets_figure(runs), "recovery per evaluation set")
    report.add(
        "Recovery is n/a where the model does not tell the clean prompt from the corrupted one "
        "(|clean − corrupted| below the summary's `min_gap_for_recovery`): there the question has no "
        "answer. A recovery near 1 says the same heads suffice on those prompts, not that the model "
        "solves them (see each set's clean accuracy in summary.json).",
        "",
    )

    max_activating_section(report, runs)

    report.add(
        "## Is a recovery of 1 the best we can do? (question 7)",
        "",
        "| run | objective | bounded | val recovery | per-prompt mean | median | share > 1 |",
        "|---|---|---|---|---|---|---|",
    )
    for r in runs:
        dist = r.summary.per_prompt_recovery.get("val")
        mean, median, above = (None, None, None) if dist is None else (dist.mean, dist.median, dist.share_above_1)
        report.add(
            f"| {r.name} | {r.summary.objective} | {r.summary.setting('model', 'bounded')} | "
            f"{_fmt(r.summary.recovery.val)} | {_fmt(mean)} | {_fmt(median)} | {_fmt(above, 2)} |"
        )
    report.add(
        "",
        "A mean above 1 with a median below it is an averaging effect of a few prompts; a median above 1 "
        "on held-out sets would be a real improvement on the clean run. Runs with objective `maximize` ask "
        "the question directly; the others are trained towards 1.",
        "",
    )

    l1_figures = [(sweep, figure) for sweep in sweeps
                  if (figure := recovery_against_l1(sweep.directory.name, sweep.summary.points))]  # fmt: skip
    if l1_figures:
        report.add(
            "## Recovery against the sparsity weight λ (sweeps)",
            "",
            "Each sweep that varies `--model.l1`: validation recovery and the number of units kept against λ, one line "
            "per setting of its other grid keys. Not shown: other seeds at the same λ (see the stability section).",
            "",
        )
        for sweep, figure in l1_figures:
            name = sweep.directory.name
            report.figure(f"l1_{_file_name(name)}", figure, f"recovery and L0 against λ, sweep {name}")

    # Recomputed from the points, not read from sweep.json: a run listed twice counts once (`stability`).
    stable = [Stability.from_dict(s, str(sweep.directory)) for sweep in sweeps
              for s in stability([point.to_dict() for point in sweep.summary.points], SEED_KEYS)]  # fmt: skip
    report.add("## Stability across seeds", "")
    identical = [(sweep, group) for sweep in sweeps
                 for group in identical_alpha([point.to_dict() for point in sweep.summary.points])]  # fmt: skip
    for sweep, group in identical:
        report.add(
            f"- `{sweep.directory.name}`: the points {', '.join(f'`{name}`' for name in group)} learned identical α "
            "(every value equal): their runs did not differ, so they are one run here, not an agreement (a grid "
            "value that changes nothing for this setting, e.g. a seed the family does not use)."
        )
    if identical:
        report.add("")
    if stable:
        report.add("| setting | runs | heads in every run | heads in any run | IoU |", "|---|---|---|---|---|")
        for s in stable:
            report.add(
                f"| {s.setting} | {len(s.runs)} | {_names(s.heads_in_every_run)} | "
                f"{_names(s.heads_in_any_run)} | {_fmt(s.intersection_over_union, 2)} |"
            )
        report.add("")
    else:
        report.add("No setting here was run with several seeds whose runs differ.", "")

    report.add(
        "## What these runs do not speak to",
        "",
        "- What an attention-head feature is (questions 5–6), and whether the heads are a specialised use of a "
        "general head type (question 4) beyond the type scores above, where a run stored them: patching recovery "
        "says which heads carry the behaviour on these prompts, not what else they do.",
        "",
    )
    return report


def sweeps_section(report: Report, sweeps: Sequence[Sweep]) -> None:
    """Each sweep's size, and the points of an unfinished one (the tables below hold only finished points)."""
    for sweep in sweeps:
        summary = sweep.summary
        line = f"Sweep `{sweep.directory.name}`: {summary.n_finished} of {summary.n_points} points finished"
        if summary.n_finished >= summary.n_points:
            report.add(line + ".", "")
        elif summary.missing is None:
            report.add(line + f"; {summary.n_points - summary.n_finished} missing (its sweep.json, written by an "
                       "older version, does not name them). Run the sweep's command again to finish them.", "")
        else:
            report.add(line + "; **missing**: " + ", ".join(f"`{name}`" for name in summary.missing) + ". Nothing "
                       "below speaks for them: run the sweep's command again to finish them.", "")


def caveats_section(report: Report, runs: Sequence[Run]) -> None:
    """Runs whose numbers are not what the table suggests: α never trained, a minimal set that missed its target."""
    lines = []
    for r in runs:
        if is_initial(r.summary.alpha):
            lines.append(
                f"- `{r.name}`: α is the initial one ({r.summary.alpha}): its numbers are those of --model.init "
                f"= {r.summary.setting('model', 'init')}"
                + (", pruned to a minimal set" if r.summary.prune and r.summary.prune.get("reached") else "")
                + ", not of a learned combination."
            )
        shortfall = prune_caveat(r.summary.prune)
        if shortfall:
            lines.append(f"- `{r.name}`: {shortfall}")
    if lines:
        report.add("**Read with care:**", "", *lines, "")


def change_of_basis_section(report: Report, runs: Sequence[Run]) -> None:
    """Question 1 from the `mixing` runs: does moving other heads' differences into a head help?"""
    report.add("## A change of basis that puts the heads in one layer (question 1)", "")
    mixing = [r for r in runs if r.summary.setting("model", "combination") == "mixing"]
    if not mixing:
        report.add(
            "No run here uses `--model.combination mixing` (a learned map across heads, within a layer and from "
            "earlier layers into a later one): these runs do not speak to this question.",
            "",
        )
        return
    report.add(
        "| run | direction | mixing_target | init | L0 (entries) | cross-head entries | largest cross-head |M| | "
        "val recovery | test recovery |",
        "|---|---|---|---|---|---|---|---|---|",
    )
    for r in mixing:
        s = r.summary
        largest = max((abs(h.alpha) for h in s.top_heads if h.is_cross_head), default=None)
        report.add(
            f"| {r.name} | {s.direction} | {s.setting('model', 'mixing_target')} | {s.setting('model', 'init')} | "
            f"{s.l0} | {len(s.cross_head_support)} | {_fmt(largest, 2)} | {_fmt(s.recovery.val)} | "
            f"{_fmt(s.recovery.on('in_distribution'))} |"
        )
    report.add(
        "",
        "A `mixing` map adds to each head's patch a weighted share of other heads' differences (source − "
        "current z) from its own and earlier layers; with `mixing_target` L only layer L's heads are patched. "
        "Cross-head entries are the map's off-diagonal units above the L0 threshold. If a target layer's map "
        "reaches the recovery of the whole model's cut with few cross-head entries, the heads it draws on act "
        "as if they were in that layer. Not shown: a full d_head × d_head change of basis per head pair (the "
        "map has one scalar per pair, so a moved difference is written through the target head's W_O), nor "
        "that no sparser map exists (training is local, pruning greedy).",
        "",
    )


def rotation_section(report: Report, runs: Sequence[Run]) -> None:
    """`rotation` runs: the dimensions needed to reach the target, and each head's loading on the kept subspace."""
    rotated = [r for r in runs if r.summary.rotation is not None]
    if not rotated:
        return
    report.add(
        "### The learned rotation: dimensions and head loadings",
        "",
        "`--model.combination rotation` learns an orthogonal R over a layer's concatenated z and a mask on its "
        "dimensions. **dims needed**: the fewest top-mask dimensions whose hard mask reaches the target effect on "
        "the training prompts; per layer, **dims kept** and each head's **loading** (the kept directions' squared "
        "norm falling in that head, summed: the loadings of a layer add to its dims kept). A subspace that lives "
        "in one head loads on that head alone. Not shown: what the directions mean, nor that no smaller subspace "
        "reaches the target with another R (training is local).",
        "",
        "| run | direction | target | dims needed | layer | dims kept | mask > 0.5 | head loadings | R moved |",
        "|---|---|---|---|---|---|---|---|---|",
    )
    for r in rotated:
        rotation = r.summary.rotation or {}
        for layer, record in sorted((rotation.get("layers") or {}).items(), key=lambda item: int(item[0])):
            loadings = " ".join(f"{layer}.{head}: {_fmt(value, 2)}"
                                for head, value in enumerate(record.get("head_loading_sum") or []))  # fmt: skip
            report.add(
                f"| {r.name} | {r.summary.direction} | {_fmt(rotation.get('target'), 2)} | "
                f"{_fmt(rotation.get('dims_needed'))} | {layer} | {_fmt(record.get('dims_kept'))} | "
                f"{_fmt(record.get('mask_above_half'))} | {loadings} | {_fmt(record.get('rotation_moved'), 3)} |"
            )
    report.add("")


FAITHFUL, COMPLETE, MINIMAL = 0.9, 0.1, 0.05
"""Verdict thresholds (ours; the IOI paper gives none): faithful if F(C)/F(M) ≥ 0.9, complete if the worst greedy
incompleteness ≤ 0.1·|F(M)|, minimal if every head's minimality ≥ 0.05·|F(C)| (as experiments/toy_ioi_circuit.py)."""


def circuit_verdict(scores: dict[str, Any]) -> tuple[bool, bool, bool]:
    """(faithful, complete, minimal) of one ablation's `CircuitScores.to_dict()`."""
    faithfulness = scores.get("faithfulness")
    faithful = isinstance(faithfulness, (int, float)) and faithfulness >= FAITHFUL
    complete = scores["completeness"]["relative"] <= COMPLETE
    minimal = all(v["relative"] >= MINIMAL for v in scores["minimality"].values())
    return faithful, complete, minimal


def circuit_criteria_section(report: Report, runs: Sequence[Run]) -> None:
    """`circuit_criteria` runs: the learned head set's faithfulness, completeness and minimality per ablation."""
    scored = [r for r in runs if r.summary.circuit]
    if not scored:
        return
    report.add(
        "### Is the learned head set a circuit? (the IOI paper's criteria, per ablation)",
        "",
        "F(S): the clean prompts' mean logit difference with every head outside S ablated (its z set to the "
        "ablation's value: the paired corrupted prompt, another clean prompt, the mean per position role, or zero); "
        "M: every head, C: the learned set. **faithfulness** F(C)/F(M); **incompleteness** the worst "
        "|F(C∖K) − F(M∖K)| over K ⊆ C found greedily (relative to |F(M)|); **minimality** per head v the largest "
        "|F(C∖(K∪v)) − F(C∖K)| (relative to |F(C)|; the least-needed head shown). Verdicts (thresholds ours): "
        f"faithful if F(C)/F(M) ≥ {FAITHFUL}, complete if the relative incompleteness ≤ {COMPLETE}, minimal if every "
        f"head's relative minimality ≥ {MINIMAL}. Not shown: sets other than the learned one (the exhaustive sets are "
        "in experiments/reports/toy_ioi_circuit), and path-level criteria (these are knockouts of whole heads).",
        "",
        "| run | heads | ablation | F(M) | F(C) | F(C)/F(M) | worst incompleteness (relative) | least-needed head: "
        "minimality (relative) | faithful | complete | minimal |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    )
    yes = {True: "yes", False: "**no**"}
    for r in scored:
        changes = set()
        for ablation, scores in (r.summary.circuit or {}).items():
            if "error" in scores:
                report.add(f"| {r.name} | | {ablation} | not scored: {scores['error']} | | | | | | | |")
                continue
            heads = _names(scores.get("heads") or [])
            least = min(scores["minimality"].items(), key=lambda item: item[1]["score"], default=None)
            least_text = "–" if least is None else (
                f"{least[0]}: {_fmt(least[1]['score'], 2)} ({_fmt(least[1]['relative'], 3)})")  # fmt: skip
            verdict = circuit_verdict(scores)
            changes.add(verdict)
            report.add(
                f"| {r.name} | {heads} | {ablation} | {_fmt(scores['model_logit_diff'], 2)} | "
                f"{_fmt(scores['circuit_logit_diff'], 2)} | {_fmt(scores['faithfulness'])} | "
                f"{_fmt(scores['completeness']['score'], 2)} ({_fmt(scores['completeness']['relative'], 3)}) | "
                f"{least_text} | {' | '.join(yes[v] for v in verdict)} |"
            )
        if len(changes) > 1:
            report.add(f"| {r.name} | | the verdict changes with the ablation | | | | | | | | |")
    report.add("")


def scrub_section(report: Report, runs: Sequence[Run]) -> None:
    """`scrub` runs: the learned head set under a hypothesis file's features, by causal scrubbing."""
    scrubbed = [r for r in runs if r.summary.scrub is not None]
    if not scrubbed:
        return
    report.add(
        "### Does the learned set carry the behaviour for the reason claimed? (causal scrubbing)",
        "",
        "`--model.scrub FILE`: each learned head takes its z from a prompt that agrees with the current one on the "
        "features the file gives it (drawn within that class, the prompt itself included); every other head from a "
        "random other prompt. **fraction** = (scrubbed − fully resampled) / (clean − fully resampled) of the mean "
        "logit difference (1: the claim explains all the behaviour the heads carry; 0: no more than resampling every "
        "head), with a 95 % bootstrap interval over the draws. **flat**: each head's z from the unpatched run of its "
        "source (is each head's output a function of its features?); **treeified**: a learned head in layer ≥ 1 runs "
        "on its source with its inputs scrubbed along the hypothesis's heads (does the behaviour flow only through "
        "them?). **alone in class**: the largest share of prompts whose class is the prompt itself (there the claim is "
        "not tested). docs/causal_scrubbing.md.",
        "",
        "| run | heads: features | prompts | version | fraction | 95 % interval | clean / resampled / scrubbed | alone "
        "in class |",
        "|---|---|---|---|---|---|---|---|",
    )
    for r in scrubbed:
        record = r.summary.scrub or {}
        if "error" in record:
            report.add(f"| {r.name} | {_names(record.get('heads') or [])} | not scored: {record['error']} | | | | | |")
            continue
        claims = "; ".join(f"{head}: {', '.join(features)}" for head, features in record["hypothesis"].items())
        for set_name, scores in record.get("sets", {}).items():
            if "error" in scores:
                report.add(f"| {r.name} | {claims} | {set_name}: not scored: {scores['error']} | | | | | |")
                continue
            for version, score in scores.items():
                if "error" in score:
                    report.add(f"| {r.name} | {claims} | {set_name} | {version} | not scored: {score['error']} | | | |")
                    continue
                low, high = score["interval"]
                alone = max(score["singleton_share"].values(), default=0.0)
                means = " / ".join(_fmt(score[key], 2) for key in ("clean", "resampled", "scrubbed"))
                report.add(
                    f"| {r.name} | {claims} | {set_name} ({score['prompts']}) | {version} | "
                    f"{_fmt(score['fraction'])} | [{_fmt(low)}, {_fmt(high)}] | {means} | {_fmt(alone, 2)} |"
                )
    report.add("")


HEAD_TYPE_COLUMNS = ("previous_token", "duplicate_token", "induction", "copying", "copying_cosine", "copying_top5",
                     "attn_end_io", "attn_end_s1", "attn_end_s2")  # fmt: skip


def head_types_section(report: Report, runs: Sequence[Run]) -> None:
    """`head_types` runs: the type scores of the learned heads (`analyses/head_types.py`)."""
    typed = [r for r in runs if r.summary.head_types is not None]
    if not typed:
        return
    report.add(
        "### Which head types are the learned heads? (question 4)",
        "",
        "Scores of each learned head (`--model.head_types true`; on the run's first training prompts): "
        "TransformerLens's previous-token, duplicate-token and induction detector scores (the share of attention on "
        "the pattern), copying Σλ/Σ|λ| of the OV circuit over the prompts' names (+1 copies names, −1 suppresses "
        "them; scale-free within the circuit), copying_cosine (the circuit's cosine with the identity: near 0 for a "
        "head that only reads names), copying_top5 (names whose own logit is in the "
        "circuit row's top 5), and the mean attention from END to IO, S1 and S2. Not shown: whether a type is why a "
        "head was learned (a score is a property of the head on these prompts, not of its role in the behaviour).",
        "",
        "| run | head | " + " | ".join(HEAD_TYPE_COLUMNS) + " |",
        "|---|---|" + "---|" * len(HEAD_TYPE_COLUMNS),
    )
    for r in typed:
        record = r.summary.head_types or {}
        heads = record.get("heads") or []
        if "error" in record:
            padding = " |" * (len(HEAD_TYPE_COLUMNS) - 1)
            report.add(f"| {r.name} | {_names(heads)} | not scored: {record['error']} |" + padding)
            continue
        scores = record.get("scores") or {}
        if not heads:
            report.add(f"| {r.name} | none | " + " | ".join("–" for _ in HEAD_TYPE_COLUMNS) + " |")
        for layer, head in heads:
            cells = [_fmt(scores[name][layer][head], 2) if name in scores else "n/a" for name in HEAD_TYPE_COLUMNS]
            report.add(f"| {r.name} | {layer}.{head} | " + " | ".join(cells) + " |")
    report.add("")


ROWS_PER_END = 2
"""Rows of each run's max-activating table shown in the report, at each end (the run's own table has more)."""


def max_activating_section(report: Report, runs: Sequence[Run]) -> None:
    """Each run's largest and smallest moves from its `max_activating.json`, and a link to its table."""
    report.add("## Max-activating examples (off distribution)", "")
    tables = {r.name: (r, read_json(path)) for r in runs if (path := r.directory / MAX_ACTIVATING).is_file()}
    for run, table in tables.values():
        if not isinstance(table, dict) or not isinstance(table.get("rows"), list):
            raise ConfigError(
                f"{run.directory / MAX_ACTIVATING} holds no table (a 'rows' list): it was edited by hand or damaged. "
                "Run that run again, or leave it out of the report."
            )
    if not tables:
        report.add(f"No run here has a {MAX_ACTIVATING} (written after fit unless `--max_activating.per_set 0`).", "")
        return
    report.add(
        "Over a seeded corpus of generated prompts (in distribution and every off-distribution set, with each "
        "corruption the run drew), the prompts on which each run's learned combination moves the answer most and "
        "least. "
        "**move** = patched − base logit difference (IO − S at END): for denoising (base = corrupted prompt) "
        "a positive move pushes towards IO; for noising (base = clean prompt) a negative one pushes towards S. "
        "Recovery is the prompt's own (n/a where its clean and corrupted runs are closer than the minimum gap). "
        "**worst recovery**: the prompts on which the patch fails most by that recovery (lowest for denoising, "
        "highest for noising), which prompts the model itself gets wrong do not crowd out as they do the bottom by "
        "move.",
        "",
        "| run | end | rank | set | corruption | prompt | IO / S | clean | corrupted | patched | move | recovery |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    )
    for name, (_, table) in tables.items():
        rows = table["rows"]
        shown = [("top", row) for row in rows[:ROWS_PER_END]]
        shown += [("bottom", row) for row in rows[::-1][:ROWS_PER_END] if row not in rows[:ROWS_PER_END]]
        shown += [("worst recovery", row) for row in worst_recovered(rows, table.get("direction", "denoising"),
                                                                     ROWS_PER_END)]  # fmt: skip
        for end, row in shown:
            report.add(
                f"| {name} | {end} | {row['rank']} of {len(rows)} | {row['set_name']} | {row['corruption']} | "
                f"{row['prompt'].replace('|', '/')} | {row['io']} / {row['s']} | {_fmt(row['clean_logit_diff'])} | "
                f"{_fmt(row['corrupted_logit_diff'])} | {_fmt(row['patched_logit_diff'])} | {_fmt(row['move'])} | "
                f"{_fmt(row['recovery'])} |"
            )
    report.add("", f"Each run's full table (top and bottom k, and each set's mean move), copied into {TABLES_DIR}/:")
    for name, (run, _) in tables.items():
        source = run.directory / "max_activating.md"
        if not source.is_file():
            report.add(f"- `{name}`: its run directory has no max_activating.md")
            continue
        target = report.copy(source, f"{TABLES_DIR}/{_file_name(name)}.md")
        report.add(f"- `{name}`: [{target}]({target})")
    missing = [r.name for r in runs if r.name not in tables]
    if missing:
        report.add(f"- no table: {', '.join(f'`{name}`' for name in missing)}")
    report.add(
        "",
        "Not shown: what the heads respond to outside these templates — the corpus is the project's own IOI-shaped "
        "generators, not natural text; which heads make a given prompt move; and whether a large move is a "
        "success: a patch that recovers a prompt fully moves it by exactly its clean − corrupted gap, so read "
        "the move with the recovery, and a strongly negative move under denoising can be the patch faithfully "
        "reproducing a clean run that itself prefers S.",
        "",
    )


def _file_name(run_name: str) -> str:
    """A run's name as one file name: `sweep/point` becomes `sweep__point`."""
    return run_name.replace("/", "__")


def _names(heads: Sequence[Sequence[int]]) -> str:
    return ", ".join(".".join(map(str, head)) for head in heads) or "–"


@user_facing_main
def main(args: Sequence[str] | None = None) -> None:
    parser = OneLineParser(
        prog="python -m ioi_superpose.report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("paths", nargs="+", type=Path, help="run directories (summary.json) or sweep directories")
    parser.add_argument("--out", required=True, type=Path, help="where report.md and its figures go")
    parsed = parser.parse_args(args)
    try:
        check_writable_dir(parsed.out, "--out")
        runs, sweeps = load(parsed.paths)
        # All or nothing: the report and its figures are written aside and moved into --out once complete, so a
        # failure leaves an earlier report there whole (report.md last: it links the others).
        with staged_directory(parsed.out, last=(REPORT,)) as stage:
            build_report(runs, sweeps, stage).write()
    except OSError as error:  # an unreadable run directory or an unwritable --out
        raise ConfigError(f"{error}") from error
    print(f"report: {parsed.out / REPORT}")


if __name__ == "__main__":
    main()

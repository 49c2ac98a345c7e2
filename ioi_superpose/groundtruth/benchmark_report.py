"""The benchmark's report: its markdown, rendered from the result `benchmark.run_benchmark` returns (or its JSON file:
the committed reports re-render from `experiments/reports/benchmark*.json`). Nothing here runs a model."""

from __future__ import annotations

from typing import Any

from ioi_superpose.groundtruth.benchmark import CONTROL_A, score_rows

STEP_VARIANTS = (" + step", " + restarts + step", " + α-ordered step")


def baseline_groups(methods: list[str]) -> dict[str, list[str]]:
    """Each baseline's variants (its threshold rule, top-k, smallest top-k, + step), and the random ranking."""
    groups = {label: [m for m in methods if m.startswith(label)] for _, label, *_ in score_rows()}
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

"""Markdown of the analyses' results (`analyses/`): rendered from what they computed, running nothing."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from ioi_superpose.analyses.corpus import CorpusExamples
from ioi_superpose.analyses.max_activating import SEED_PREFIX, Example, MaxActivating
from ioi_superpose.engine.metric import MIN_GAP
from ioi_superpose.engine.vocabulary import Head


def max_activating_markdown(table: MaxActivating) -> str:
    """The table as max_activating.md: the k prompts at each end and each set's moves."""
    lines = [
        "# Max-activating examples of the learned combination",
        "",
        f"Model `{table.model_name}`, {table.direction}, combination `{table.combination}`. Corpus: {len(table.rows)} "
        f"prompts, {table.per_set} per set and corruption, drawn by the datamodule's generators with seeds named "
        f"`{SEED_PREFIX}/<set>/<corruption>` from seed {table.corpus_seed} (fresh prompts, not the test sets).",
        "",
        "**move** = patched − base logit difference (IO − S at END; IO and S are the clean prompt's answers). "
        + table.sign_convention(),
        "",
        f"**recovery** = (patched − corrupted) / (clean − corrupted) of the prompt's own logit differences; n/a "
        f"where |clean − corrupted| < {MIN_GAP}. Corrupted prompts are in max_activating.json.",
        "",
    ]
    worst = "lowest recovery first" if table.direction == "denoising" else "highest recovery first"
    for title, rows in (
        (f"Top {len(table.top())} (largest move)", table.top()),
        (f"Bottom {len(table.bottom())} (smallest move, smallest first)", table.bottom()),
        (f"Bottom {len(table.worst_recovered())} by the prompt's own recovery (where the patch fails most, {worst}; "
         "prompts without a clean/corrupted gap left out)", table.worst_recovered()),
    ):  # fmt: skip
        lines += [f"## {title}", "", *examples_table(rows), ""]
    lines += [
        "## By set",
        "",
        "| set | corruption | prompts | mean move | min move | max move | median recovery | recovery n/a |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for g in table.by_set():
        lines.append(
            f"| {g['set']} | {g['corruption']} | {g['prompts']} | {g['mean_move']:.3f} | {g['min_move']:.3f} | "
            f"{g['max_move']:.3f} | {_number(g['median_recovery'])} | {g['no_recovery']} |"
        )
    for set_name, why in table.skipped.items():
        lines += ["", f"Skipped `{set_name}`: {why}."]
    return "\n".join(lines) + "\n"


def examples_table(rows: Sequence[Example]) -> list[str]:
    """The rows as a markdown table (rank, set, prompt, answers, logit differences, move, recovery)."""
    lines = [
        "| rank | set | corruption | prompt | IO / S | clean | corrupted | patched | move | recovery |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.rank} | {r.set_name} | {r.corruption} | {_cell(r.prompt)} | {_cell(r.io)} / {_cell(r.s)} | "
            f"{r.clean_logit_diff:.3f} | {r.corrupted_logit_diff:.3f} | {r.patched_logit_diff:.3f} | "
            f"{r.move:.3f} | {_number(r.recovery)} |"
        )
    return lines


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def corpus_cut_note(examples: CorpusExamples) -> str | None:
    """The line that says which texts were cut at the model's context, or None."""
    if not examples.cut:
        return None
    shown = ", ".join(map(str, examples.cut[:10])) + (" …" if len(examples.cut) > 10 else "")
    return (f"note: {len(examples.cut)} corpus text(s) are longer than the model's context ({examples.n_ctx} tokens) "
            f"and were cut: only their first {examples.n_ctx} tokens are ranked (line {shown}, counted as the tables' "
            "line column). Split such texts into lines of at most that length to rank all of them.")  # fmt: skip


def corpus_markdown(examples: CorpusExamples) -> str:
    """The positions as corpus_examples.md: the k of largest and of smallest effect."""
    lines = [
        f"# Max-activating positions on the corpus ({examples.n_positions} positions)",
        "",
        "Effect: direct effect of the learned combination's weighted head outputs on the logit of the true next "
        "token (`ioi_superpose/corpus.py`). Top: pushes it up most; bottom: down most.",
    ]
    note = corpus_cut_note(examples)
    if note:
        lines += ["", note]
    for title, rows in (("Top", examples.top), ("Bottom", examples.bottom)):
        lines += ["", f"## {title}", "", "| rank | line | pos | context | next | effect |",
                  "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for e in rows:
            context = e.context.replace("|", "\\|")
            lines.append(f"| {e.rank} | {e.text} | {e.position} | {context} | {e.next_token} | {e.effect:.3f} |")
    return "\n".join(lines) + "\n"


def head_types_table(scores: dict[str, Tensor], selected: Sequence[Head] = (), digits: int = 2) -> str:
    """A markdown table, one row per head, selected heads in bold and marked ★."""
    chosen = {tuple(head) for head in selected}
    types = list(scores)
    n_layers, n_heads = next(iter(scores.values())).shape
    lines = ["| head | " + " | ".join(types) + " |", "| --- |" + " --- |" * len(types)]
    for layer in range(n_layers):
        for head in range(n_heads):
            mark = (layer, head) in chosen
            name = f"**{layer}.{head} ★**" if mark else f"{layer}.{head}"
            cells = [f"{float(scores[t][layer, head]):.{digits}f}" for t in types]
            if mark:
                cells = [f"**{c}**" for c in cells]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

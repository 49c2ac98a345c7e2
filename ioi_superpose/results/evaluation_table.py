"""The console's summary of `validate` and `test`: one line of named figures per evaluation set.

Lightning prints one table per dataloader, unnamed (dataloader 0–8), with every set's metric names in each and a
recovery even where the set has no clean/corrupted gap (615 lines for the main job's `test`). This is what a
researcher reads instead: per set, the recovery — n/a where the model does not tell clean from corrupted, as in
summary.json — the mean logit differences (IO − S at END) of the clean, corrupted and patched runs, and the share
of prompts on which the patched and the clean run rank IO above S.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ioi_superpose.data.answer_metrics import MetricName
from ioi_superpose.data.splits import IN_DISTRIBUTION
from ioi_superpose.results.summary import recovery_or_none, stage_metrics

HEADER = ("set", "recovery", "clean LD", "corrupted LD", "patched LD", "clean acc", "patched acc")
PROB_HEADER = ("set", "recovery", "clean PD", "corrupted PD", "patched PD", "clean acc", "patched acc")
"""A `prob_diff` task's columns: the mean probability difference P(correct) − P(incorrect) instead of LD."""


def evaluation_table(
    metrics: Mapping[str, float], stage: str, set_names: Sequence[str], metric: MetricName = "logit_diff"
) -> str:
    """The lines for `stage` (`val` or `test`) of `metrics` (a trainer's `callback_metrics`, as floats), one per set
    of `set_names` (`val`: the validation set, named `val`); `metric`: the task's, which the figures measure."""

    def shown(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    header = HEADER if metric == "logit_diff" else PROB_HEADER
    rows = [header]
    for name in set_names:
        values = stage_metrics(dict(metrics), stage, name)
        if not values:
            continue
        rows.append((
            "val" if stage == "val" else name, shown(recovery_or_none(values, metric)),
            shown(values.get("clean_logit_diff")), shown(values.get("corrupted_logit_diff")),
            shown(values.get("logit_diff")), shown(values.get("clean_accuracy")), shown(values.get("accuracy")),
        ))  # fmt: skip
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = ["  ".join(cell.ljust(width) if column == 0 else cell.rjust(width)
                       for column, (cell, width) in enumerate(zip(row, widths))) for row in rows]  # fmt: skip
    if metric == "logit_diff":
        return "\n".join(lines + ["LD: mean logit difference IO − S at END; acc: share of prompts ranking IO above S; "
                                  "recovery n/a where clean ≈ corrupted."])  # fmt: skip
    return "\n".join(lines + ["PD: mean probability difference P(correct) − P(incorrect) at END; acc: share of prompts "
                              "with P(correct) > P(incorrect); recovery n/a where clean ≈ corrupted."])  # fmt: skip


def stage_set_names(stage: str, test_set_names: Sequence[str]) -> list[str]:
    """The sets `stage` evaluates: validation (in distribution) or every test set."""
    return [IN_DISTRIBUTION] if stage == "val" else list(test_set_names)

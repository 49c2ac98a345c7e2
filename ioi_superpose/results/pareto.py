"""Pareto fronts: recovery against the number of heads, one figure per evaluation set (validation and
every test set), drawn from run summaries — the same figure in the report (PNG), in a run's
TensorBoard (its own point) and in a sweep's (every finished point).

On each figure: every learned α is a point at (heads it patches, its recovery on the whole set as
summary.json reports it), its marker the combination family and its fill the direction (denoising
filled, noising hollow); every baseline ranking's top-k curve (`baselines.callbacks.CombinationBaselines`:
α = 1 on the k best heads of each score, and attention-weighted) is a line, solid for denoising, dashed
for noising, on the same prompts as the learned points (the whole set; `curve_prompts` of the callback
can make them its first n, and the legend then says how many). Curves are α-independent: each direction's come
from its first run that has them. Undefined recovery (the set's gap below `engine.metric.MIN_GAP`) is left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ioi_superpose.data.splits import VAL_SET
from ioi_superpose.plots import merge_identical, nan_for_none
from ioi_superpose.results.run_figures import ExhaustiveFront, draw_exhaustive_front
from ioi_superpose.results.schema import RunSummary

FAMILY_MARKERS = {"scalar": "o", "per_position": "s", "hard_concrete": "^", "mixing": "D"}
OTHER_FAMILY_MARKER = "P"
DIRECTION_LINES = {"denoising": "-", "noising": "--"}
TENSORBOARD_DIR = "tensorboard"
"""A sweep's TensorBoard logs: OUT/tensorboard/."""


def evaluation_sets(summaries: Sequence[RunSummary]) -> list[str]:
    """Validation, then every test set any run evaluated, in first-seen order."""
    names = {VAL_SET: None}
    for summary in summaries:
        names.update(dict.fromkeys(summary.recovery.test))
        names.update(dict.fromkeys(summary.curves_by_set))
    return list(names)


def pareto_figure(
    summaries: Sequence[RunSummary], set_name: str, fronts: Sequence[ExhaustiveFront] = ()
) -> Figure:
    """Recovery on `set_name` against the number of heads: learned points, baseline curves (identical ones drawn
    once, named together) and, where known, the exhaustive best set of each size and the minimal sets (`fronts`)."""
    figure, axes = plt.subplots(figsize=(9.5, 4.4))
    curve_colours: dict[str, str] = {}
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    drawn_any = False
    for direction, linestyle in DIRECTION_LINES.items():
        source = next((s for s in summaries if s.direction == direction and set_name in s.curves_by_set), None)
        if source is None:
            continue
        n_prompts = source.prompts_by_set.get(set_name)
        for name, curve in merge_identical(source.curves_by_set[set_name]).items():
            # a merged curve ("a = b") keeps its first ranking's colour in both directions
            colour = curve_colours.setdefault(name.split(" = ")[0], cycle[len(curve_colours) % len(cycle)])
            if all(value is None for value in curve):
                continue
            drawn_any = True
            label = f"top-k {name} ({direction}" + (f", {n_prompts} prompts)" if n_prompts else ")")
            axes.plot(range(1, len(curve) + 1), nan_for_none(curve), linestyle=linestyle, marker=".",
                      color=colour, linewidth=1, label=label)  # fmt: skip
    seen: set[tuple[str, str]] = set()
    for summary in summaries:
        value = summary.recovery.on(set_name)
        if value is None:
            continue
        drawn_any = True
        key = (summary.family, summary.direction)
        filled = summary.direction != "noising"
        axes.scatter([summary.n_heads], [value], marker=FAMILY_MARKERS.get(key[0], OTHER_FAMILY_MARKER), s=40,
                     facecolors="black" if filled else "white", edgecolors="black", zorder=3,
                     label=None if key in seen else f"learned α: {key[0]} ({key[1]})")  # fmt: skip
        seen.add(key)
    for front in fronts:
        if front.set_name == set_name:
            draw_exhaustive_front(axes, front)
            drawn_any = True
    if not drawn_any:
        axes.text(0.5, 0.5, "recovery n/a on this set\n(clean ≈ corrupted, or no run evaluated it)",
                  transform=axes.transAxes, ha="center", va="center", fontsize=9)  # fmt: skip
    axes.axhline(1.0, color="grey", linewidth=0.5)
    axes.axhline(0.0, color="grey", linewidth=0.5)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("number of heads patched")
    axes.set_ylabel("recovery (0 = base run, 1 = source run)")
    directions = sorted({s.direction for s in summaries})
    axes.set_title(f"Recovery against the number of heads on {set_name} ({' and '.join(directions) or 'no run'})\n"
                   "denoising aims for 1, noising for 0", fontsize=9)  # fmt: skip
    handles, labels = axes.get_legend_handles_labels()
    if handles:
        axes.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    figure.tight_layout()
    return figure


def pareto_figures(summaries: Sequence[RunSummary], fronts: Sequence[ExhaustiveFront] = ()) -> dict[str, Figure]:
    """One Pareto figure per evaluation set, keyed by set name (`val` first); `fronts`: exhaustive searches."""
    return {name: pareto_figure(summaries, name, fronts) for name in evaluation_sets(summaries)}


def log_sweep(out: Path, run_dirs: Sequence[Path]) -> Path:
    """The sweep-level Pareto figure of every set, over every finished run (a directory with summary.json),
    added to OUT/tensorboard/ at global step = the number of finished runs, under `pareto/<set>`."""
    from torch.utils.tensorboard import SummaryWriter  # torch only here: the report draws fronts without it

    summaries = [RunSummary.read(path) for d in run_dirs if (path := Path(d) / "summary.json").is_file()]
    directory = Path(out) / TENSORBOARD_DIR
    if summaries:
        writer = SummaryWriter(log_dir=str(directory))
        try:
            for set_name, figure in pareto_figures(summaries).items():
                writer.add_figure(f"pareto/{set_name}", figure, global_step=len(summaries), close=True)
        finally:
            writer.close()
    return directory

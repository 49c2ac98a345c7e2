"""The run's figures beyond the α heatmap: α over training, the per-prompt recovery histogram per evaluation set,
the learned heads as a graph by layer, and the exhaustive best set of every size (the Pareto front's ground truth
where the model is small enough to search every subset of heads).

Every figure is titled with the direction and the prompt set it shows, with labelled axes and a legend.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from jaxtyping import Float
    from torch import Tensor

EXHAUSTIVE_FILE = "exhaustive.json"
"""A run directory's exhaustive search over every head subset (written where the model has few enough heads)."""
EXHAUSTIVE_MAX_HEADS = 10
"""Largest model searched after fit: 2^10 subsets of the validation prompts (the toy IOI model has 8 heads)."""
EXHAUSTIVE_PROMPTS = 64
"""Validation prompts the search patches (the baselines' count): every subset of the toy's 8 heads on 64 prompts is
16,384 patched rows; on all 256 it cost 4× as much and found the same two minimal sets."""
NAMED_HEADS = 12
"""The α-over-training legend names at most this many kept heads (the largest |α| at the end); a 144-head model's
full legend would not fit its figure."""
HISTOGRAM_RANGE = (-0.5, 2.0)
"""Per-prompt recoveries outside it are counted in the edge bins (and said in the panel)."""


def alpha_over_training(
    steps: Sequence[int], alphas: Float[Tensor, "time n_layers n_heads"], threshold: float, title: str
) -> Figure:
    """Each head's α (its [layer, head] view) against the optimisation step; heads above `threshold` at the end are
    coloured, the others grey; the legend names the `NAMED_HEADS` kept heads of largest final |α|."""
    data = alphas.detach().float().cpu()
    n_layers, n_heads = data.shape[1:]
    figure, axes = plt.subplots(figsize=(7, 3.6))
    final = data[-1].abs().flatten()
    order = final.argsort(descending=True).tolist()
    named = {index for index in order[:NAMED_HEADS] if float(final[index]) > threshold}
    for index in range(n_layers * n_heads):
        layer, head = divmod(index, n_heads)
        kept = float(final[index]) > threshold
        axes.plot(list(steps), data[:, layer, head].tolist(), linewidth=1.4 if kept else 0.6,
                  color=None if kept else "0.7", label=f"head {layer}.{head}" if index in named else None,
                  zorder=3 if kept else 1)  # fmt: skip
    unnamed = int((final > threshold).sum()) - len(named)
    if unnamed:
        axes.plot([], [], color="0.3", linewidth=1.4, label=f"… {unnamed} more kept heads (coloured)")
    axes.plot([], [], color="0.7", linewidth=0.6, label=f"other heads (|α| ≤ {threshold} at the end)")
    axes.axhline(threshold, color="black", linewidth=0.4, linestyle=":")
    axes.set_xlabel("optimisation step")
    axes.set_ylabel("α (0 = base run's z, 1 = source run's z)")
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    figure.tight_layout()
    return figure


def per_prompt_histograms(
    values: Mapping[str, Float[Tensor, " n"]], direction: str, set_recovery: Mapping[str, float | None] | None = None
) -> Figure:
    """One panel per evaluation set: the histogram of each prompt's recovery under the learned α, with its mean and
    median. Prompts without a clean/corrupted gap (recovery undefined) are left out and counted; `set_recovery`: the
    set's own recovery (a ratio of means, as summary.json's), shown in each panel's title (n/a: no gap on average)."""
    names = list(values)
    columns = min(len(names), 5)
    rows = math.ceil(len(names) / columns)
    figure, grid = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.3 * rows + 0.6), squeeze=False)
    low, high = HISTOGRAM_RANGE
    for axes, name in zip(grid.flat, names):
        recoveries = values[name].double()
        finite = recoveries[recoveries.isfinite()]
        if len(finite) == 0:
            axes.text(0.5, 0.5, "recovery n/a\n(clean ≈ corrupted)", ha="center", va="center", fontsize=7,
                      transform=axes.transAxes)  # fmt: skip
        else:
            clipped = finite.clamp(low, high).tolist()
            axes.hist(clipped, bins=50, range=HISTOGRAM_RANGE, color="tab:blue", alpha=0.8, label="prompts")
            axes.axvline(float(finite.mean()), color="black", linewidth=1, label=f"mean {float(finite.mean()):.2f}")
            axes.axvline(float(finite.median()), color="tab:red", linewidth=1, linestyle="--",
                         label=f"median {float(finite.median()):.2f}")  # fmt: skip
            outside = int(((finite < low) | (finite > high)).sum())
            axes.legend(fontsize=6, title=f"{outside} outside [{low}, {high}]" if outside else None, title_fontsize=6)
        undefined = len(recoveries) - len(finite)
        whole = "" if set_recovery is None or name not in set_recovery else (
            f"; set: {'n/a' if set_recovery[name] is None else f'{set_recovery[name]:.3f}'}")  # fmt: skip
        axes.set_title(f"{name} ({len(recoveries)} prompts" + (f", {undefined} n/a" if undefined else "") + whole + ")",
                       fontsize=7.5)  # fmt: skip
        axes.set_xlabel("per-prompt recovery", fontsize=7)
        axes.set_ylabel("prompts", fontsize=7)
        axes.tick_params(labelsize=6)
    for axes in list(grid.flat)[len(names):]:
        axes.axis("off")
    figure.suptitle(f"Per-prompt recovery of the learned α ({direction}), per evaluation set", fontsize=10)
    figure.tight_layout()
    return figure


def learned_heads_graph(
    alpha: Float[Tensor, "n_layers n_heads"], threshold: float, title: str
) -> Figure:
    """The heads as nodes by layer, on the residual stream from the embeddings (bottom) to the logits (top): the heads
    the learned α keeps (|α| > `threshold`) filled with α's colour and labelled with it, the others hollow."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    data = alpha.detach().float().cpu()
    n_layers, n_heads = data.shape
    figure, axes = plt.subplots(figsize=(max(5.5, 0.6 * n_heads + 2.5), 1.4 + 0.8 * (n_layers + 2)))
    top = n_layers + 1
    middle = (n_heads - 1) / 2
    axes.annotate("", xy=(-1.0, top - 0.25), xytext=(-1.0, 0.25),
                  arrowprops={"arrowstyle": "-|>", "color": "0.6", "linewidth": 2})  # fmt: skip
    axes.text(-1.15, top / 2, "residual stream", rotation=90, ha="right", va="center", fontsize=7, color="0.4")
    box = {"boxstyle": "round", "facecolor": "0.92", "edgecolor": "0.6"}
    axes.text(middle, 0, "embeddings", ha="center", va="center", fontsize=8, bbox=box)
    axes.text(middle, top, "logits (IO − S at END)", ha="center", va="center", fontsize=8, bbox=box)
    limit = max(float(data.abs().max()), 1.0)
    norm = Normalize(-limit, limit)
    cmap = plt.get_cmap("RdBu_r")
    for layer in range(n_layers):
        y = layer + 1
        axes.axhspan(y - 0.38, y + 0.38, xmin=0.12, color="0.96", zorder=0)
        for head in range(n_heads):
            value = float(data[layer, head])
            kept = abs(value) > threshold
            axes.scatter([head], [y], s=260 if kept else 70, zorder=2, edgecolors="black" if kept else "0.6",
                         facecolors=cmap(norm(value)) if kept else "white")  # fmt: skip
            if kept:
                axes.text(head, y - 0.3, f"α {value:.2f}", ha="center", va="top", fontsize=6.5)
    axes.scatter([], [], s=120, facecolors=cmap(norm(limit)), edgecolors="black", label=f"kept (|α| > {threshold})")
    axes.scatter([], [], s=50, facecolors="white", edgecolors="0.6", label="not kept")
    axes.set_yticks(range(1, n_layers + 1), [f"layer {layer}" for layer in range(n_layers)])
    axes.set_xticks(range(n_heads))
    axes.set_xlabel("head")
    axes.set_ylabel("layer (from the embeddings up to the logits)")
    axes.set_xlim(-1.6, n_heads - 0.4)
    axes.set_ylim(-0.6, top + 0.6)
    axes.set_title(title, fontsize=8.5)
    axes.legend(fontsize=7, loc="lower right")
    colour_bar = figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, fraction=0.04, pad=0.02)
    colour_bar.set_label("α (0: base z, 1: source z)", fontsize=7)
    figure.tight_layout()
    return figure


@dataclass
class ExhaustiveFront:
    """The best recovery of every head-set size, over every subset of heads, on one prompt set: the Pareto front's
    ground truth. `minimal_sets`: every smallest set reaching `target` (denoising: recovery ≥ target; noising:
    recovery ≤ 1 − target)."""

    set_name: str
    direction: str
    rest: str
    n_prompts: int
    target: float
    best_recovery_by_size: list[float]
    """Index k: the best recovery of a set of k heads (denoising: highest; noising: lowest); k = 0 is the base run."""
    best_set_by_size: list[list[list[int]]]
    minimal_sets: list[list[list[int]]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExhaustiveFront:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__})

    @classmethod
    def from_effects(
        cls, effects: Mapping[str, float], minimal_sets: Sequence[Sequence[Sequence[int]]], set_name: str,
        direction: str, rest: str, n_prompts: int, target: float,
    ) -> ExhaustiveFront:  # fmt: skip
        """From an exhaustive search's effect per subset (keys `analyses.exhaustive.subset_name`: heads "L.H"
        joined by "+", "none" or "" for the empty set; effect = recovery denoising, 1 − recovery noising)."""
        best: dict[int, tuple[float, list[list[int]]]] = {}
        for name, effect in effects.items():
            heads = [[int(part) for part in head.split(".")] for head in name.split("+") if "." in head]
            if len(heads) not in best or effect > best[len(heads)][0]:
                best[len(heads)] = (effect, heads)
        sizes = range(max(best) + 1)
        recovery = [best[k][0] if direction == "denoising" else 1 - best[k][0] for k in sizes]
        return cls(set_name, direction, rest, n_prompts, target, recovery, [best[k][1] for k in sizes],
                   [[list(head) for head in s] for s in minimal_sets])  # fmt: skip


def draw_exhaustive_front(axes: Any, front: ExhaustiveFront) -> None:
    """The front on a recovery-against-heads axes: a thick grey line through the best set of each size and a star at
    the minimal sets reaching the target."""
    sizes = list(range(1, len(front.best_recovery_by_size)))
    linestyle = "-" if front.direction == "denoising" else "--"
    axes.plot(sizes, front.best_recovery_by_size[1:], color="0.45", linestyle=linestyle, linewidth=2.5, alpha=0.5,
              marker="s", markersize=5, zorder=0,
              label=f"exhaustive: best set of each size ({front.direction}, {front.n_prompts} prompts)")  # fmt: skip
    if front.minimal_sets:
        size = len(front.minimal_sets[0])
        names = "; ".join("{" + ", ".join(f"{layer}.{head}" for layer, head in s) + "}" for s in front.minimal_sets)
        goal = f"≥ {front.target}" if front.direction == "denoising" else f"≤ {1 - front.target:.2g}"
        axes.scatter([size], [front.best_recovery_by_size[size]], marker="*", s=160, color="gold",
                     edgecolors="black", zorder=4,
                     label=f"exhaustive minimal sets ({front.direction}, recovery {goal}): {names}")  # fmt: skip


def fronts_of(run_dirs: Sequence[str | Path]) -> list[ExhaustiveFront]:
    """The exhaustive fronts stored in `run_dirs` (`EXHAUSTIVE_FILE`), each distinct one once."""
    fronts: dict[str, ExhaustiveFront] = {}
    for directory in run_dirs:
        path = Path(directory) / EXHAUSTIVE_FILE
        if path.is_file():
            data = json.loads(path.read_text())
            fronts.setdefault(json.dumps(data, sort_keys=True), ExhaustiveFront.from_dict(data))
    return list(fronts.values())

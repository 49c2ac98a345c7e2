"""Figures a researcher would rather look at than read: [layer × head] heatmaps and line plots."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # headless: figures go to files and TensorBoard, never to a window

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

if TYPE_CHECKING:  # annotations only: the report draws its figures without loading torch
    from jaxtyping import Float
    from torch import Tensor


def head_heatmap(
    values: Float[Tensor, "n_layers n_heads"], title: str, diverging: bool = True, *, label: str
) -> Figure:
    """One cell per (layer, head), layers as rows; diverging colours centred on zero by default. `label`: what the
    colour bar measures, with its unit (every heatmap says what its colours mean)."""
    data = values.detach().float().cpu().numpy()
    n_layers, n_heads = data.shape
    figure, axes = plt.subplots(figsize=(max(4.5, 1.2 + 0.45 * n_heads), max(2.5, 1.0 + 0.4 * n_layers)))
    if diverging:
        limit = max(float(abs(data).max()), 1e-8)
        image = axes.imshow(data, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    else:
        image = axes.imshow(data, cmap="viridis", aspect="auto")
    axes.set_xlabel("head")
    axes.set_ylabel("layer")
    axes.set_xticks(range(n_heads))
    axes.set_yticks(range(n_layers))
    axes.set_title(wrapped(title, figure), fontsize=9)
    if n_layers * n_heads <= 64:  # small grids: the numbers themselves are worth reading
        for layer in range(n_layers):
            for head in range(n_heads):
                value = data[layer, head]
                colour = text_colour(image.cmap(image.norm(value)))
                axes.text(head, layer, f"{value:.2f}", ha="center", va="center", fontsize=7, color=colour)
    colour_bar = figure.colorbar(image, ax=axes)
    colour_bar.set_label(label, fontsize=7)
    figure.tight_layout()
    return figure


def wrapped(title: str, figure: Figure) -> str:
    """`title` broken into lines that fit `figure`'s width at font size 9 (about 11 characters an inch)."""
    width = int(figure.get_figwidth() * 11)
    return "\n".join(textwrap.fill(line, width) for line in title.splitlines())


def text_colour(background: tuple[float, ...]) -> str:
    """Black on light cells, white on dark ones (relative luminance of the RGB background, ITU-R BT.709)."""
    red, green, blue = background[:3]
    return "black" if 0.2126 * red + 0.7152 * green + 0.0722 * blue > 0.5 else "white"


def recovery_curves(
    curves: dict[str, list[float | None]], points: dict[str, tuple[int, float]], title: str
) -> Figure:
    """Recovery against the number of heads: one line per curve (k = 1, 2, …; None left out; curves with identical
    values drawn once, their names joined by "="), one marker per point."""
    figure, axes = plt.subplots(figsize=(6.5, 3.6))
    for name, curve in merge_identical(curves).items():
        axes.plot(range(1, len(curve) + 1), nan_for_none(curve), marker=".", label=name)
    for name, (k, value) in points.items():
        axes.scatter([k], [value], color="black", zorder=3, label=name)
    axes.set_xlabel("number of heads patched (top k of each ranking)")
    axes.set_ylabel("recovery (0 = base run, 1 = source run)")
    axes.set_title(wrapped(title, figure), fontsize=9)
    axes.legend(fontsize=7)
    figure.tight_layout()
    return figure


def merge_identical(curves: dict[str, list[float | None]]) -> dict[str, list[float | None]]:
    """Curves with the same values, once each, named "a = b = c" (drawn one over the other they hide each other)."""
    merged: dict[tuple, list[str]] = {}
    for name, curve in curves.items():
        merged.setdefault(tuple(curve), []).append(name)
    return {" = ".join(names): list(curve) for curve, names in merged.items()}


def nan_for_none(values: list[float | None]) -> list[float]:
    """Undefined values (None in summary.json) as NaN, which matplotlib leaves out of a line."""
    return [float("nan") if value is None else value for value in values]


def line_plot(values: Float[Tensor, " n"], labels: list[str], title: str, ylabel: str) -> Figure:
    """Values along an ordered axis (one point per label, joined: use it where the order means something)."""
    figure, axes = plt.subplots(figsize=(max(4.0, 0.3 * len(labels)), 3.2))
    axes.plot(range(len(labels)), values.detach().float().cpu().numpy(), marker="o")
    axes.axhline(0.0, color="grey", linewidth=0.5)
    axes.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    figure.tight_layout()
    return figure


def component_name(label: str) -> str:
    """A residual-stream label of `baselines.logit_attribution` in words: `0_pre` → "before layer 0", `1_attn_out`
    → "layer 1 attention", `final` → "after the last layer"."""
    fixed = {"embed": "token embeddings", "pos_embed": "position embeddings", "final": "after the last layer"}
    if label in fixed:
        return fixed[label]
    layer, _, kind = label.partition("_")
    words = {"pre": f"before layer {layer}", "mid": f"layer {layer}, after attention",
             "attn_out": f"layer {layer} attention", "mlp_out": f"layer {layer} MLP"}  # fmt: skip
    return words.get(kind, label)


def logit_lens_figure(values: Float[Tensor, " n"], labels: list[str], title: str) -> Figure:
    """The logit lens: the logit difference read from the residual stream at each depth (ordered, so joined)."""
    figure, axes = plt.subplots(figsize=(max(4.5, 0.6 * len(labels)), 3.4))
    axes.plot(range(len(labels)), values.detach().float().cpu().numpy(), marker="o")
    axes.axhline(0.0, color="grey", linewidth=0.5)
    axes.set_xticks(range(len(labels)), [component_name(label) for label in labels], rotation=30, ha="right",
                    fontsize=7)  # fmt: skip
    axes.set_xlabel("residual stream at END, read at")
    axes.set_ylabel("logit(IO) − logit(S)")
    axes.set_title(wrapped(title, figure), fontsize=9)
    figure.tight_layout()
    return figure


def component_bars(values: Float[Tensor, " n"], labels: list[str], title: str) -> Figure:
    """Each component's direct contribution to the logit difference: separate components, so bars, coloured by kind."""
    kinds = {"attn_out": ("attention", "tab:blue"), "mlp_out": ("MLP", "tab:orange")}
    data = values.detach().float().cpu().numpy()
    figure, axes = plt.subplots(figsize=(max(4.5, 0.6 * len(labels)), 3.4))
    seen: set[str] = set()
    for i, label in enumerate(labels):
        kind, colour = kinds.get(label.partition("_")[2], ("embeddings", "tab:grey"))
        axes.bar(i, data[i], color=colour, label=None if kind in seen else kind)
        seen.add(kind)
    axes.axhline(0.0, color="grey", linewidth=0.5)
    axes.set_xticks(range(len(labels)), [component_name(label) for label in labels], rotation=30, ha="right",
                    fontsize=7)  # fmt: skip
    axes.set_xlabel("component writing to the residual stream at END")
    axes.set_ylabel("direct effect on logit(IO) − logit(S)")
    axes.set_title(wrapped(title, figure), fontsize=9)
    axes.legend(fontsize=7)
    figure.tight_layout()
    return figure


def save_figure(figure: Figure, path: str | Path) -> None:
    """Save as PNG (whatever the file name says) and release the figure's memory."""
    figure.savefig(path, dpi=120, format="png")
    plt.close(figure)

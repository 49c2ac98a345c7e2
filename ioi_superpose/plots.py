"""Figures a researcher would rather look at than read: [layer × head] heatmaps and line plots."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # headless: figures go to files and TensorBoard, never to a window

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

if TYPE_CHECKING:  # annotations only: the report draws its figures without loading torch
    from jaxtyping import Float
    from torch import Tensor


def head_heatmap(values: Float[Tensor, "n_layers n_heads"], title: str, diverging: bool = True) -> Figure:
    """One cell per (layer, head), layers as rows; diverging colours centred on zero by default."""
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
    axes.set_title(title, fontsize=9)
    if n_layers * n_heads <= 64:  # small grids: the numbers themselves are worth reading
        for layer in range(n_layers):
            for head in range(n_heads):
                value = data[layer, head]
                colour = text_colour(image.cmap(image.norm(value)))
                axes.text(head, layer, f"{value:.2f}", ha="center", va="center", fontsize=7, color=colour)
    figure.colorbar(image, ax=axes)
    figure.tight_layout()
    return figure


def text_colour(background: tuple[float, ...]) -> str:
    """Black on light cells, white on dark ones (relative luminance of the RGB background, ITU-R BT.709)."""
    red, green, blue = background[:3]
    return "black" if 0.2126 * red + 0.7152 * green + 0.0722 * blue > 0.5 else "white"


def recovery_curves(curves: dict[str, list[float | None]], points: dict[str, tuple[int, float]]) -> Figure:
    """Recovery against the number of heads: one line per curve (k = 1, 2, …; None left out), one marker per point."""
    figure, axes = plt.subplots(figsize=(5, 3.4))
    for name, curve in curves.items():
        axes.plot(range(1, len(curve) + 1), nan_for_none(curve), marker=".", label=name)
    for name, (k, value) in points.items():
        axes.scatter([k], [value], color="black", zorder=3, label=name)
    axes.set_xlabel("number of heads")
    axes.set_ylabel("recovery")
    axes.legend()
    figure.tight_layout()
    return figure


def nan_for_none(values: list[float | None]) -> list[float]:
    """Undefined values (None in summary.json) as NaN, which matplotlib leaves out of a line."""
    return [float("nan") if value is None else value for value in values]


def line_plot(values: Float[Tensor, " n"], labels: list[str], title: str, ylabel: str) -> Figure:
    figure, axes = plt.subplots(figsize=(max(4.0, 0.3 * len(labels)), 3.2))
    axes.plot(range(len(labels)), values.detach().float().cpu().numpy(), marker="o")
    axes.axhline(0.0, color="grey", linewidth=0.5)
    axes.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    figure.tight_layout()
    return figure


def save_figure(figure: Figure, path: str | Path) -> None:
    """Save as PNG (whatever the file name says) and release the figure's memory."""
    figure.savefig(path, dpi=120, format="png")
    plt.close(figure)

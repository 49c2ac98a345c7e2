"""A sweep's figure of recovery and L0 against the sparsity weight λ (`--model.l1`), one line per setting of the
sweep's other grid keys (direction, init, family …), from its `sweep.json` points."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from ioi_superpose.results.schema import SweepPoint

L1_KEY = "model.l1"


def l1_series(points: Sequence[SweepPoint]) -> dict[str, list[tuple[float, float | None, int]]]:
    """Per setting of the other grid keys (named "key=value, …", "" when λ is the only key): (λ, val recovery, L0)
    of each point, by λ."""
    series: dict[str, list[tuple[float, float | None, int]]] = {}
    for point in points:
        if L1_KEY not in point.settings:
            continue
        others = ", ".join(f"{key.removeprefix('model.')}={value}" for key, value in sorted(point.settings.items())
                           if key != L1_KEY)  # fmt: skip
        series.setdefault(others, []).append((float(point.settings[L1_KEY]), point.val_recovery, point.l0))
    return {name: sorted(values) for name, values in series.items()}


def recovery_against_l1(sweep_name: str, points: Sequence[SweepPoint]) -> Figure | None:
    """Validation recovery and L0 against λ (log axis), one line per setting of the other grid keys; None when the
    sweep does not vary λ over at least two values."""
    series = l1_series(points)
    if len({l1 for values in series.values() for l1, _, _ in values}) < 2:
        return None
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, values in series.items():
        l1s = [l1 for l1, _, _ in values]
        (line,) = left.plot(l1s, [float("nan") if r is None else r for _, r, _ in values], marker="o",
                            label=name or "λ only")  # fmt: skip
        right.plot(l1s, [l0 for _, _, l0 in values], marker="o", color=line.get_color())
    for axes in (left, right):
        axes.set_xscale("symlog", linthresh=min(l1 for values in series.values() for l1, _, _ in values if l1 > 0))
        axes.set_xlabel("λ (--model.l1, sparsity weight)")
    left.axhline(1.0, color="grey", linewidth=0.5)
    left.set_ylabel("validation recovery (0 = base, 1 = source)")
    left.set_title("recovery against λ", fontsize=9)
    right.set_ylabel("L0 (units above the L0 threshold)")
    right.set_title("L0 against λ", fontsize=9)
    left.legend(fontsize=7, title="other settings", title_fontsize=7)
    figure.suptitle(f"Sweep {sweep_name}: recovery and L0 against λ, validation prompts (denoising aims for 1, noising "
                    "for 0)", fontsize=10)  # fmt: skip
    figure.tight_layout()
    return figure

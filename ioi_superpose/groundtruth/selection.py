"""Honest selection for the benchmark: hyperparameters chosen leave-one-case-out, F1 against the nearest
minimal set, and a seeded bootstrap interval of a mean over cases."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

Head = tuple[int, int]


def nearest(heads: frozenset[Head], minimal_sets: Sequence[Sequence[Head]]) -> tuple[float, float, frozenset[Head]]:
    """(precision, recall, that set) against the minimal set of highest F1 with `heads` (first on ties);
    (0, 0, ∅) when there is no minimal set (the behaviour never reaches the threshold)."""
    best: tuple[float, float, frozenset[Head]] = (0.0, 0.0, frozenset())
    best_f1 = -1.0
    for m in minimal_sets:
        m = frozenset(tuple(h) for h in m)
        hits = len(heads & m)
        p = hits / len(heads) if heads else 0.0
        r = hits / len(m) if m else 0.0
        score = f1_of(p, r)
        if score > best_f1:
            best, best_f1 = (p, r, m), score
    return best


def f1_of(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def f1(heads: frozenset[Head], minimal_sets: Sequence[Sequence[Head]]) -> float:
    p, r, _ = nearest(heads, minimal_sets)
    return f1_of(p, r)


def leave_one_case_out(
    dev_f1: Mapping[str, Mapping[Hashable, float | None]], held_out: str, grid: Sequence[Hashable]
) -> tuple[Hashable, list[str]]:
    """The grid value of best mean dev F1 over every case but `held_out` (first in `grid` on ties), and
    the cases it was chosen on. `dev_f1[case][value]`: the method's F1 with that value against the case's
    dev ground truth (None: n/a on that case). The held-out case's entry is never read."""
    used = [case for case in dev_f1 if case != held_out]

    def mean_f1(value: Hashable) -> float:
        scores = [dev_f1[case][value] for case in used]
        scores = [s for s in scores if s is not None]
        return sum(scores) / len(scores) if scores else -1.0

    if not grid:
        raise ValueError("leave_one_case_out needs a non-empty grid of hyperparameter values")
    return max(grid, key=mean_f1), used


def bootstrap_interval(
    values: Sequence[float], seed: int, n_resamples: int = 2000, level: float = 0.95
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of `values` (cases resampled with replacement), seeded;
    None for fewer than two values."""
    if len(values) < 2:
        return None
    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, len(data), size=(n_resamples, len(data)))].mean(1)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def mean_with_interval(values: Sequence[float], seed: int) -> dict[str, Any]:
    interval = bootstrap_interval(values, seed)
    return {"mean": round(float(np.mean(values)), 3) if values else None, "n": len(values),
            "interval": None if interval is None else [round(interval[0], 3), round(interval[1], 3)]}  # fmt: skip

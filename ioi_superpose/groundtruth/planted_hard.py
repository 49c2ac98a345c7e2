"""Planted cases that separate head-finding methods: a trap for greedy elimination, and negative heads.

Built with `toy.planted._Builder` (LayerNorm, mean-zero directions, TransformerLens's causal buffers kept),
so a LayerNorm is a pure rescaling and the logit difference read at END is
√d · 2⟨x, R1⟩ / |x| of the END residual x: a *cosine*, which is where every non-additivity here comes from.
Every head of these 1-layer models attends from END to the source position (score 30: all of its
attention) and copies the source token's direction, so in the corrupted run (NULL at position 0) it
writes nothing and in the clean run it writes a fixed vector. A patched head set S therefore puts
x_S = e + Σ_{h ∈ S} v_h at END, identically on every prompt: the ground truth does not depend on the
filler seed, and the tests re-derive it by exhaustive search.

- `trap_case(n_weak)`: 1 layer × (n_weak + 2) heads. The first two heads are the *strong pair* a = 0.0
  and b = 0.1: a writes A·R1 + M·M1, b writes A·R1 − M·M1 — together 2A·R1 with no mass (the minimal set
  {a, b}); alone each adds a mass M that the LayerNorm divides the answer by. Heads 0.2 … are *weak*: each
  writes w·R1 + (M / n_weak)·M1 (a little answer, a little "mass"). In the clean run the weak heads'
  masses sum to +M, so dropping a from the full set removes +M and cancels the weak heads' mass exactly
  (the effect *rises*), while dropping a weak head leaves the mass the strong pair does not cancel. A step
  from all heads (`pruning.minimal_set` with α = 1 everywhere, ties broken by head index, so a is tried
  first) therefore drops a and can never return {a, b}: it ends with weak heads + b (trap_8) or weak heads
  alone (trap_12). Parameters found by a small search for the widest margins and rounded;
  `tests/test_benchmark.py` checks the trap against exhaustive search.
- `negative_case()`: 1 layer × 4 heads. 0.0 writes +6·R1, 0.1 writes −4·R1 (against the answer),
  0.2 writes +2·R1, 0.3 is the filler distractor. Patching 0.0 alone overshoots the clean run (the
  negative head is not patched); noising 0.1 alone *raises* the logit difference (a negative effect).
"""

from __future__ import annotations

from dataclasses import dataclass

from ioi_superpose.groundtruth.planted import (
    ANSWERS,
    M1,
    P_SRC,
    R1,
    T_X,
    PlantedCase,
    X,
    _Builder,
    _distractor,
    _end,
    direction,
)

O_CONST = 16
"""A free mean-zero direction: a constant part of END's embedding that only sets its norm."""


@dataclass(frozen=True)
class TrapParameters:
    """END carries s·R1 + e_norm·O (+ its token and position directions); see the module docstring."""

    s: float
    strong: float
    """A: each strong head's answer write."""
    weak: float
    """w: each weak head's answer write."""
    mass: float
    """M: the strong heads' ±mass; the weak heads' masses sum to it."""
    e_norm: float
    """Norm of END's constant part beyond its token and position directions (√2 of them)."""


TRAPS = {
    # n_weak: parameters. Margins (effect, exhaustive on the built model): see tests/test_benchmark.py.
    # 6 weak heads: {a, b} reaches 1.30, every other pair ≤ 0.44; the step from all heads ends with 3 weak heads + b.
    6: TrapParameters(s=4.2, strong=6.1, weak=2.3, mass=32.0, e_norm=13.8),
    # 10 weak heads: {a, b} 0.97, other pairs ≤ 0.81; all 10 weak heads alone are sufficient (0.97).
    10: TrapParameters(s=0.3, strong=7.5, weak=2.6, mass=6.8, e_norm=4.55),
}


def trap_case(n_weak: int = 6) -> PlantedCase:
    """The greedy trap with `n_weak` weak heads (6 or 10: 8 or 12 heads); truth {a, b} in denoising.

    The noising truth is not planted (the promised noising sets are left empty): the benchmark scores
    noising against its own exhaustive search — on trap_8 the sets of weak heads + b, on
    trap_12 only all 12 heads (a degenerate case there: any method keeping every head is exact)."""
    p = TRAPS[n_weak]
    extra = p.s * direction(R1) + p.e_norm * direction(O_CONST)
    b = _Builder(1, n_weak + 2, end_extra=extra)
    # The strong pair comes first: a step that breaks ties by head index (from all heads, α = 1) tries it first.
    writes = [p.strong * direction(R1) + p.mass * direction(M1), p.strong * direction(R1) - p.mass * direction(M1)]
    writes += [p.weak * direction(R1) + p.mass / n_weak * direction(M1)] * n_weak
    for head, write in enumerate(writes):
        b.attend(0, head, _end(extra), P_SRC, 30.0)
        b.copy(0, head, direction(T_X), write)
    strong_pair = ((0, 0), (0, 1))
    return PlantedCase(f"trap_{n_weak + 2}", b.build(), X, ANSWERS[0], None, (strong_pair,), ())


def negative_case(positive: float = 6.0, negative: float = 4.0, weak: float = 2.0) -> PlantedCase:
    """0.0 (+positive), 0.1 (−negative, writes against the answer), 0.2 (+weak), 0.3 distractor; END
    carries a small answer part so the corrupted logit difference is not 0. Truth from exhaustive search
    (see `tests/test_benchmark.py`): denoising {0.0}; noising {0.0}."""
    extra = 1.0 * direction(R1)
    b = _Builder(1, 4, end_extra=extra)
    for head, write in ((0, positive), (1, -negative), (2, weak)):
        b.attend(0, head, _end(extra), P_SRC, 30.0)
        b.copy(0, head, direction(T_X), write * direction(R1))
    _distractor(b, 0, 3, _end(extra))
    return PlantedCase("negative", b.build(), X, ANSWERS[0], None, (((0, 0),),), (((0, 0),),))


def hard_cases() -> list[PlantedCase]:
    """The separating planted cases, in a fixed order."""
    return [trap_case(6), trap_case(10), negative_case()]

"""What the heads outside a head set do: `rest="free"` (a cut) or `rest="frozen"` (a circuit).

A head set S (or a soft membership α over heads) can be asked two different questions.

**free — the cut** (the project's original notion, activation patching of a set). Run the model on the
*base* tokens; patch every head h to z_base,h + α_h (z_source,h − z_base,h) with z_source recorded from the
source run; every other part of the model — embeddings, MLPs, heads with α = 0 — *recomputes* from what
the patched heads wrote. Denoising: "are these heads' source values enough to restore the behaviour,
given everything downstream reacts to them?" A layer-0 set can therefore carry a behaviour that is
*computed* by later heads, which read the patched values.

**frozen — the circuit** (node-level circuit discovery: ACDC, subnetwork probing, Edge Pruning; the node
patching of auto-circuit). Run the model on the *source* tokens; every head h becomes

    z_h ← z_base,h + α_h (z_cur,h − z_base,h),

where z_base,h is recorded from the *base* run (the run we intervene on: corrupted for denoising, clean
for noising) and z_cur,h is what h computes in this very run. α = 1: the head is in the circuit and
computes normally (from whatever the circuit feeds it); α = 0: the head is frozen at its base-run value,
whatever happens upstream. A circuit must therefore contain whole paths: a layer-1 head in the set whose
input comes from a layer-0 head outside it reads that head's *base* value.

**The embeddings and MLPs** (auto-circuit's "Resid Start" node and its MLP nodes). Our sets are sets of
heads; every node that is not a head is not a candidate, i.e. always in the circuit. In auto-circuit's
edge language (its node-level graph, `patchable_model(..., factorized=False)`, whose nodes are points of the
residual stream), the head-level circuit S is every residual-stream edge — Resid Start → Resid Mid 0, Resid Mid l →
Resid Post l, Resid Post l → Resid Mid l + 1 (without MLPs: Resid Start / Resid Post l → the next stream node) —,
every edge out of an MLP and every edge out of a head in S; an edge out of a head outside S carries that head's
corrupt (base-run) value. That is exactly "run on the source tokens, freeze the heads outside S at their base
values" — so in the frozen notion the embeddings and MLPs see the *source* tokens, in the cut notion the *base*
tokens. auto-circuit's own ACDC and subnetwork probing, as shipped, also prune residual-stream edges (a pruned one
carries the corrupt run's stream at that point), so their circuits are not head sets in this sense;
`experiments/peers/compare_auto_circuit.py` keeps those edges in to compare with our ACDC. The two notions hence
differ even in a one-layer model, where layer-0 heads read only embeddings: patching {h} alone moves the
direct path embed → unembed too in the frozen notion (for a one-layer model without LayerNorm, frozen(S) =
cut(S) + frozen(∅) for every S: the second term is the direct path's share). The issue's auto-circuit check
({0.0, 0.1, 0.2} → 0.9196 = our denoising cut) patched the edges of those heads but *not* Resid Start's direct
edge to the output: the cut, not this node-level circuit.

**A duality** (exact, used as a test): frozen S in one direction is the cut of the complement of S in the
other. Frozen-denoising runs the clean tokens with the heads outside S at their corrupted values and S
recomputing; cut-noising of the complement runs the clean tokens with the complement patched to its
corrupted values and S recomputing — the same forward. So effect_frozen,denoising(S) = 1 − effect_cut,noising(∖S):
a sufficient circuit is a set whose complement is not necessary.

Engine: `FrozenRest(combination)` turns any combination of the form z ↦ z_a + D(z_b − z_a) with D linear in
the difference (every family: `mix`, `mix_by_role`, `mixing`'s map) into its frozen counterpart; the run's
tokens are `run_tokens(...)` and the recorded z the base run's (`runs.reference_runs(..., rest="frozen")`).
"""

from __future__ import annotations

from typing import Literal, TypeVar, get_args

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ioi_superpose.engine.patch import Combination, HeadWeights, PositionWeights, ZFunction
from ioi_superpose.errors import ConfigError

Rest = Literal["free", "frozen"]
RESTS: tuple[Rest, ...] = get_args(Rest)
T = TypeVar("T")


def check_rest(rest: str, option: str = "rest") -> Rest:
    if rest not in RESTS:
        raise ConfigError(
            f"{option} must be 'free' (heads outside the set recompute: a cut) or 'frozen' (they keep their "
            f"base-run z: a circuit), got {rest!r}."
        )
    return rest  # type: ignore[return-value]


def run_tokens(base_tokens: T, source_tokens: T, rest: Rest) -> T:
    """The tokens the patched forward runs on: the base run's for a cut, the source run's for a circuit."""
    return base_tokens if check_rest(rest) == "free" else source_tokens


def with_rest(combination: Combination, rest: Rest) -> Combination:
    """`combination` as the patch of `rest`: itself for a cut, wrapped in `FrozenRest` for a circuit."""
    return combination if check_rest(rest) == "free" else FrozenRest(combination)


class FrozenRest(Combination):
    """The frozen notion of `inner`: called as (layer, z_cur, z_recorded) in a run on the source tokens,
    with z_recorded the base run's z, it returns z_recorded + D(z_cur − z_recorded), where `inner` computes
    z_a + D(z_b − z_a). Obtained without knowing D: z_cur + inner(z_recorded − z_cur, 0)
    = z_cur + (z_recorded − z_cur) − D(z_recorded − z_cur) = z_recorded + D(z_cur − z_recorded)."""

    def __init__(self, inner: Combination) -> None:
        super().__init__()
        self.inner = inner

    @property
    def n_variants(self) -> int:
        return self.inner.n_variants

    def select(self, rows: range) -> "FrozenRest":
        return FrozenRest(self.inner.select(rows))

    def first_layer(self) -> int:
        """Layers whose weights are all 1 leave the source run unchanged (every head computes): a run may
        start from the source prefix at the first layer with a weight ≠ 1. Other families: layer 0."""
        if isinstance(self.inner, HeadWeights | PositionWeights):
            weights = self.inner.weights
            touched = (weights != 1).flatten(2).any(-1).any(0).nonzero()
            return int(touched[0]) if len(touched) else weights.shape[1]
        return 0

    def bind(
        self, source_z: Float[Tensor, "layer batch pos head d_head"], roles: Int[Tensor, "batch pos"] | None = None
    ) -> ZFunction:
        """As `forward`, for every layer of a folded run: `inner` bound to a zero source (and the roles) mixes
        z_recorded − z_current towards 0, which is the same identity."""
        mix_towards_zero = self.inner.bind(torch.zeros_like(source_z), roles)
        batch = source_z.shape[1]

        def z_fn(layer: int, z: Tensor) -> Tensor:
            folded = z.reshape(-1, batch, *z.shape[1:])
            difference = (source_z[layer][None].to(z.dtype) - folded).reshape(z.shape)
            return z + mix_towards_zero(layer, difference)

        return z_fn

    def forward(
        self,
        layer: int,
        z_base: Float[Tensor, "variants batch pos head d_head"],
        z_source: Float[Tensor, "batch pos head d_head"],
    ) -> Float[Tensor, "variants batch pos head d_head"]:
        # In a frozen run the forward's own z is the "current" one and the recorded z is the base run's.
        z_current, z_recorded = z_base, z_source
        zero = torch.zeros((), dtype=z_current.dtype, device=z_current.device).expand_as(z_recorded)
        return z_current + self.inner(layer, z_recorded[None].to(z_current.dtype) - z_current, zero)

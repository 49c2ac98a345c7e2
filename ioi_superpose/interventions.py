"""Head combinations: modules with one verb, mix a layer's base and source head outputs z.

    z_patched = z_base + w ⊙ (z_source − z_base)

w = 0 is the base run, w = 1 everywhere the source run. A combination may hold several *variants*
(sets of weights) that `runs.patched_end_logits` folds into one batch: one-hot weights are single-head
activation patching, 0/1 weights subset patching, a learned α (one variant) the learned combination.
The `mixing` family (`ioi_superpose.mixing`) generalises w to a map across heads and layers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from jaxtyping import Float
from torch import Tensor, nn

from ioi_superpose.errors import ConfigError


def mix(
    z_base: Float[Tensor, "variants batch pos head d_head"],
    z_source: Float[Tensor, "batch pos head d_head"],
    weights: Float[Tensor, "variants head"],
) -> Float[Tensor, "variants batch pos head d_head"]:
    """z_base + w ⊙ (z_source − z_base), one weight per (variant, head)."""
    w = weights.to(z_base.dtype)[:, None, None, :, None]
    return z_base + w * (z_source[None] - z_base)


class Combination(nn.Module):
    """Base class. `forward(layer, z_base, z_source)` returns the patched z of `layer` per variant."""

    @property
    def n_variants(self) -> int:
        return 1

    def select(self, rows: range) -> "Combination":
        """The variants `rows` as a combination of their own (for chunked runs)."""
        if rows != range(self.n_variants):
            raise ValueError(f"{type(self).__name__} has {self.n_variants} variant(s); cannot select {rows}")
        return self

    def first_layer(self) -> int:
        """The earliest layer this combination can change: runs start there from the base prefix."""
        return 0

    def forward(
        self,
        layer: int,
        z_base: Float[Tensor, "variants batch pos head d_head"],
        z_source: Float[Tensor, "batch pos head d_head"],
    ) -> Float[Tensor, "variants batch pos head d_head"]:
        raise NotImplementedError


class FixedVariants:
    """Mixin of the fixed-weight combinations: the variants are the rows of a `weights` buffer."""

    weights: Tensor

    @property
    def n_variants(self) -> int:
        return self.weights.shape[0]

    def select(self, rows: range) -> Combination:
        return self.with_weights(self.weights[rows.start : rows.stop])

    def with_weights(self, weights: Tensor) -> Combination:
        """The same kind of combination with other weights."""
        return type(self)(weights)  # type: ignore[call-arg]


class HeadWeights(FixedVariants, Combination):
    """Fixed weights w[variant, layer, head]: patching of single heads (one-hot) or head subsets (0/1),
    or the value of any given α. Not trained (a buffer)."""

    def __init__(self, weights: Float[Tensor, "variants layer head"]) -> None:
        super().__init__()
        if weights.dim() == 2:
            weights = weights[None]
        if weights.dim() != 3:
            raise ValueError(f"weights must be [variants, layer, head] or [layer, head], got {tuple(weights.shape)}")
        self.register_buffer("weights", weights.detach().float())

    @classmethod
    def single_heads(cls, n_layers: int, n_heads: int) -> "HeadWeights":
        """One variant per head, in (layer, head) row-major order, each patching that head alone."""
        return cls(torch.eye(n_layers * n_heads).view(n_layers * n_heads, n_layers, n_heads))

    def first_layer(self) -> int:
        touched = (self.weights != 0).any(0).any(-1).nonzero()  # layers any variant changes
        return int(touched[0]) if len(touched) else self.weights.shape[1]

    def forward(self, layer: int, z_base: Tensor, z_source: Tensor) -> Tensor:
        return mix(z_base, z_source, self.weights[:, layer].to(z_base.device))


class HeadCombination(Combination):
    """Learnable α[layer, head], one weight per head output (all positions).

    With `bounded`, α lives in [0, 1]: call `project_()` after each optimiser step (a projected
    gradient step, which, with an L1 penalty, sets unneeded heads to exactly zero rather than merely
    small, as a sigmoid parametrisation would).
    """

    def __init__(self, n_layers: int, n_heads: int, bounded: bool = True, init: float = 1.0) -> None:
        super().__init__()
        if bounded and not 0.0 <= init <= 1.0:
            raise ConfigError(
                f"--model.init={init} is outside [0, 1]; a bounded combination needs 0 <= init <= 1 "
                "(or set --model.bounded false)."
            )
        self.bounded = bounded
        self.coefficients = nn.Parameter(torch.full((n_layers, n_heads), float(init)))

    def forward(self, layer: int, z_base: Tensor, z_source: Tensor) -> Tensor:
        return mix(z_base, z_source, self.coefficients[layer][None])

    def penalty(self) -> Float[Tensor, ""]:
        """The sparsity penalty: ‖α‖₁."""
        return self.coefficients.abs().sum()

    def l0(self, threshold: float) -> int:
        """Number of heads whose |α| exceeds `threshold`."""
        return int((self.coefficients.detach().abs() > threshold).sum())

    @torch.no_grad()
    def project_(self) -> None:
        if self.bounded:
            self.coefficients.clamp_(0.0, 1.0)


# --------------------------------------------------------------------------------------------------
# Combination families: one learnable module each, chosen by `--model.combination`.
#
# Every family exposes the same small surface, which the system, the API, the summary and the
# minimal-set step (`ioi_superpose.pruning`) read:
#   coefficients       the weights in the family's shape ([layer, head] or [layer, head, role]);
#   penalty()          its sparsity penalty;  project_()  after each optimiser step (no-op if unbounded);
#   l0(t), support(t)  the units (heads, or (head, role) pairs) whose weight exceeds t;
#   head_coefficients  a [layer, head] view (largest |weight| over roles) for heatmaps and baselines;
#   fixed(w)           fixed variants w[variants, *shape] of the same family (for batched evaluation);
#   mask_weights(mask) the weights that patch exactly the units in `mask` (weight 1, else 0; `mixing`
#                      keeps its learned values there), read by the minimal-set step;
#   set_mask_(mask)    make the combination patch exactly those weights.
# `mixing` (ioi_superpose/mixing.py) is a map M[layer, head, source_layer, source_head] across heads.

ROLES: tuple[str, ...] = ("IO", "S1", "S1+1", "S2", "END", "other")
"""Roles of a position for `per_position`. IOI batches (`data.ioi.IOIBatch`) fill all of them; any other
`ContrastBatch` only END (its `end_pos`) and other (every other position)."""
ROLE_INDEX = {name: index for index, name in enumerate(ROLES)}
FAMILIES: tuple[str, ...] = ("scalar", "per_position", "hard_concrete", "mixing")
"""The families whose units are heads (or head pairs / (head, role)s): the head-set benchmarks iterate over these."""
SUBSPACE_FAMILIES: tuple[str, ...] = ("rotation",)
"""Families whose units are directions of a learned basis of z (`ioi_superpose.rotation`), not heads."""
HARD_CONCRETE_STRETCH = (-0.1, 1.1)
"""(γ, ζ) of the hard-concrete distribution (Louizos et al. 2018): the concrete sample in (0, 1) is
stretched to (γ, ζ) and clamped to [0, 1], so a gate is exactly 0 or 1 with non-zero probability."""


def position_roles(
    length: int,
    end_pos: Tensor,
    io_pos: Tensor | None = None,
    s1_pos: Tensor | None = None,
    s2_pos: Tensor | None = None,
) -> Tensor:
    """Role index (into `ROLES`) of every position, [batch, length]; later roles override earlier ones
    (S1+1, S1, IO, S2, END). Positions after END (padding) are `other`: they never reach END's logits."""
    batch = end_pos.shape[0]
    roles = torch.full((batch, length), ROLE_INDEX["other"], dtype=torch.long, device=end_pos.device)
    rows = torch.arange(batch, device=end_pos.device)
    if s1_pos is not None:
        roles[rows, (s1_pos + 1).clamp(max=length - 1)] = ROLE_INDEX["S1+1"]
    for name, pos in (("S1", s1_pos), ("IO", io_pos), ("S2", s2_pos), ("END", end_pos)):
        if pos is not None:
            roles[rows, pos] = ROLE_INDEX[name]
    return roles


def batch_roles(batch: object) -> Tensor:
    """`position_roles` of a `ContrastBatch` (IOI roles where the batch has them)."""
    return position_roles(
        batch.clean_tokens.shape[1], batch.end_pos,  # type: ignore[attr-defined]
        getattr(batch, "io_pos", None), getattr(batch, "s1_pos", None), getattr(batch, "s2_pos", None),
    )  # fmt: skip


class LearnedFamily(Combination):
    """Base class of the learnable families (see the block comment above)."""

    family: str = ""
    roles: Tensor | None = None
    """[batch, pos] role indices of the current batch; only `per_position` reads them."""

    @contextmanager
    def using_roles(self, roles: Tensor | None) -> Iterator[None]:
        """Set the batch's position roles for the duration of one run (never left set)."""
        previous, self.roles = self.roles, roles
        try:
            yield
        finally:
            self.roles = previous

    coefficients: Tensor
    """The weights in the family's shape (a Parameter, or a property derived from one)."""

    def unit_names(self) -> tuple[str, ...]:
        return ("layer", "head")

    def penalty(self) -> Float[Tensor, ""]:
        raise NotImplementedError

    def l0(self, threshold: float) -> int:
        return int((self.coefficients.detach().abs() > threshold).sum())

    def support(self, threshold: float) -> list[tuple[int, ...]]:
        """Units whose |weight| exceeds `threshold`: (layer, head), or (layer, head, role) for per_position."""
        mask = self.coefficients.detach().abs() > threshold
        return [tuple(int(i) for i in unit) for unit in mask.nonzero().tolist()]

    def head_coefficients(self) -> Float[Tensor, "layer head"]:
        return self.coefficients.detach()

    def fixed(self, weights: Tensor) -> Combination:
        return HeadWeights(weights)

    def mask_weights(self, mask: Tensor) -> Tensor:
        """The weights (in the family's shape, any leading variant dims) that patch exactly `mask`: 1 inside."""
        return mask.float()

    @torch.no_grad()
    def project_(self) -> None:
        pass

    @torch.no_grad()
    def set_mask_(self, mask: Tensor) -> None:
        self.coefficients.copy_(self.mask_weights(mask).to(self.coefficients))


class ScalarCombination(HeadCombination, LearnedFamily):
    """`scalar`: today's α[layer, head] (`HeadCombination`), one weight per head at all positions, ‖α‖₁."""

    family = "scalar"

    def __init__(self, n_layers: int, n_heads: int, bounded: bool = True, init: float = 1.0) -> None:
        HeadCombination.__init__(self, n_layers, n_heads, bounded, init)

    @torch.no_grad()
    def project_(self) -> None:
        HeadCombination.project_(self)


class PositionWeights(FixedVariants, Combination):
    """Fixed weights w[variant, layer, head, role]; each position takes its role's weight (`roles` [batch, pos])."""

    def __init__(self, weights: Float[Tensor, "variants layer head role"], roles: Tensor | None) -> None:
        super().__init__()
        if weights.dim() == 3:
            weights = weights[None]
        if weights.dim() != 4:
            raise ValueError(f"weights must be [variants, layer, head, role], got {tuple(weights.shape)}")
        self.register_buffer("weights", weights.detach().float())
        self.roles = roles

    def with_weights(self, weights: Tensor) -> "PositionWeights":
        return PositionWeights(weights, self.roles)

    def first_layer(self) -> int:
        touched = (self.weights != 0).flatten(2).any(-1).any(0).nonzero()
        return int(touched[0]) if len(touched) else self.weights.shape[1]

    def forward(self, layer: int, z_base: Tensor, z_source: Tensor) -> Tensor:
        return mix_by_role(z_base, z_source, self.weights[:, layer], self.roles)


def mix_by_role(
    z_base: Float[Tensor, "variants batch pos head d_head"],
    z_source: Float[Tensor, "batch pos head d_head"],
    weights: Float[Tensor, "variants head role"],
    roles: Tensor | None,
) -> Float[Tensor, "variants batch pos head d_head"]:
    """z_base + w[role(position)] ⊙ (z_source − z_base)."""
    if roles is None:
        raise ValueError("a per_position combination needs the batch's position roles (set with using_roles)")
    roles = roles[:, : z_base.shape[2]].to(z_base.device)
    w = weights.to(z_base.device, z_base.dtype)[:, :, roles]  # [variants, head, batch, pos]
    w = w.permute(0, 2, 3, 1)[..., None]  # [variants, batch, pos, head, 1]
    return z_base + w * (z_source[None] - z_base)


class PerPositionCombination(LearnedFamily):
    """`per_position`: α[layer, head, role], one weight per head and position role (`ROLES`), ‖α‖₁;
    bounded to [0, 1] by `project_()` like `scalar`."""

    family = "per_position"

    def __init__(self, n_layers: int, n_heads: int, bounded: bool = True, init: float = 1.0) -> None:
        super().__init__()
        if bounded and not 0.0 <= init <= 1.0:
            raise ConfigError(f"--model.init={init} is outside [0, 1]; a bounded combination needs 0 <= init <= 1.")
        self.bounded = bounded
        self.coefficients = nn.Parameter(torch.full((n_layers, n_heads, len(ROLES)), float(init)))

    def unit_names(self) -> tuple[str, ...]:
        return ("layer", "head", "role")

    def forward(self, layer: int, z_base: Tensor, z_source: Tensor) -> Tensor:
        return mix_by_role(z_base, z_source, self.coefficients[layer][None], self.roles)

    def penalty(self) -> Tensor:
        return self.coefficients.abs().sum()

    def head_coefficients(self) -> Tensor:
        return self.coefficients.detach().abs().amax(-1)

    def fixed(self, weights: Tensor) -> Combination:
        return PositionWeights(weights, self.roles)

    @torch.no_grad()
    def project_(self) -> None:
        if self.bounded:
            self.coefficients.clamp_(0.0, 1.0)


class HardConcreteCombination(LearnedFamily):
    """`hard_concrete`: a stochastic L0 gate per head (Louizos et al. 2018; as in subnetwork probing and
    Edge Pruning). Training samples u ~ U(0, 1) and gates g = clamp(σ((log u − log(1−u) + log α)/β)(ζ−γ)+γ,
    0, 1) with temperature β (default 2/3) and stretch (γ, ζ) = (−0.1, 1.1); the penalty is the expected
    number of open gates Σ σ(log α − β log(−γ/ζ)). In evaluation (`self.training` false) the gate is
    deterministic, clamp(σ(log α)(ζ−γ)+γ, 0, 1) — `coefficients`. Sampling uses its own generator seeded
    with `seed` (the global RNG is untouched), so a run is reproducible.
    """

    family = "hard_concrete"

    def __init__(
        self, n_layers: int, n_heads: int, init: float = 1.0, temperature: float = 2 / 3, seed: int = 0
    ) -> None:
        super().__init__()
        if not 0.0 <= init <= 1.0:
            raise ConfigError(
                f"--model.init={init} is outside [0, 1]; a hard_concrete gate's initial value is in [0, 1]."
            )
        if temperature <= 0:
            raise ConfigError(f"--model.temperature must be > 0 (the hard-concrete temperature β), got {temperature}.")
        self.temperature, self.seed = float(temperature), int(seed)
        self.gamma, self.zeta = HARD_CONCRETE_STRETCH
        # The log α whose deterministic gate is `init` (probabilities kept inside (0.001, 0.999)).
        p = min(max((init - self.gamma) / (self.zeta - self.gamma), 1e-3), 1 - 1e-3)
        self.log_alpha = nn.Parameter(torch.full((n_layers, n_heads), math.log(p / (1 - p))))
        self._generator: torch.Generator | None = None

    def _noise(self, shape: torch.Size, device: torch.device) -> Tensor:
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        return torch.rand(shape, generator=self._generator, device=device).clamp(1e-6, 1 - 1e-6)

    def gates(self, log_alpha: Tensor) -> Tensor:
        if self.training:
            u = self._noise(log_alpha.shape, log_alpha.device)
            s = torch.sigmoid((u.log() - (1 - u).log() + log_alpha) / self.temperature)
        else:
            s = torch.sigmoid(log_alpha)
        return (s * (self.zeta - self.gamma) + self.gamma).clamp(0.0, 1.0)

    @property
    def coefficients(self) -> Tensor:
        """The deterministic (evaluation) gates [layer, head]."""
        return (torch.sigmoid(self.log_alpha) * (self.zeta - self.gamma) + self.gamma).clamp(0.0, 1.0)

    def forward(self, layer: int, z_base: Tensor, z_source: Tensor) -> Tensor:
        return mix(z_base, z_source, self.gates(self.log_alpha[layer])[None])

    def penalty(self) -> Tensor:
        return torch.sigmoid(self.log_alpha - self.temperature * math.log(-self.gamma / self.zeta)).sum()

    @torch.no_grad()
    def set_mask_(self, mask: Tensor) -> None:
        self.log_alpha.copy_(torch.where(mask.bool().to(self.log_alpha.device), 10.0, -10.0))


def build_combination(
    family: str, n_layers: int, n_heads: int, bounded: bool = True, init: float = 1.0,
    temperature: float = 2 / 3, seed: int = 0, mixing_target: int | None = None,
    d_head: int | None = None, rotation: dict | None = None,
) -> LearnedFamily:  # fmt: skip
    """The learnable combination of `family` (`--model.combination`); `mixing_target` is `mixing`'s only,
    `d_head` and `rotation` (`RotationCombination`'s layers / temperature_start / temperature_end) `rotation`'s."""
    if mixing_target is not None and family != "mixing":
        raise ConfigError(
            f"--model.mixing_target={mixing_target} only applies to --model.combination mixing (got {family!r}): "
            "set the combination to mixing, or leave mixing_target null."
        )
    if family == "scalar":
        return ScalarCombination(n_layers, n_heads, bounded, init)
    if family == "per_position":
        return PerPositionCombination(n_layers, n_heads, bounded, init)
    if family == "hard_concrete":
        return HardConcreteCombination(n_layers, n_heads, init, temperature, seed)
    if family == "mixing":
        from ioi_superpose.mixing import MixingCombination  # mixing.py builds on this module

        return MixingCombination(n_layers, n_heads, bounded, init, mixing_target)
    if family == "rotation":
        from ioi_superpose.rotation import RotationCombination

        if d_head is None:
            raise ValueError("the rotation family needs the model's d_head")
        return RotationCombination(n_layers, n_heads, d_head, init=init, seed=seed, **(rotation or {}))
    raise ConfigError(f"--model.combination must be one of {list(FAMILIES + SUBSPACE_FAMILIES)}, got {family!r}.")

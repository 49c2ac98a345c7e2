"""`rotation`: a learned orthogonal change of basis of a layer's head outputs with a learned mask — distributed
alignment search (DAS, Geiger et al. 2023) with boundless DAS's learned mask (Wu et al. 2023).

**Space.** Per selected layer l, the concatenated head outputs z[l] ∈ R^D, D = n_heads · d_head (TransformerLens's
`hook_z`, heads in order). R_l is a D × D orthogonal matrix whose rows u_1 … u_D are the new basis; the patch is

    z_patched = z_base + R_lᵀ M_l R_l (z_source − z_base),     M_l = diag(m_l),  m_l = σ(mask_logits_l / T),

so the coordinates of the difference along the kept directions (m = 1) are moved to the source run's and all
others stay at the base run's. m = 1 everywhere is the full patch of layer l (`scalar` with α = 1 on it),
m = 0 the base run; R = I with a 0/1 mask per block of d_head coordinates is subset patching of heads.

**Why a rotation.** A per-head rotation z_h → z_h Q (W_V·Q, Qᵀ·W_O) leaves the model's function unchanged but
changes every per-coordinate quantity. This family's learned *subspace* is basis-free: under such a Q the
rotation R·blockdiag(…, Q, …) patches exactly as R did, and the head loadings below do not move
(`tests/test_rotation.py` checks both).

**Mask and temperature** (boundless DAS). m is a sigmoid of learned logits at temperature T, annealed
geometrically from `temperature_start` to `temperature_end` over the fit (`project_()` — called after every
optimiser step — advances it; `set_total_steps` is called by the system at the start of a fit), so the mask
starts soft and ends close to 0/1. **Penalty**: Σ m over the selected layers (the expected number of kept
dimensions), weighed by `--model.l1`.

**Orthogonality** comes from `torch.nn.utils.parametrizations.orthogonal` (a matrix exponential of a skew matrix
times a base that is re-initialised to the current R), never from a hand-written projection. R starts as a
random orthogonal matrix drawn with the family's own seeded generator, in float64 so that it does not depend on the
thread count (`haar_orthogonal`) (at R = I and a uniform mask, Rᵀ m I R = m I does not depend on R and R would get
no gradient).

**Across layers**: one R per layer here, each patched where its layer runs (a later layer recomputes from an
earlier one's patch). One R over several layers together is `rotation_joint.JointRotationCombination`
(`--model.rotation_joint`), a fixed-activation intervention with its causal caveat.

**What a run reports** (`analyses.rotation.rotation_dimensions`): the number of mask dimensions needed — dimensions
sorted by m, the smallest k whose hard 0/1 mask on the top k reaches the target effect, found by evaluating every k —
and each head's loading on the kept subspace: for the kept rows u of R_l, the share ‖u restricted to head h‖²
(a head's d_head coordinates), averaged over kept rows (the shares sum to 1 over heads) and summed over them
(the number of kept dimensions "in" each head). Unchanged by any per-head rotation of z.

**Units** of the family surface (`combinations.LearnedFamily`) are (layer, dimension of the rotated basis):
`coefficients` is m in [n_layers, D] (0 on layers not selected); `head_coefficients` is Σ_k m_k ‖u_k|_h‖²
[layer, head], the soft mask's dimensions per head.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn
from torch.nn.utils import parametrizations

from ioi_superpose.combinations.base import LearnedFamily, SeededSettings, check_finite
from ioi_superpose.combinations.rotation_joint import NEEDS_BASE_Z, JointRotationWeights, joint_z_function
from ioi_superpose.engine.patch import Combination, ZFunction
from ioi_superpose.errors import ConfigError, SettingError

HARD_LOGIT = 1e4
"""|mask logit| that `set_mask_` writes: σ(±1e4 / T) is exactly 1 or 0 in float32 for any T ≤ 1e3."""


def rotate_patch(
    z_base: Float[Tensor, "variants batch pos head d_head"],
    z_source: Float[Tensor, "batch pos head d_head"],
    rotation: Float[Tensor, "dim dim"],
    mask: Float[Tensor, "variants dim"],
) -> Float[Tensor, "variants batch pos head d_head"]:
    """z_base + Rᵀ diag(m) R (z_source − z_base) on the concatenated heads (rows of R: the basis)."""
    delta = (z_source[None].to(z_base.dtype) - z_base).flatten(-2)  # [variants, batch, pos, head·d_head]
    rotation = rotation.to(z_base.device, z_base.dtype)
    coordinates = delta @ rotation.T  # coordinates along u_1 … u_D
    kept = coordinates * mask.to(z_base.device, z_base.dtype)[:, None, None, :]
    return z_base + (kept @ rotation).view_as(z_base)


def head_shares(rotation: Float[Tensor, "dim dim"], n_heads: int) -> Float[Tensor, "dim head"]:
    """‖u_k restricted to head h‖² for every row u_k of R (each row's shares sum to 1: R is orthogonal)."""
    return rotation.detach().view(rotation.shape[0], n_heads, -1).pow(2).sum(-1)


def haar_orthogonal(dim: int, generator: torch.Generator) -> Float[Tensor, "dim dim"]:
    """A random orthogonal matrix (QR of a Gaussian, signs fixed so the draw is Haar), in float32.

    Drawn and decomposed in float64: the family is built before the fit's thread count is set (TorchThreads), and
    LAPACK's float32 QR rounds differently with 1 and 2 threads (1e-7 at dim 64) — enough to move the toy layer-0
    fit from val recovery 0.925 to 0.993. In float64 the thread-dependent error is ~1e-16, far below float32's
    rounding step, so the rounded start is the same at any thread count (tested)."""
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))[None, :]).float()


def check_layers(layers: Sequence[int] | None, n_layers: int) -> tuple[int, ...]:
    if layers is None:
        return tuple(range(n_layers))
    chosen = tuple(sorted({int(layer) for layer in layers}))
    if not chosen or chosen[0] < 0 or chosen[-1] >= n_layers:
        raise ConfigError(
            f"--model.rotation_layers={list(layers)} must name one or more layers in [0, {n_layers - 1}] "
            "(or be null: every layer)."
        )
    return chosen


@dataclass(frozen=True)
class RotationSettings(SeededSettings):
    """`rotation`'s settings (`gate_seed` seeds R's random start)."""

    rotation_layers: Sequence[int] | None = None
    """the layers that get a learned rotation R and mask (null: all)."""
    rotation_temperature_start: float = 1.0
    """the mask's temperature at the start of the fit."""
    rotation_temperature_end: float = 0.05
    """its temperature at the end, annealed geometrically over the fit's optimiser steps, as boundless DAS anneals
    its boundaries'."""
    rotation_target: float = 0.9
    """after fit, the number of rotated dimensions needed is the smallest k whose hard mask on the top-k dimensions
    reaches this effect on the first `prune_prompts` training prompts; in summary.json."""
    rotation_joint: bool = False
    """one R and mask over the concatenated z of all `rotation_layers` (false: one per layer), patched from fixed
    activations: every selected layer's z is set from the unpatched base and source runs, so a later selected layer
    does not recompute from the earlier one's patch (the causal caveat: `combinations/rotation_joint.py`). Needs
    rest free."""

    def __post_init__(self) -> None:
        for name in ("rotation_temperature_start", "rotation_temperature_end", "rotation_target"):
            check_finite(name, getattr(self, name))
        start, end = self.rotation_temperature_start, self.rotation_temperature_end
        if not 0 < end <= start:
            raise SettingError("rotation_temperature_end", f"$rotation_temperature_end={end} must be in (0, "
                               f"$rotation_temperature_start={start}] (the mask's temperature is annealed down).")
        if not 0.0 < self.rotation_target <= 1.0:
            raise SettingError("rotation_target", f"$rotation_target must be in (0, 1], got {self.rotation_target}.")


class RotationWeights(Combination):
    """Fixed masks w[variant, layer, dim] with fixed rotations (evaluation, pruning and the dimension count)."""

    def __init__(self, rotations: Float[Tensor, "layer dim dim"], weights: Float[Tensor, "variants layer dim"]) -> None:
        super().__init__()
        if weights.dim() == 2:
            weights = weights[None]
        if weights.dim() != 3 or weights.shape[1:] != rotations.shape[:2]:
            raise ValueError(
                f"weights must be [variants, layer, dim] matching rotations {tuple(rotations.shape)}, "
                f"got {tuple(weights.shape)}"
            )
        self.register_buffer("rotations", rotations.detach().float())
        self.register_buffer("weights", weights.detach().float())

    @property
    def n_variants(self) -> int:
        return self.weights.shape[0]

    def select(self, rows: range) -> "RotationWeights":
        return RotationWeights(self.rotations, self.weights[rows.start : rows.stop])

    def first_layer(self) -> int:
        touched = (self.weights != 0).any(-1).any(0).nonzero()
        return int(touched[0]) if len(touched) else self.weights.shape[1]

    def forward(self, layer: int, z_base: Tensor, z_source: Tensor) -> Tensor:
        mask = self.weights[:, layer]
        if not mask.any():
            return z_base
        return rotate_patch(z_base, z_source, self.rotations[layer], mask)


class RotationCombination(LearnedFamily):
    """`rotation`: an orthogonal R_l and a mask m_l per selected layer (see the module docstring)."""

    family = "rotation"
    Settings = RotationSettings
    description = ("a learned orthogonal basis of each layer's concatenated z with a sigmoid mask (boundless DAS, "
                   "`combinations/rotation.py`; penalty Σ mask)")  # fmt: skip
    units_are_heads = False
    joint = False
    """Whether one R spans all selected layers (`JointRotationCombination`)."""

    def __init__(
        self,
        n_layers: int,
        n_heads: int,
        d_head: int,
        layers: Sequence[int] | None = None,
        init: float = 1.0,
        temperature_start: float = 1.0,
        temperature_end: float = 0.05,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not 0.0 <= init <= 1.0:
            raise ConfigError(f"--model.init={init} is outside [0, 1]; a rotation mask's initial value is in [0, 1].")
        if not 0 < temperature_end <= temperature_start:
            raise ConfigError(
                f"--model.rotation_temperature_start={temperature_start} and rotation_temperature_end="
                f"{temperature_end} must satisfy 0 < end <= start (the mask's temperature is annealed down)."
            )
        self.n_layers, self.n_heads, self.d_head = n_layers, n_heads, d_head
        self.layers = check_layers(layers, n_layers)
        self.dim = n_heads * d_head
        self.temperature_start, self.temperature_end = float(temperature_start), float(temperature_end)
        self.total_steps = 0
        """Steps the temperature anneals over (0: stays at `temperature_start`); `set_total_steps` sets it."""
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        generator = torch.Generator().manual_seed(seed)
        self.rotations = nn.ModuleList()
        for _ in self.layers:
            linear = nn.Linear(self.dim, self.dim, bias=False)
            parametrizations.orthogonal(linear)
            linear.weight = haar_orthogonal(self.dim, generator)  # through the parametrization's right inverse
            self.rotations.append(linear)
        self.register_buffer("initial_rotations", torch.stack([linear.weight.detach() for linear in self.rotations]))
        """R at the start: how far training moved R is part of the report (loadings of an unmoved random R say
        nothing about the model: a random unit vector's head shares are ≈ 1/n_heads each)."""
        p = min(max(init, 1e-2), 1 - 1e-2)  # σ(logit / T_start) = init, kept off the flat tails of σ
        start = temperature_start * math.log(p / (1 - p))
        self.mask_logits = nn.Parameter(torch.full((len(self.layers), self.dim), start))

    @classmethod
    def build(
        cls, n_layers: int, n_heads: int, d_head: int, init: float, settings: RotationSettings
    ) -> "RotationCombination":
        """One R per selected layer, or one R over all of them (`rotation_joint`: `JointRotationCombination`)."""
        family = JointRotationCombination if settings.rotation_joint else RotationCombination
        layers = None if settings.rotation_layers is None else list(settings.rotation_layers)
        return family(n_layers, n_heads, d_head, layers, init, settings.rotation_temperature_start,
                      settings.rotation_temperature_end, settings.gate_seed)  # fmt: skip

    # ---------------------------------------------------------------------------------------------
    # the parameters' views

    def temperature(self) -> float:
        if self.total_steps <= 0:
            return self.temperature_start
        progress = min(1.0, int(self.step) / self.total_steps)
        return self.temperature_start * (self.temperature_end / self.temperature_start) ** progress

    def set_total_steps(self, steps: int) -> None:
        """Anneal the temperature over `steps` optimiser steps in all (the system calls it at fit start with the
        fit's total). The step count is not reset: it is a buffer, restored with a checkpoint, so a resumed fit
        continues the schedule where it stopped (Lightning restores the state before `on_fit_start`)."""
        self.total_steps = int(steps)

    def rotation(self, slot: int) -> Float[Tensor, "dim dim"]:
        """R of the `slot`-th selected layer (rows: the learned basis)."""
        return self.rotations[slot].weight

    def masks(self) -> Float[Tensor, "slot dim"]:
        return torch.sigmoid(self.mask_logits / self.temperature())

    def all_rotations(self) -> Float[Tensor, "layer dim dim"]:
        """R of every layer (the identity on layers not selected, where the mask is 0 anyway), detached."""
        rotations = torch.eye(self.dim, device=self.mask_logits.device).repeat(self.n_layers, 1, 1)
        for slot, layer in enumerate(self.layers):
            rotations[layer] = self.rotation(slot).detach()
        return rotations

    @property
    def coefficients(self) -> Float[Tensor, "layer dim"]:
        """m of every layer, 0 on layers not selected."""
        full = torch.zeros(self.n_layers, self.dim, device=self.mask_logits.device)
        return full.index_copy(0, torch.tensor(self.layers, device=full.device), self.masks())

    def unit_names(self) -> tuple[str, ...]:
        return ("layer", "dim")

    def first_layer(self) -> int:
        return self.layers[0]

    def forward(self, layer: int, z_base: Tensor, z_source: Tensor) -> Tensor:
        if layer not in self.layers:
            return z_base
        slot = self.layers.index(layer)
        return rotate_patch(z_base, z_source, self.rotation(slot), self.masks()[slot][None])

    def penalty(self) -> Float[Tensor, ""]:
        """Σ m: the expected number of kept dimensions."""
        return self.masks().sum()

    @torch.no_grad()
    def head_coefficients(self) -> Float[Tensor, "layer head"]:
        """Σ_k m_k ‖u_k|_h‖²: the soft mask's dimensions in each head."""
        out = torch.zeros(self.n_layers, self.n_heads, device=self.mask_logits.device)
        masks = self.masks()
        for slot, layer in enumerate(self.layers):
            out[layer] = masks[slot] @ head_shares(self.rotation(slot), self.n_heads)
        return out

    def fixed(self, weights: Tensor) -> Combination:
        return RotationWeights(self.all_rotations(), weights.to(self.mask_logits.device))

    @torch.no_grad()
    def project_(self) -> None:
        """No projection (R stays orthogonal by construction, m in (0, 1) by the sigmoid): one annealing step."""
        self.step += 1

    @torch.no_grad()
    def set_mask_(self, mask: Tensor) -> None:
        chosen = mask.bool().to(self.mask_logits.device)[list(self.layers)]
        self.mask_logits.copy_(torch.where(chosen, HARD_LOGIT, -HARD_LOGIT))

    # ---------------------------------------------------------------------------------------------
    # the report (`analyses.rotation.rotation_dimensions` runs the model; this reads R and the mask)

    def layer_report(self, kept: Tensor, masks: Tensor) -> dict[str, Any]:
        """Per selected layer: its kept rows' head loadings, mask size and how far its R moved."""
        layers = {}
        for slot, layer in enumerate(self.layers):
            shares = head_shares(self.rotation(slot), self.n_heads).cpu()  # [dim, head]
            rows = kept[layer]
            layers[str(layer)] = {
                "dims_kept": int(rows.sum()),
                "mask_above_half": int((masks[layer] > 0.5).sum()),
                "mask_sum": round(float(masks[layer].sum()), 4),
                "head_loading_sum": [round(float(v), 4) for v in shares[rows].sum(0)],
                "head_loading_share": (
                    [round(float(v), 4) for v in shares[rows].mean(0)] if rows.any() else None
                ),
                # ‖R − R_start‖_F / ‖R_start‖_F (‖R_start‖_F = √D): 0 = unmoved; two random rotations are ≈ √2 apart.
                "rotation_moved": round(
                    float((self.rotation(slot).detach() - self.initial_rotations[slot]).norm() / math.sqrt(self.dim)), 4
                ),
            }  # fmt: skip
        return layers


class JointRotationCombination(RotationCombination):
    """One orthogonal R over the selected layers' concatenated z and one mask over its dimensions (see the module
    docstring: a fixed-activation intervention). The mask, its temperature schedule and penalty are the
    per-layer family's (`mask_logits` of shape [n selected layers, D] holds the L·D joint dimensions)."""

    reads_base_z = True
    joint = True

    def __init__(
        self,
        n_layers: int,
        n_heads: int,
        d_head: int,
        layers: Sequence[int] | None = None,
        init: float = 1.0,
        temperature_start: float = 1.0,
        temperature_end: float = 0.05,
        seed: int = 0,
    ) -> None:
        # The parent builds one R per layer; replaced below by one joint R (its draws are discarded, so the
        # joint R's seed is the family's own, independent of the number of layers drawn before).
        super().__init__(n_layers, n_heads, d_head, layers, init, temperature_start, temperature_end, seed)
        joint = len(self.layers) * self.dim
        linear = nn.Linear(joint, joint, bias=False)
        parametrizations.orthogonal(linear)
        linear.weight = haar_orthogonal(joint, torch.Generator().manual_seed(seed))
        self.rotations = nn.ModuleList([linear])
        self.initial_rotations = linear.weight.detach()[None].clone()

    @property
    def joint_dim(self) -> int:
        return len(self.layers) * self.dim

    def joint_rotation(self) -> Float[Tensor, "dim dim"]:
        return self.rotations[0].weight

    def rotation(self, slot: int) -> Float[Tensor, "dim dim"]:
        raise ConfigError("a joint rotation has one R over all selected layers: use joint_rotation().")

    def all_rotations(self) -> Float[Tensor, "layer dim dim"]:
        raise ConfigError("a joint rotation has one R over all selected layers: use joint_rotation().")

    def forward(self, layer: int, z_base: Tensor, z_source: Tensor) -> Tensor:
        raise ConfigError(NEEDS_BASE_Z)

    def bind(
        self,
        source_z: Float[Tensor, "layer batch pos head d_head"],
        roles: Int[Tensor, "batch pos"] | None = None,
        base_z: Float[Tensor, "layer batch pos head d_head"] | None = None,
    ) -> ZFunction:
        return joint_z_function(self.layers, base_z, source_z, self.joint_rotation(), self.masks().flatten()[None])

    def shares(self) -> Float[Tensor, "dim slot head"]:
        """‖u_k restricted to (selected layer, head)‖² for every row u_k of R (each row sums to 1)."""
        return head_shares(self.joint_rotation(), len(self.layers) * self.n_heads).view(
            self.joint_dim, len(self.layers), self.n_heads
        )

    @torch.no_grad()
    def head_coefficients(self) -> Float[Tensor, "layer head"]:
        """Σ_k m_k ‖u_k|_(layer, head)‖²: the soft mask's dimensions in each head of each selected layer."""
        out = torch.zeros(self.n_layers, self.n_heads, device=self.mask_logits.device)
        out[list(self.layers)] = torch.einsum("k,ksh->sh", self.masks().flatten(), self.shares())
        return out

    def fixed(self, weights: Tensor) -> Combination:
        return JointRotationWeights(self.layers, self.joint_rotation().detach(), weights.to(self.mask_logits.device))

    def layer_report(self, kept: Tensor, masks: Tensor) -> dict[str, Any]:
        """Per selected layer: the kept joint directions' loadings on that layer's heads (see `analyses.rotation`)."""
        rows = kept[list(self.layers)].flatten()  # joint dimensions kept
        shares = self.shares().cpu()[rows]  # [kept, slot, head]
        moved = (self.joint_rotation().detach() - self.initial_rotations[0]).norm() / math.sqrt(self.joint_dim)
        layers = {}
        for slot, layer in enumerate(self.layers):
            layers[str(layer)] = {
                "dims_kept": int(rows.sum()),  # joint dimensions: the same for every layer
                "mask_above_half": int((masks[list(self.layers)] > 0.5).sum()),
                "mask_sum": round(float(masks[list(self.layers)].sum()), 4),
                "layer_share": round(float(shares[:, slot].sum(-1).mean()), 4) if rows.any() else None,
                "head_loading_sum": [round(float(v), 4) for v in shares[:, slot].sum(0)],
                "head_loading_share": [round(float(v), 4) for v in shares[:, slot].mean(0)] if rows.any() else None,
                "rotation_moved": round(float(moved), 4),
            }  # fmt: skip
        return layers

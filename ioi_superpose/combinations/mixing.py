"""`mixing`: a learned linear map across heads — the seed notebook's "change of basis for the z activations
that would put all of these heads in the same layer".

**Space.** Head outputs z (per position, d_head coordinates: TransformerLens's `hook_z`), the space every
family patches and the one the notebook names. The map is one scalar per (target head, source head) pair,

    z_patched[l, h] = z_cur[l, h] + Σ_{l' <= l, h'} M[l, h, l', h'] · Δ[l', h'],
    Δ[l', h'] = z_source[l', h'] − z_cur[l', h'],

where z_cur is the z the same forward computed when it passed layer l' (before that layer's own mixing),
so a head's patch can carry other heads' differences, from its own layer and every earlier one. M has
shape [n_layers, n_heads, n_layers, n_heads]; entries with l' > l (a layer cannot receive what has not
been computed yet) are masked: exactly 0, no gradient. With M = diag(α) this is exactly `scalar`.

What one scalar per pair means: the source's difference vector is added, coordinate for coordinate, to
the target head's z and so reaches the residual stream through the *target's* W_O (its write is
W_O[l, h]ᵀ Δ[l', h'], not the source's own W_O[l', h']ᵀ Δ[l', h']); a head's z coordinates are its own
basis, not shared with the other heads. A full d_head × d_head block per pair (a true change of basis
of z) would be L²H²d_head²/2 parameters (42M for GPT-2 small); this family is the head-level map.

`mixing_target` L (`--model.mixing_target`): only layer L's heads are patched, and they receive from all
heads of layers <= L ("put all the heads in one layer"); its init is diag(init) on layer L, zero
elsewhere — exactly `scalar` restricted to layer L.

**Penalty**: ‖M‖₁ over the allowed entries. **Bounded** (`project_()` after each optimiser step): the
diagonal in [0, 1], like `scalar` (a head's own patch interpolates between base and source, and an L1
projected step sets unneeded heads to exactly 0); off-diagonal entries in [−1, 1] — a head may need to
add or cancel another head's difference, so both signs are allowed, but never more than the whole
difference (|M| > 1 amplifies a difference beyond anything the source run holds, the question of
`maximize`, not of a change of basis).

**Views** (the families' surface, `combinations.base.LearnedFamily`): units are (layer, head, source_layer,
source_head); `head_coefficients` is the *source* view, [source_layer, source_head] = the largest |M|
any target uses that head's difference with (for `scalar`: α itself). **Pruning** keeps the learned
values on the kept entries (`mask_weights`): weight 1 would flip negative entries and has no
"set of heads" meaning off the diagonal.

**State.** One forward's function (`bind(source_z)`) records Δ of every layer it passes; the record lives in
that function, not on the module, and goes with it when the forward ends. Runs call it per layer in
increasing layer order (`runs.patched_end_logits`, both runners); a layer out of order is an error. A
forward must start at `first_layer()` or earlier: layer 0 for the learned map (every allowed entry, zero or
not, needs its source's Δ for its gradient), the first source layer with a non-zero entry for fixed variants.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from ioi_superpose.combinations.base import BoundedSettings, LearnedFamily, check_init
from ioi_superpose.engine.patch import Combination, FixedVariants
from ioi_superpose.errors import SettingError


@dataclass(frozen=True)
class MixingSettings(BoundedSettings):
    """`mixing`'s settings: bounded, and the one layer that receives."""

    mixing_target: int | None = None
    """patch only this layer's heads, each receiving from every head of this and earlier layers ("all the heads in
    one layer"; init diag(init) on that layer). Null: every layer receives from itself and all earlier layers."""


def allowed_entries(n_layers: int, n_heads: int, target: int | None = None) -> Bool[Tensor, "layer head layer head"]:
    """M[l, h, l', h'] may be non-zero: l' <= l (causality), and l == `target` when one is given."""
    layers = torch.arange(n_layers)
    allowed = layers[None, :] <= layers[:, None]  # [target layer, source layer]
    if target is not None:
        allowed &= (layers == target)[:, None]
    return allowed[:, None, :, None].expand(n_layers, n_heads, n_layers, n_heads).clone()


def identity_map(
    n_layers: int, n_heads: int, value: float, target: int | None = None
) -> Float[Tensor, "layer head layer head"]:
    """M = value on the diagonal (of `target`'s heads only, when given), 0 elsewhere: `scalar` with α = value."""
    diagonal = torch.zeros(n_layers, n_heads)
    diagonal[slice(None) if target is None else target] = value
    return torch.diag_embed(diagonal.flatten()).view(n_layers, n_heads, n_layers, n_heads)


class MixingRun(Combination):
    """The mixing forward shared by the learned map and its fixed variants: records each layer's Δ and
    adds the map's share of every recorded Δ (see the module docstring)."""

    n_layers: int

    def maps(self) -> Float[Tensor, "variants layer head layer head"]:
        """The map of each variant, disallowed entries 0."""
        raise NotImplementedError

    def receives(self, layer: int) -> bool:
        """Whether `layer`'s heads may be patched at all (False: z passes unchanged, Δ is still recorded)."""
        return True

    def forward(self, *args: object, **kwargs: object) -> Tensor:
        raise TypeError("a mixing map reads every earlier layer's difference: run it through bind(source_z), "
                        "which holds one forward's record of them.")  # fmt: skip

    def bind(
        self, source_z: Float[Tensor, "layer batch pos head d_head"], roles: Tensor | None = None
    ) -> Callable[[int, Tensor], Tensor]:
        """One forward's z function: it records Δ of every layer it passes (the record lives in the function
        and goes with it) and adds the map's share of every recorded Δ."""
        batch, deltas = source_z.shape[1], []
        start: list[int] = []  # the forward's first layer, once seen

        def z_fn(layer: int, z: Tensor) -> Tensor:
            if not start:
                if layer > self.first_layer():
                    raise ValueError(
                        f"a mixing forward started at layer {layer}, but its map reads the differences of layer "
                        f"{self.first_layer()}: start the run at layer <= first_layer() (runs.patched_end_logits "
                        "does)."
                    )
                start.append(layer)
            elif layer != start[0] + len(deltas):
                raise ValueError(
                    f"a mixing combination must see every layer in order: got layer {layer} after layer "
                    f"{start[0] + len(deltas) - 1}."
                )
            z_base = z.reshape(-1, batch, *z.shape[1:])  # [variant, batch, pos, head, d_head]
            deltas.append(source_z[layer][None].to(z_base.dtype) - z_base)
            out = z_base
            if self.receives(layer):
                weights = self.maps()[:, layer].to(z_base.device, z_base.dtype)  # [variant, head, layer, head]
                for source_layer, delta in enumerate(deltas, start=start[0]):
                    # target head t of every variant v takes Σ_s M[v, t, source_layer, s] · Δ[v, …, s, :]
                    out = out + torch.einsum("vts,vbpsd->vbptd", weights[:, :, source_layer], delta)
            return out.reshape(z.shape)

        return z_fn


class MixingWeights(FixedVariants, MixingRun):
    """Fixed maps w[variant, layer, head, source_layer, source_head] (evaluation and pruning of `mixing`);
    entries with source_layer > layer must be 0."""

    def __init__(self, weights: Float[Tensor, "variants layer head layer head"]) -> None:
        super().__init__()
        if weights.dim() == 4:
            weights = weights[None]
        if weights.dim() != 5 or weights.shape[1:3] != weights.shape[3:5]:
            raise ValueError(
                f"weights must be [variants, layer, head, layer, head] or [layer, head, layer, head], "
                f"got {tuple(weights.shape)}"
            )
        self.n_layers, n_heads = weights.shape[1:3]
        if (weights.detach().cpu() * ~allowed_entries(self.n_layers, n_heads)).abs().sum() > 0:
            raise ValueError("a mixing map has non-zero entries from a later layer (source_layer > layer)")
        self.register_buffer("weights", weights.detach().float())

    def first_layer(self) -> int:
        touched = (self.weights != 0).any(-1).any(2).any(1).any(0).nonzero()  # source layers any entry reads
        return int(touched[0]) if len(touched) else self.n_layers

    def maps(self) -> Tensor:
        return self.weights


class MixingCombination(MixingRun, LearnedFamily):
    """`mixing`: a learnable map M[layer, head, source_layer, source_head] (see the module docstring)."""

    family = "mixing"
    Settings = MixingSettings
    description = ("a map M[layer, head, source_layer, source_head] across heads: a head's patch adds M-weighted z "
                   "differences of the heads of its own and earlier layers (`combinations/mixing.py`; L1; identity "
                   "init = `scalar`)")  # fmt: skip

    def __init__(
        self, n_layers: int, n_heads: int, bounded: bool = True, init: float = 1.0, target: int | None = None
    ) -> None:
        MixingRun.__init__(self)
        check_init(init, bounded, "mixing")
        if target is not None and not 0 <= target < n_layers:
            raise SettingError(
                "mixing_target",
                f"$mixing_target={target} is not a layer of this model: give one in [0, {n_layers - 1}] "
                "(the layer whose heads receive), or null (every layer receives from itself and earlier layers)."
            )
        self.n_layers, self.bounded, self.target = n_layers, bounded, target
        self.register_buffer("allowed", allowed_entries(n_layers, n_heads, target), persistent=False)
        self._receiving = self.allowed.flatten(1).any(-1).tolist()
        self.coefficients = nn.Parameter(identity_map(n_layers, n_heads, float(init), target))

    @classmethod
    def build(
        cls, n_layers: int, n_heads: int, d_head: int, init: float, settings: MixingSettings
    ) -> "MixingCombination":
        return cls(n_layers, n_heads, settings.bounded, init, settings.mixing_target)

    def masked(self) -> Float[Tensor, "layer head layer head"]:
        """M with the disallowed entries exactly 0 (a product with the mask: they get no gradient)."""
        return self.coefficients * self.allowed

    def maps(self) -> Tensor:
        return self.masked()[None]

    def receives(self, layer: int) -> bool:
        return self._receiving[layer]

    def first_layer(self) -> int:
        return int(self.allowed.any(-1).any(1).any(0).nonzero()[0])  # layer 0: every target reads it

    def unit_names(self) -> tuple[str, ...]:
        return ("layer", "head", "source_layer", "source_head")

    def penalty(self) -> Float[Tensor, ""]:
        """‖M‖₁ over the allowed entries."""
        return self.masked().abs().sum()

    def l0(self, threshold: float) -> int:
        return int((self.masked().detach().abs() > threshold).sum())

    def support(self, threshold: float) -> list[tuple[int, ...]]:
        mask = self.masked().detach().abs() > threshold
        return [tuple(int(i) for i in unit) for unit in mask.nonzero().tolist()]

    def head_coefficients(self) -> Float[Tensor, "layer head"]:
        """Source view: [source_layer, source_head] = the largest |M| any target uses that head's Δ with."""
        return self.masked().detach().abs().amax(dim=(0, 1))

    def fixed(self, weights: Tensor) -> Combination:
        return MixingWeights(weights.to(self.coefficients.device) * self.allowed)

    def mask_weights(self, mask: Tensor) -> Tensor:
        """The learned values on `mask`, 0 elsewhere (see "Pruning" in the module docstring)."""
        return self.masked().detach().to(mask.device) * mask

    @torch.no_grad()
    def project_(self) -> None:
        self.coefficients.mul_(self.allowed)  # disallowed entries stay exactly 0 whatever was loaded
        if self.bounded:
            diagonal = torch.eye(self.allowed[..., 0, 0].numel(), dtype=torch.bool, device=self.allowed.device)
            diagonal = diagonal.view(self.allowed.shape)
            self.coefficients.copy_(
                torch.where(diagonal, self.coefficients.clamp(0.0, 1.0), self.coefficients.clamp(-1.0, 1.0))
            )

"""`rotation` with `rotation_joint`: ONE orthogonal R over the concatenated z of several layers' heads, patched
from fixed activations — distributed alignment search across layers, with its causal caveat.

**Space.** For the selected layers l_1 < … < l_L, the joint vector z = (z[l_1], …, z[l_L]) ∈ R^{L·D}, D = n_heads ·
d_head, layer-major then head then d_head (TransformerLens's `hook_z`). R is one (L·D) × (L·D) orthogonal matrix
(rows: the new basis) and m one mask over its L·D dimensions (boundless DAS's sigmoid at an annealed temperature,
exactly as in `rotation.RotationCombination`). With z_base and z_source the *unpatched* base and source runs' z of
all selected layers (recorded before the patched forward: `BaseRun.recorded_z`, `Reference.source_z`),

    z_patched = z_base + Rᵀ diag(m) R (z_source − z_base)           (one vector over all selected layers)

and the patched forward sets layer l_i's z to the i-th block of z_patched, *whatever the forward computed there*.

**The causal caveat.** Between l_i and l_j > l_i the model runs: layer l_j's z in the patched forward depends on
what was patched into l_i. A direction mixing the two layers cannot be an interchange intervention on the running
model in one place — to patch l_i you would need l_j's value, which does not exist yet, and it changes once l_i
is patched. This family therefore intervenes on *fixed* activations: every selected layer's z is overwritten by
a function of the two unpatched runs only. What that means:

- Every selected head is set by the intervention. The dimensions of the joint space outside the kept subspace
  hold the base run's values — also at l_j, where they do *not* recompute from what was patched into l_i: the
  patch at l_i reaches l_j's heads only through the kept subspace, never through l_j's own attention. Layers
  that are not selected, the embeddings and the MLPs recompute as usual (a cut, `rest="free"`).
- So a joint subspace is a statement about the heads' outputs treated as independent inputs to everything
  downstream (the "fixed-activation" or path-patching reading), not about a variable the running model computes
  at one point. With one selected layer it is exactly the per-layer family (tested); with several it is
  *not* the per-layer family with both layers selected (that one lets l_j recompute and patches l_j from
  its recomputed z), and its recovery can be above or below it.
- The full mask is the source run's z on every selected layer (both readings agree: patch all the heads of those
  layers from the source), the empty mask the base run's z on them, i.e. the base run.

**Why z and not the head outputs z·W_O (d_model per head).** The patch must be written back where the heads'
outputs enter the model. In z, every patched vector is a z and the engine's `hook_z` patch carries it. In the
space of head outputs (n_heads · d_model per layer) a rotated-and-masked difference leaves the image of each head's
W_O (of rank d_head), i.e. writes vectors no head can produce. The basis-free claim holds in z as for the
per-layer family: a per-head orthogonal change of basis z_h → z_h Q (W_V Q, Qᵀ W_O) leaves the model's function
unchanged, and R · blockdiag(…, Q, …) patches exactly as R did, with the same head loadings (tested). A
non-orthogonal change z_h → z_h A (W_V A, A⁻¹ W_O) also preserves the function but not the orthogonality of R's
blocks: like the per-layer family, these loadings are invariant under rotations of a head's z, not under any
invertible map of it.

**Units and the report.** The mask's L·D dimensions are laid out in the family's [n_layers, D] shape on the
selected layers' rows: mask entry (l_i, j) is joint dimension i·D + j. *That row index names the block of the
mask, not a layer*: a joint direction spans every selected layer. The head loadings are ‖u restricted to
(layer, head)‖² over all selected layers' heads (summing to 1 per direction), reported per layer with each
layer's share — "does the subspace live in one layer's heads, or across layers?".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn
from torch.nn.utils import parametrizations

from ioi_superpose.combinations.rotation import RotationCombination, haar_orthogonal, head_shares
from ioi_superpose.engine.patch import Combination, ZFunction
from ioi_superpose.errors import ConfigError

NEEDS_BASE_Z = (
    "the joint rotation (rotation_joint) patches from the unpatched base run's z of every selected layer, which "
    "only `runs.patched_end_logits` supplies (a cut, rest=free); it cannot be wrapped for rest=frozen."
)


def joint_rotate_patch(
    z_base: Float[Tensor, "layer batch pos head d_head"],
    z_source: Float[Tensor, "layer batch pos head d_head"],
    rotation: Float[Tensor, "dim dim"],
    mask: Float[Tensor, "variants dim"],
) -> Float[Tensor, "variants layer batch pos head d_head"]:
    """z_base + Rᵀ diag(m) R (z_source − z_base) on the joint vector of the given layers (layer-major)."""
    delta = (z_source.to(z_base.dtype) - z_base).permute(1, 2, 0, 3, 4)  # [batch, pos, layer, head, d_head]
    joint = delta.flatten(2)  # [batch, pos, layer·head·d_head]
    rotation = rotation.to(z_base.device, z_base.dtype)
    kept = (joint @ rotation.T)[None] * mask.to(z_base.device, z_base.dtype)[:, None, None, :]
    back = (kept @ rotation).view(mask.shape[0], *delta.shape)  # [variants, batch, pos, layer, head, d_head]
    return z_base[None] + back.permute(0, 3, 1, 2, 4, 5)


def joint_z_function(
    layers: Sequence[int],
    base_z: Float[Tensor, "layer batch pos head d_head"] | None,
    source_z: Float[Tensor, "layer batch pos head d_head"],
    rotation: Float[Tensor, "dim dim"],
    mask: Float[Tensor, "variants dim"],
) -> ZFunction:
    """One forward's z function: the joint patch, computed once from the fixed runs, replaces each selected
    layer's z (the forward's own z there is discarded: the caveat in the module docstring). `base_z` None (a
    caller that does not record the base run) is refused."""
    if base_z is None:
        raise ConfigError(NEEDS_BASE_Z)
    index = list(layers)
    patched = joint_rotate_patch(base_z[index], source_z[index], rotation, mask)

    def z_fn(layer: int, z: Tensor) -> Tensor:
        if layer not in index:
            return z
        return patched[:, index.index(layer)].reshape(z.shape).to(z.dtype)

    return z_fn


class JointRotationWeights(Combination):
    """Fixed 0/1 (or any) masks w[variant, layer, dim] on a fixed joint R (evaluation, pruning, the dimension count)."""

    reads_base_z = True
    """`runs.patched_end_logits` passes the base run's recorded z to `bind`."""

    def __init__(
        self, layers: Sequence[int], rotation: Float[Tensor, "dim dim"], weights: Float[Tensor, "variants layer dim"]
    ) -> None:
        super().__init__()
        if weights.dim() == 2:
            weights = weights[None]
        self.layers = tuple(layers)
        self.register_buffer("rotation", rotation.detach().float())
        self.register_buffer("weights", weights.detach().float())

    @property
    def n_variants(self) -> int:
        return self.weights.shape[0]

    def select(self, rows: range) -> "JointRotationWeights":
        return JointRotationWeights(self.layers, self.rotation, self.weights[rows.start : rows.stop])

    def first_layer(self) -> int:
        return self.layers[0] if self.weights.any() else self.weights.shape[1]

    def bind(
        self,
        source_z: Float[Tensor, "layer batch pos head d_head"],
        roles: Int[Tensor, "batch pos"] | None = None,
        base_z: Float[Tensor, "layer batch pos head d_head"] | None = None,
    ) -> ZFunction:
        mask = self.weights[:, list(self.layers)].flatten(1)
        return joint_z_function(self.layers, base_z, source_z, self.rotation, mask)


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

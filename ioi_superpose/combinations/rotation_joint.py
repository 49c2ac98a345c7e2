"""`rotation` with `rotation_joint`: ONE orthogonal R over the concatenated z of several layers' heads, patched
from fixed activations — distributed alignment search across layers, with its causal caveat. This module is the
joint patch (`joint_rotate_patch`, its z function, fixed joint masks); the learnable joint family,
`rotation.JointRotationCombination`, lives with the per-layer one, whose mask and schedule it shares.

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

from collections.abc import Sequence

from jaxtyping import Float, Int
from torch import Tensor

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

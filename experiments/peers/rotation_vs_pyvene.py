"""Our `rotation` patch against pyvene's `RotatedSpaceIntervention` on ONE head's z of the toy IOI model.

pyvene treats a TransformerLens `hook_z` ([batch, pos, head, d_head]) as one unit, so the comparison is on a single
head (embed_dim = d_head): pyvene rotates x ↦ x W (columns of W: the basis), swaps the first `interchange_dim`
rotated coordinates of the base for the source's, and rotates back with Wᵀ. Ours patches
z_base + Rᵀ diag(m) R (z_source − z_base) with rows of R the basis: the same patch for R = Wᵀ and m = 1 on the
first `interchange_dim` coordinates. Checked two ways, to 1e-5:

1. `rotation.rotate_patch` on the head alone (a one-head layer);
2. the whole layer through `RotationWeights` (the path every run uses), with R = blockdiag(I, …, Wᵀ, …, I) and the
   mask on the chosen head's first k rotated coordinates: that head's patched z equals pyvene's output and every
   other head keeps its base z.

Run it from the repository root in the peers' own venv (pyvene is not a project dependency):

    experiments/peers/.venv/bin/python experiments/peers/rotation_vs_pyvene.py

Its output is committed in experiments/reports/peers/rotation_vs_pyvene.txt.
"""

from __future__ import annotations

from importlib.metadata import version

import torch
from pyvene import RotatedSpaceIntervention

from ioi_superpose.combinations.rotation import RotationWeights, rotate_patch
from ioi_superpose.data.prompts import ioi_prompts
from ioi_superpose.engine.runs import head_z
from ioi_superpose.models import load_frozen_model

CHECKPOINT = "checkpoints/toy_ioi.pt"
LAYER, HEAD = 1, 2
TOLERANCE = 1e-5


def main() -> None:
    torch.manual_seed(0)
    model = load_frozen_model(CHECKPOINT)
    prompts = ioi_prompts(CHECKPOINT, n=32, seed=0)
    z_clean, _ = head_z(model, prompts.clean_tokens)
    z_corrupted, _ = head_z(model, prompts.corrupted_tokens)
    base, source = z_corrupted[LAYER], z_clean[LAYER]  # denoising: [batch, pos, head, d_head]
    n_heads, d_head = base.shape[-2:]
    print(f"model {CHECKPOINT}: layer {LAYER} head {HEAD}, z {tuple(base.shape)}; pyvene {version('pyvene')} "
          f"RotatedSpaceIntervention, torch {torch.__version__}")
    worst = 0.0
    for k in (0, 1, 5, d_head // 2, d_head):
        peer = RotatedSpaceIntervention(embed_dim=d_head)
        peer.set_interchange_dim(k)
        with torch.no_grad():
            theirs = peer(base[:, :, HEAD].clone(), source[:, :, HEAD].clone())
            w = peer.rotate_layer.weight.detach()  # [d_head, d_head], orthogonal, columns = basis
            mask = torch.zeros(1, d_head)
            mask[0, :k] = 1.0
            head_base, head_source = base[None, :, :, HEAD : HEAD + 1], source[:, :, HEAD : HEAD + 1]
            one_head = rotate_patch(head_base, head_source, w.T, mask)[0, :, :, 0]
            rotations = torch.eye(n_heads * d_head).repeat(2, 1, 1)
            block = slice(HEAD * d_head, (HEAD + 1) * d_head)
            rotations[LAYER, block, block] = w.T
            weights = torch.zeros(1, 2, n_heads * d_head)
            weights[0, LAYER, HEAD * d_head : HEAD * d_head + k] = 1.0
            layer = RotationWeights(rotations, weights)(LAYER, base[None], source)[0]
        others = [h for h in range(n_heads) if h != HEAD]
        errors = {
            "one head vs pyvene": float((one_head - theirs).abs().max()),
            "layer, that head vs pyvene": float((layer[:, :, HEAD] - theirs).abs().max()),
            "layer, other heads vs base": float((layer[:, :, others] - base[:, :, others]).abs().max()),
        }
        moved = float((theirs - base[:, :, HEAD]).abs().max())
        worst = max(worst, *errors.values())
        print(f"interchange_dim {k:2d}: max |pyvene − base| {moved:.4f}; "
              + "; ".join(f"{name} {value:.2e}" for name, value in errors.items()))  # fmt: skip
    verdict = "AGREE" if worst <= TOLERANCE else "DISAGREE"
    print(f"worst difference {worst:.2e} (tolerance {TOLERANCE:g}): {verdict}")
    if worst > TOLERANCE:
        raise SystemExit(1)


if __name__ == "__main__":
    main()

"""The scrubbed forward: every head's z replaced, per row, by its drawn source's, through the engine.

Every head of every layer is patched at every position. A head whose source is a leaf (outside the hypothesis, or a
hypothesis head of the flat scrub, or of layer 0) reads its z from one unpatched run of all the prompts (`pool`),
aligned at END (`engine.ablations.aligned_z`); a treeified node's z is the head's z in a forward on the node's prompt
whose earlier layers are replaced the same way, recursively (`BaseRun.z_patched_capture`). The root is the forward on
the prompt itself with every layer replaced (`BaseRun.z_patched_end_logits`: the fast runner where it applies). The
embeddings (and MLPs, in models that have them) of each forward read that forward's own prompt: they are not heads,
so the hypothesis never names them and they are never resampled.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ioi_superpose.analyses.scrubbing.sampling import Node, ScrubTree
from ioi_superpose.engine.ablations import aligned_z
from ioi_superpose.engine.patch import ZFunction
from ioi_superpose.engine.runs import BaseRun, fold, head_z
from ioi_superpose.models import HookedTransformer


def replacing(replacements: list[Float[Tensor, "rows pos head d_head"]]) -> ZFunction:
    """The z function that replaces layer l's z by `replacements[l]` (the computed z is discarded)."""

    def z_fn(layer: int, z: Tensor) -> Tensor:
        return replacements[layer].to(z.dtype)

    return z_fn


@dataclass
class ScrubRunner:
    """The prompts of one scrub, their unpatched z (`pool`) and their base run: evaluates drawn trees."""

    model: HookedTransformer
    tokens: Int[Tensor, "n pos"]
    end_pos: Int[Tensor, " n"]
    pool: Float[Tensor, "layer n pos head d_head"]
    base: BaseRun

    @classmethod
    @torch.no_grad()
    def prepare(
        cls, model: HookedTransformer, tokens: Int[Tensor, "n pos"], end_pos: Int[Tensor, " n"]
    ) -> "ScrubRunner":
        device = model.cfg.device
        tokens, end_pos = tokens.to(device), end_pos.to(device)
        return cls(model, tokens, end_pos, head_z(model, tokens)[0], BaseRun.prepare(model, tokens, prefixes=False))

    @torch.no_grad()
    def end_logits(
        self, tree: ScrubTree, draws: slice, vocab_index: Int[Tensor, "n k"] | None = None
    ) -> Float[Tensor, "draws n k"]:
        """Logits at END (the `vocab_index` tokens, or all) of the root forward for the draws `draws`."""
        root = tree.nodes[0]
        n_draws = len(range(*draws.indices(root.context.shape[0])))
        resid = fold(self.base.embed, n_draws)
        z_fn = replacing(self._inputs(tree, root, draws))
        return self.base.z_patched_end_logits(resid, 0, z_fn, self.end_pos, vocab_index)

    def _inputs(self, tree: ScrubTree, node: Node, draws: slice) -> list[Float[Tensor, "rows pos head d_head"]]:
        """The z of every layer before `node`'s, per row (draw-major: row = draw · n + prompt) of the draws `draws`."""
        assert node.sources is not None, "draw the tree first (ScrubTree.draw)"
        context = node.context[draws].reshape(-1).to(self.end_pos.device)
        sources = node.sources[draws].flatten(0, 1).to(self.end_pos.device)  # [rows, layer, head]
        row_end = self.end_pos[context]
        inputs = []
        for layer in range(node.layer):
            z = aligned_z(self.pool[layer], sources[:, layer], self.end_pos, row_end)
            for (child_layer, head), index in node.children.items():
                if child_layer == layer:
                    child = tree.nodes[index]
                    value = self._node_z(tree, child, draws)  # [rows, pos, d_head], in the child's prompt's positions
                    child_end = self.end_pos[child.context[draws].reshape(-1).to(self.end_pos.device)]
                    rows = torch.arange(len(context), device=row_end.device)[:, None]
                    z[:, :, head] = aligned_z(value[:, :, None], rows, child_end, row_end)[:, :, 0]
            inputs.append(z)
        return inputs

    def _node_z(self, tree: ScrubTree, node: Node, draws: slice) -> Float[Tensor, "rows pos d_head"]:
        """A treeified node's value: its head's z in a forward on its prompt with its earlier layers scrubbed."""
        assert node.head is not None
        context = node.context[draws].reshape(-1).to(self.tokens.device)
        run = BaseRun.prepare(self.model, self.tokens[context], prefixes=False)
        return run.z_patched_capture(replacing(self._inputs(tree, node, draws)), node.layer)[:, :, node.head[1]]

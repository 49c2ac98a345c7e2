"""Where every head's z comes from in a scrubbed forward: equivalence classes of prompts and the seeded draws.

A scrub of prompt x draws, for every head, a *source* prompt of the same prompt set:

- a head in the hypothesis takes a prompt that agrees with the one it runs on on the head's claimed features,
  uniformly from that equivalence class — which holds the prompt itself, so a class of one member gives the prompt
  itself (the claim is then not tested on that prompt: `EquivalenceClasses.singleton_share` says how often);
- a head outside it takes a uniformly random *other* prompt (resample ablation).

The draws form a tree (`ScrubTree`). Its root is the forward on x; every head gets a source as above. In the flat
scrub that is all: each head's z is read from the unpatched run of its source. In the treeified scrub (Chan et al.
2022) a head of the hypothesis in layer ≥ 1 is itself a node: it runs on its source prompt with every head of the
earlier layers drawn again relative to *that* prompt, recursively (a layer-0 head reads only the embeddings of its
source: a leaf). The root's draws come first from the same generator stream, so both versions share them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ioi_superpose.analyses.scrubbing.hypothesis import Hypothesis
from ioi_superpose.engine.vocabulary import Head
from ioi_superpose.errors import ConfigError

DEFAULT_MAX_FORWARDS = 256
"""The treeified scrub's cap on forward passes per batch of rows (its tree's nodes that run the model)."""


class EquivalenceClasses:
    """The prompts of a set grouped by their values of some features (a group: prompts equal on every one)."""

    def __init__(self, features: Mapping[str, Sequence[Any]], names: Sequence[str]) -> None:
        keys = list(zip(*(features[name] for name in names)))
        ids: dict[tuple[Any, ...], int] = {}
        self.class_of = torch.tensor([ids.setdefault(key, len(ids)) for key in keys], dtype=torch.long)
        """[n]: each prompt's class."""
        self.members = torch.argsort(self.class_of, stable=True)
        """[n]: the prompts, class by class."""
        self.size = torch.bincount(self.class_of)
        self.start = torch.cumsum(self.size, 0) - self.size

    def sample(self, context: Int[Tensor, "*rows"], uniform: Float[Tensor, "*rows"]) -> Int[Tensor, "*rows"]:
        """A uniformly drawn member of each `context` prompt's class (`uniform` in [0, 1): the draw)."""
        cls = self.class_of[context]
        offset = torch.minimum((uniform * self.size[cls]).long(), self.size[cls] - 1)
        return self.members[self.start[cls] + offset]

    def class_sizes(self) -> Int[Tensor, " n"]:
        """The size of each prompt's class."""
        return self.size[self.class_of]

    def singleton_share(self) -> float:
        """The share of prompts alone in their class (their scrub source is always themselves)."""
        return float((self.class_sizes() == 1).float().mean())


def other_prompt(context: Int[Tensor, "*rows"], uniform: Float[Tensor, "*rows"], n: int) -> Int[Tensor, "*rows"]:
    """A uniformly drawn prompt other than `context` among n (the resample ablation's source)."""
    pick = torch.minimum((uniform * (n - 1)).long(), torch.tensor(n - 2))
    return pick + (pick >= context).long()


@dataclass
class Node:
    """A forward of the scrub tree: the root (the model's output on x), or a head of the hypothesis that runs on its
    source prompt with its own inputs scrubbed (treeified)."""

    head: Head | None
    """None for the root."""
    layer: int
    """The layers before it are the ones it reads: its head's layer; the root reads all (n_layers)."""
    context: Int[Tensor, "draws batch"]
    """The prompt this node runs on, per (draw, prompt)."""
    sources: Int[Tensor, "draws batch layer head"] | None = None
    """The prompt every head of the earlier layers takes its z from (filled by `ScrubTree.draw`)."""
    children: dict[Head, int] = field(default_factory=dict)
    """Heads whose value is a node of their own (treeified, layer ≥ 1): head → node index."""


def tree_forwards(hypothesis: Hypothesis, treeified: bool) -> int:
    """The forward passes one batch of rows needs: 1 (the root) plus, treeified, every node of a hypothesis head in
    layer ≥ 1, recursively: F(h) = 1 + Σ F(g) over hypothesis heads g of layers 1 … layer(h) − 1."""
    if not treeified:
        return 1
    cost: dict[Head, int] = {}
    for head in hypothesis.heads:  # in layer order, so every earlier head's cost is known
        if head[0] >= 1:
            cost[head] = 1 + sum(c for g, c in cost.items() if g[0] < head[0])
    return 1 + sum(cost.values())


def check_tree_size(hypothesis: Hypothesis, treeified: bool, max_forwards: int = DEFAULT_MAX_FORWARDS) -> None:
    """Refuse a scrub whose tree needs more than `max_forwards` forward passes per batch of rows."""
    forwards = tree_forwards(hypothesis, treeified)
    if forwards > max_forwards:
        raise ConfigError(
            f"The treeified scrub of this hypothesis needs {forwards} forward passes per batch (its tree: one per "
            f"node of a hypothesis head in layer >= 1, recursively), more than max_forwards={max_forwards}. Use "
            "the flat scrub, a hypothesis with fewer heads in later layers, or raise max_forwards."
        )


@dataclass
class ScrubTree:
    """Every node of one scrub and, per node, the source of every head it reads, for `draws` draws of every prompt."""

    nodes: list[Node]
    hypothesis: Hypothesis
    treeified: bool

    @classmethod
    def draw(
        cls,
        hypothesis: Hypothesis,
        features: Mapping[str, Sequence[Any]],
        n_layers: int,
        n_heads: int,
        draws: int,
        generator: torch.Generator,
        treeified: bool = False,
        max_forwards: int = DEFAULT_MAX_FORWARDS,
    ) -> "ScrubTree":
        """Draw every source of a scrub of the n prompts whose `features` are given (module docstring).

        The root's draws come first (one uniform [draws, n, n_layers, n_heads] tensor), then each node's in the order
        the nodes are made, so the flat and the treeified scrub of one generator state share the root. A treeified
        tree needing more than `max_forwards` forward passes (`tree_forwards`) is refused before anything is drawn.
        """
        n = len(next(iter(features.values()))) if features else 0
        if n < 2:
            raise ConfigError(f"Scrubbing needs at least 2 prompts (a head outside the hypothesis takes another "
                              f"prompt's z); got {n}.")  # fmt: skip
        check_tree_size(hypothesis, treeified, max_forwards)
        classes = {head: EquivalenceClasses(features, hypothesis.features(head)) for head in hypothesis.heads}
        root = Node(None, n_layers, torch.arange(n).expand(draws, n))
        tree = cls([root], hypothesis, treeified)
        index = 0
        while index < len(tree.nodes):  # breadth first: a node's children are appended as it is drawn
            tree._draw_node(index, classes, n, n_heads, generator)
            index += 1
        return tree

    def _draw_node(self, index: int, classes: Mapping[Head, EquivalenceClasses], n: int, n_heads: int,
                   generator: torch.Generator) -> None:  # fmt: skip
        node = self.nodes[index]
        draws = node.context.shape[0]
        uniform = torch.rand(draws, n, node.layer, n_heads, generator=generator)
        sources = torch.empty(draws, n, node.layer, n_heads, dtype=torch.long)
        for layer in range(node.layer):
            for head in range(n_heads):
                at = (layer, head)
                u = uniform[:, :, layer, head]
                sources[:, :, layer, head] = (
                    classes[at].sample(node.context, u) if at in classes else other_prompt(node.context, u, n)
                )
                if at in classes and self.treeified and layer >= 1:
                    node.children[at] = len(self.nodes)
                    self.nodes.append(Node(at, layer, sources[:, :, layer, head]))
        node.sources = sources

    @property
    def forwards(self) -> int:
        return len(self.nodes)

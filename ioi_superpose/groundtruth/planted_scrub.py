"""Planted models whose heads read known prompt features: ground truth for causal scrubbing (`analyses.scrubbing`).

A prompt is [BOS, a, b, c, END]: a and b two different names of four (N0–N3), c a context token (C0, C1); its
features are `a`, `b` and `c`, and the answer is the name a over the name b (metric: the logit difference at END).
Every prompt of the 4 · 3 · 2 = 24 is in `prompts()`. The models are attention-only with no normalisation, their
weights written by hand on orthonormal directions; every head attends from END to one position with score 30 (the
rest of its attention, e^−30, is below float precision), so a head's z at END is a function of one token.

- `additive` (1 layer × 3 heads): 0.0 reads a and writes +w0 on a's logit; 0.1 reads b and writes −w1 on b's logit;
  0.2 reads c and writes a direction no logit reads. The logit difference is w0 + w1 (w0 = 3, w1 = 1).
- `composition` (2 layers × 3 heads): 0.0 moves a, 0.1 moves b into subspaces of END that no logit reads; 1.0 and 1.1
  attend END and write +w on the name 0.0 moved / −w' on the one 0.1 moved (w = 3, w' = 1); 0.2 and 1.2 read c and
  write nothing any logit or later head reads. The names reach the logits only along 0.0 → 1.0 and 0.1 → 1.1.

`PlantedScrub.expected(hypothesis, version)` is the scrub's exact expectation computed from the construction, not
from the model: a head whose z is read from prompt x' adds w_h · ([name(x') = a] − [name(x') = b]) (with its sign),
and x' follows the scrub's sampling rule, a uniform draw over x's class on the head's features (x included) or over
the other 23 prompts, composed along the path in the treeified version (kernel matrices, `transition`). Worked by
hand on the additive model: with every head resampled, P(a' = a) = 5/23 and P(a' = b) = 6/23, so the resampled
logit difference is −(w0 + w1)/23; dropping 0.1 from the true hypothesis {0.0: a, 0.1: b} leaves
w0 − w1/23, a fraction of exactly w0 / (w0 + w1) = 0.75; claiming 0.1 reads c instead of b gives 0.1 a class of 12
prompts (same c) in which b' = b and b' = a are equally likely, a fraction (24 w0 + w1) / (24 (w0 + w1)) = 73/96.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.engine.vocabulary import Head
from ioi_superpose.models import HookedTransformer
from ioi_superpose.models.frozen import freeze
from ioi_superpose.models.toy import attn_only_config
from ioi_superpose.tasks.base import TaskPrompts

NAMES = ("N0", "N1", "N2", "N3")
CONTEXTS = ("C0", "C1")
BOS, END = 0, 1
TOKENS = {name: 2 + i for i, name in enumerate(NAMES)} | {c: 6 + i for i, c in enumerate(CONTEXTS)}
D_VOCAB, N_CTX, D_HEAD = 8, 5, 4
POSITION = {"a": 1, "b": 2, "c": 3, "END": 4}
SCORE = 30.0
# Residual directions (one-hot basis vectors): names 0–3 (embedding = unembedding), contexts 4–5, BOS 6, END 7,
# positions 8–12, the moved a 13–16, the moved b 17–20, a direction nothing reads 21.
NAME_DIR, CONTEXT_DIR, BOS_DIR, END_DIR, POS_DIR, MOVED_A, MOVED_B, UNREAD = 0, 4, 6, 7, 8, 13, 17, 21
D_MODEL = 24
FEATURES = ("a", "b", "c")


@dataclass(frozen=True)
class Route:
    """A route from one prompt position to the answer logits: the heads it passes, first to last, and the weight
    with which the last one writes the name it carries (+ on that name's logit, or − for a negative weight)."""

    feature: str
    heads: tuple[Head, ...]
    weight: float


@dataclass(frozen=True)
class PlantedScrub:
    """A planted model, what it computes (its paths), and the scrub's expected fraction of any hypothesis."""

    name: str
    model: HookedTransformer
    paths: tuple[Route, ...]

    def prompts(self, seed: int = 0) -> TaskPrompts:
        """All 24 prompts (a, b, c), in a seeded order; corrupted = a and b swapped (the scrub reads clean prompts)."""
        rows = list(itertools.product(NAMES, NAMES, CONTEXTS))
        rows = [row for row in rows if row[0] != row[1]]
        order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed)).tolist()
        rows = [rows[i] for i in order]
        clean = torch.tensor([[BOS, TOKENS[a], TOKENS[b], TOKENS[c], END] for a, b, c in rows])
        corrupted = torch.tensor([[BOS, TOKENS[b], TOKENS[a], TOKENS[c], END] for a, b, c in rows])
        answers = torch.tensor([[TOKENS[a], TOKENS[b]] for a, b, _ in rows])
        batch = ContrastBatch.from_tokens(clean, corrupted, answers)
        features = {name: [row[i] for row in rows] for i, name in enumerate(FEATURES)}
        return TaskPrompts(batch=batch, roles={k: torch.full((len(rows),), p) for k, p in POSITION.items()},
                           features=features)  # fmt: skip

    def expected(self, hypothesis: Mapping[Head, tuple[str, ...]], version: str, seed: int = 0) -> float:
        """The scrub's exact expected fraction (module docstring), from the construction and the sampling rule."""
        prompts = self.prompts(seed)
        clean = self.expected_logit_diff(prompts, None, version)
        resampled = self.expected_logit_diff(prompts, {}, version)
        return (self.expected_logit_diff(prompts, hypothesis, version) - resampled) / (clean - resampled)

    def expected_logit_diff(self, prompts: TaskPrompts, hypothesis: Mapping[Head, tuple[str, ...]] | None,
                            version: str) -> float:  # fmt: skip
        """The mean logit difference the scrub of `hypothesis` is expected to give (None: the unpatched model).

        Per path, where the name its last head writes comes from: walk from the root up the path, each head's
        source drawn by its kernel (`transition`) relative to the previous one's; the walk stops at a head that reads
        the unpatched run of its source — one outside the hypothesis, any head of the flat scrub, a layer-0 head —
        since on that prompt the rest of the path computes normally."""
        features = prompts.features
        n = len(prompts)
        total = 0.0
        for path in self.paths:
            kernel = torch.eye(n, dtype=torch.float64)
            for head in path.heads[::-1] if hypothesis is not None else ():
                kernel = kernel @ transition(features, hypothesis.get(head))
                if head not in hypothesis or version != "treeified" or head[0] == 0:
                    break
            carried, a, b = features[path.feature], features["a"], features["b"]
            hits = torch.tensor([[float(carried[j] == a[i]) - float(carried[j] == b[i]) for j in range(n)]
                                 for i in range(n)], dtype=torch.float64)  # fmt: skip
            total += path.weight * float((kernel * hits).sum(1).mean())
        return total


def transition(features: Mapping[str, list], claimed: tuple[str, ...] | None) -> Tensor:
    """K[x, x'] = the probability that a head drawn for prompt x takes prompt x': uniform over x's class on the
    `claimed` features (x included), or, for a head outside the hypothesis (None), over the other prompts."""
    n = len(next(iter(features.values())))
    if claimed is None:
        return (torch.ones(n, n, dtype=torch.float64) - torch.eye(n, dtype=torch.float64)) / (n - 1)
    keys = list(zip(*(features[f] for f in claimed)))
    same = torch.tensor([[float(keys[i] == keys[j]) for j in range(n)] for i in range(n)], dtype=torch.float64)
    return same / same.sum(1, keepdim=True)


class _Writer:
    """A zero attention-only model (no normalisation) whose weights are written one head at a time."""

    def __init__(self, n_layers: int, n_heads: int) -> None:
        cfg = attn_only_config(n_layers, n_heads, D_MODEL, D_HEAD, D_VOCAB, N_CTX, layer_norm=False)
        self.model = HookedTransformer(cfg, move_to_device=False)
        parameters = {name for name, _ in self.model.named_parameters()}
        # Parameters start at zero; the causal attention's IGNORE buffers stay TransformerLens's own.
        self.state = {k: torch.zeros_like(v) if k in parameters else v for k, v in self.model.state_dict().items()}
        embed, unembed, pos = self.state["embed.W_E"], self.state["unembed.W_U"], self.state["pos_embed.W_pos"]
        for i, name in enumerate(NAMES):
            embed[TOKENS[name], NAME_DIR + i] = 1.0
            unembed[NAME_DIR + i, TOKENS[name]] = 1.0
        for i, context in enumerate(CONTEXTS):
            embed[TOKENS[context], CONTEXT_DIR + i] = 1.0
        embed[BOS, BOS_DIR], embed[END, END_DIR] = 1.0, 1.0
        for position in range(N_CTX):
            pos[position, POS_DIR + position] = 1.0

    def head(self, layer: int, head: int, attend: int, read: int, width: int, write: Tensor) -> None:
        """From END, attend to position `attend` (score `SCORE`); read the `width` directions from `read` into z's
        slots; write slot i as row i of `write` [width, d_model]."""
        prefix = f"blocks.{layer}.attn."
        self.state[prefix + "W_Q"][head, POS_DIR + POSITION["END"], 0] = 1.0
        # TransformerLens divides the scores by √d_head.
        self.state[prefix + "W_K"][head, POS_DIR + attend, 0] = SCORE * D_HEAD**0.5
        for slot in range(width):
            self.state[prefix + "W_V"][head, read + slot, slot] = 1.0
            self.state[prefix + "W_O"][head, slot] = write[slot]

    def build(self) -> HookedTransformer:
        self.model.load_state_dict(self.state)
        return freeze(self.model)


def _rows(start: int, width: int, scale: float = 1.0) -> Tensor:
    """[width, d_model]: row i writes `scale` on direction start + i."""
    rows = torch.zeros(width, D_MODEL)
    rows[torch.arange(width), start + torch.arange(width)] = scale
    return rows


def _unread(width: int) -> Tensor:
    rows = torch.zeros(width, D_MODEL)
    rows[:, UNREAD] = 1.0
    return rows


def additive(w0: float = 3.0, w1: float = 1.0) -> PlantedScrub:
    writer = _Writer(1, 3)
    writer.head(0, 0, POSITION["a"], NAME_DIR, len(NAMES), _rows(NAME_DIR, len(NAMES), w0))
    writer.head(0, 1, POSITION["b"], NAME_DIR, len(NAMES), _rows(NAME_DIR, len(NAMES), -w1))
    writer.head(0, 2, POSITION["c"], CONTEXT_DIR, len(CONTEXTS), _unread(len(CONTEXTS)))
    paths = (Route("a", ((0, 0),), w0), Route("b", ((0, 1),), -w1))
    return PlantedScrub("additive", writer.build(), paths)


def composition(w: float = 3.0, w_prime: float = 1.0) -> PlantedScrub:
    writer = _Writer(2, 3)
    writer.head(0, 0, POSITION["a"], NAME_DIR, len(NAMES), _rows(MOVED_A, len(NAMES)))
    writer.head(0, 1, POSITION["b"], NAME_DIR, len(NAMES), _rows(MOVED_B, len(NAMES)))
    writer.head(0, 2, POSITION["c"], CONTEXT_DIR, len(CONTEXTS), _unread(len(CONTEXTS)))
    writer.head(1, 0, POSITION["END"], MOVED_A, len(NAMES), _rows(NAME_DIR, len(NAMES), w))
    writer.head(1, 1, POSITION["END"], MOVED_B, len(NAMES), _rows(NAME_DIR, len(NAMES), -w_prime))
    writer.head(1, 2, POSITION["c"], CONTEXT_DIR, len(CONTEXTS), _unread(len(CONTEXTS)))
    paths = (Route("a", ((0, 0), (1, 0)), w), Route("b", ((0, 1), (1, 1)), -w_prime))
    return PlantedScrub("composition", writer.build(), paths)

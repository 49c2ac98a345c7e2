"""Planted ground truth: small attention-only models whose weights are written by hand, so the head
sets that carry each behaviour are known by construction (deterministic, no training, built in ms).

Every model has LayerNorm (`normalization_type="LN"`, weight 1, bias 0) and d_model 48. Written
vectors are built from *mean-zero* orthonormal directions v_i = (e_2i − e_2i+1)/√2, so a LayerNorm is
exactly LN(x) = √d · x/|x|: a pure rescaling, which is where the non-additivity comes from. A prompt is 6
tokens: position 0 the source token (clean: a signal X, corrupted: the null token N), positions 1–4
random fillers (position 4 the fixed ANS token in `composition`), position 5 END; the answer pair is
read at END. Fillers carry a small random part that a distractor head copies, so prompt seeds differ.

Cases (`CASES`; `analyses.exhaustive.search_subsets` verifies each in both directions, `tests/test_planted.py`):

- `or`: 1 layer × 3 heads. Heads 0.0 and 0.1 both copy X into the answer direction (S = 6): each alone
  saturates the final LayerNorm (backup heads). Denoising minimal sets {0.0}, {0.1}; noising needs both.
- `and`: 1 layer × 3 heads. END carries a large "mass" K(m1 + m2) that the final LayerNorm divides the
  answer signal by; 0.0 removes m1, 0.1 removes m2 when X is present. Only both lift the answer:
  denoising {0.0, 0.1} (single heads ≈ 0.05); noising {0.0} or {0.1} (each necessary alone).
- `composition`: 2 layers × 2 heads. 0.0 writes a flag at END when X is present; 1.0's query reads the
  flag and moves its attention from the filler positions to the ANS token, whose value is the answer.
  The answer is the path 0.0 → 1.0 (query): minimal sets {0.0} and {1.0}, both directions.
- `decoy`: 2 layers × 2 heads. 0.0 writes the answer direction strongly (largest direct logit
  attribution); 1.0 reads it back at END and writes exactly its negative, so 0.0 has no causal effect;
  1.1 copies X into the answer more weakly — the real head. Minimal set {1.1} both directions.
- `superposition_f1/f2/f3`: one 2-layer model with 1 head per layer (0.0, 1.0) and 3 features (source
  tokens X1, X2, X3, each its own answer pair): 0.0 carries X1 and X3, 1.0 carries X2 and X3, and X3's
  answer direction is the sum of both heads' writes — 3 features in 2 heads; X3 needs both in both
  directions (each head alone recovers 0.70, and removing one leaves 0.70–0.72).

The models keep TransformerLens's causal attention buffers (only parameters are written), so position 0
attends to itself alone and a layer-0 head that copies the source token also writes at position 0;
`tests/test_planted.py` re-derives every case with a hand-written hooks-only search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.models import HookedTransformer
from ioi_superpose.models.frozen import freeze
from ioi_superpose.models.toy import attn_only_config

D_MODEL, D_HEAD, N_CTX = 48, 4, 6
END_POS = N_CTX - 1
# tokens
FILLERS = (0, 1, 2, 3)
END, NULL, X, X2, X3, ANS = 4, 5, 6, 7, 8, 9
ANSWERS = ((10, 11), (12, 13), (14, 15))  # (correct, wrong) of features 1, 2, 3
D_VOCAB = 16
# mean-zero directions (indices into `direction`)
T_X, T_NULL, T_X2, T_X3, T_END, T_ANS, T_FILLER = 0, 1, 2, 3, 4, 5, 6
P_SRC, P_FILL, P_SLOT, P_END = 7, 8, 9, 10
R1, R2 = 12, 13  # answer directions
M1, M2 = 14, 15  # mass (and)
FLAG = 20
DISTRACT = 17
NOISE = (21, 22, 23)


def direction(index: int) -> Tensor:
    """The mean-zero unit vector v_index of R^48."""
    v = torch.zeros(D_MODEL)
    v[2 * index], v[2 * index + 1] = 2**-0.5, -(2**-0.5)
    return v


def _ln(x: Tensor) -> Tensor:
    return math.sqrt(D_MODEL) * x / x.norm()


@dataclass(frozen=True)
class PlantedCase:
    """A planted model and what it computes: which source token, which answers, which truth."""

    name: str
    model: HookedTransformer
    signal: int
    """Token at position 0 of the clean prompts (the corrupted ones hold NULL)."""
    answers: tuple[int, int]
    slot_token: int | None
    """Token fixed at position 4 (None: a filler)."""
    denoising_minimal: tuple[tuple[tuple[int, int], ...], ...]
    """Every minimal head set reaching 0.9 by construction, denoising."""
    noising_minimal: tuple[tuple[tuple[int, int], ...], ...]
    attention_target: int | None = 0
    """The position the carrying heads attend to from END (for the attention-weighted baseline)."""

    def prompts(self, n: int, seed: int) -> ContrastBatch:
        """`n` clean/corrupted pairs; fillers drawn from a generator seeded with `seed`."""
        generator = torch.Generator().manual_seed(seed)
        fillers = torch.tensor(FILLERS)[torch.randint(len(FILLERS), (n, 4), generator=generator)]
        clean = torch.cat([torch.full((n, 1), self.signal), fillers, torch.full((n, 1), END)], 1)
        if self.slot_token is not None:
            clean[:, 4] = self.slot_token
        corrupted = clean.clone()
        corrupted[:, 0] = NULL
        answers = torch.tensor(self.answers).repeat(n, 1)
        return ContrastBatch.from_tokens(clean, corrupted, answers, torch.full((n,), END_POS), name=self.name)


class _Builder:
    """Writes weights into a fresh zero model: embeddings, unembedding and per-head circuits."""

    def __init__(self, n_layers: int, n_heads: int, end_extra: Tensor | None = None) -> None:
        cfg = attn_only_config(n_layers, n_heads, D_MODEL, D_HEAD, D_VOCAB, N_CTX, layer_norm=True)
        self.model = HookedTransformer(cfg, move_to_device=False)
        # Parameters start at zero; buffers (the attention's causal IGNORE = −inf) stay TransformerLens's own.
        parameters = {name for name, _ in self.model.named_parameters()}
        state = {k: torch.zeros_like(v) if k in parameters else v for k, v in self.model.state_dict().items()}
        for key in parameters:
            if key.endswith(".w") and "ln" in key:
                state[key] += 1.0
        self.state = state
        noise = torch.Generator().manual_seed(1234)
        for token, index in ((X, T_X), (NULL, T_NULL), (X2, T_X2), (X3, T_X3), (END, T_END), (ANS, T_ANS)):
            state["embed.W_E"][token] = direction(index)
        for token in FILLERS:
            mix = torch.randn(len(NOISE), generator=noise)
            wobble = sum(float(c) * direction(i) for c, i in zip(mix / mix.norm(), NOISE))
            state["embed.W_E"][token] = direction(T_FILLER) + 0.7 * wobble
        if end_extra is not None:
            state["embed.W_E"][END] += end_extra
        for pos, index in ((0, P_SRC), (1, P_FILL), (2, P_FILL), (3, P_FILL), (4, P_SLOT), (5, P_END)):
            state["pos_embed.W_pos"][pos] = direction(index)
        answer_dirs = (direction(R1), direction(R2), (direction(R1) + direction(R2)) / math.sqrt(2))
        for (good, bad), d in zip(ANSWERS, answer_dirs):
            state["unembed.W_U"][:, good], state["unembed.W_U"][:, bad] = d, -d

    def attend(self, layer: int, head: int, query: Tensor, key_dir: int, score: float, slot: int = 0,
               key_norm: float = math.sqrt(2), query_dir: Tensor | None = None) -> None:  # fmt: skip
        """From the residual `query` (pre-LayerNorm), attend with logit `score` to positions whose residual
        (norm `key_norm`) holds the positional direction `key_dir`. The query reads `query_dir` (unit;
        default: the direction of `query` itself)."""
        q = _ln(query)
        read = q / q.norm() if query_dir is None else query_dir
        self.state[f"blocks.{layer}.attn.W_Q"][head, :, slot] = read
        query_value = float(q @ read)
        key_value = math.sqrt(D_MODEL) / key_norm
        scale = score * math.sqrt(D_HEAD) / (query_value * key_value)
        self.state[f"blocks.{layer}.attn.W_K"][head, :, slot] = direction(key_dir) * scale

    def copy(
        self, layer: int, head: int, read: Tensor, write: Tensor, slot: int = 0, read_norm: float = math.sqrt(2)
    ) -> None:
        """Value reads the (pre-LN) direction `read` of the attended position, output writes `write`
        (so an attended residual of norm `read_norm` holding `read` writes exactly `write`)."""
        self.state[f"blocks.{layer}.attn.W_V"][head, :, slot] = read * read_norm / math.sqrt(D_MODEL)
        self.state[f"blocks.{layer}.attn.W_O"][head, slot, :] = write

    def build(self) -> HookedTransformer:
        self.model.load_state_dict(self.state)
        return freeze(self.model)


def _end(extra: Tensor | None = None) -> Tensor:
    return direction(T_END) + direction(P_END) + (0 if extra is None else extra)


def _distractor(b: _Builder, layer: int, head: int, query: Tensor) -> None:
    """Attends to the filler positions and copies their random part: varies per prompt, never the answer."""
    b.attend(layer, head, query, P_FILL, 20.0, key_norm=math.sqrt(2.49))
    b.copy(layer, head, sum(direction(i) for i in NOISE), direction(DISTRACT) * 2.0, read_norm=math.sqrt(2.49))


def or_case() -> PlantedCase:
    b = _Builder(1, 3)
    for head in (0, 1):
        b.attend(0, head, _end(), P_SRC, 30.0)
        b.copy(0, head, direction(T_X), direction(R1) * 6.0)
    _distractor(b, 0, 2, _end())
    return PlantedCase("or", b.build(), X, ANSWERS[0], None, (((0, 0),), ((0, 1),)), (((0, 0), (0, 1)),))


def and_case(mass: float = 20.0, signal: float = 3.0) -> PlantedCase:
    extra = mass * (direction(M1) + direction(M2)) + signal * direction(R1)
    b = _Builder(1, 3, end_extra=extra)
    for head, m in ((0, M1), (1, M2)):
        b.attend(0, head, _end(extra), P_SRC, 30.0)
        b.copy(0, head, direction(T_X), -mass * direction(m))
    _distractor(b, 0, 2, _end(extra))
    return PlantedCase("and", b.build(), X, ANSWERS[0], None, (((0, 0), (0, 1)),), (((0, 0),), ((0, 1),)))


def composition_case(flag: float = 3.0) -> PlantedCase:
    b = _Builder(2, 2)
    b.attend(0, 0, _end(), P_SRC, 30.0)
    b.copy(0, 0, direction(T_X), direction(FLAG) * flag)
    _distractor(b, 0, 1, _end())
    # 1.0: by default attends the filler positions (value 0 there); the flag moves it to the ANS slot.
    b.attend(1, 0, _end(), P_FILL, 8.0, key_norm=math.sqrt(2.49))
    b.attend(1, 0, _end(direction(FLAG) * flag), P_SLOT, 40.0, slot=1, query_dir=direction(FLAG))
    b.copy(1, 0, direction(T_ANS), direction(R1) * 6.0)
    _distractor(b, 1, 1, _end())
    return PlantedCase("composition", b.build(), X, ANSWERS[0], ANS, (((0, 0),), ((1, 0),)), (((0, 0),), ((1, 0),)),
                       attention_target=None)  # fmt: skip


def decoy_case(strong: float = 12.0, real: float = 1.5) -> PlantedCase:
    b = _Builder(2, 2)
    b.attend(0, 0, _end(), P_SRC, 30.0)
    b.copy(0, 0, direction(T_X), direction(R1) * strong)
    # 0.1: a constant write (its own position), so the END norm layer 1 sees is the same on every prompt.
    b.attend(0, 1, _end(), P_END, 30.0)
    b.copy(0, 1, direction(P_END), direction(DISTRACT))
    on = _end(direction(R1) * strong + direction(DISTRACT))
    # 1.0 attends END itself and writes minus the answer component it reads: it cancels 0.0 exactly.
    b.attend(1, 0, on, P_END, 30.0, key_norm=float(on.norm()))
    b.copy(1, 0, direction(R1) / strong, -direction(R1) * strong, read_norm=float(on.norm()))
    src = math.sqrt(2 + strong**2)  # position 0 at layer 1 holds X and 0.0's write there
    b.attend(1, 1, _end(), P_SRC, 30.0, key_norm=src)
    b.copy(1, 1, direction(T_X), direction(R1) * real, read_norm=src)
    return PlantedCase("decoy", b.build(), X, ANSWERS[0], None, (((1, 1),),), (((1, 1),),))


def superposition_model(strength: float = 6.0) -> HookedTransformer:
    b = _Builder(2, 1)
    b.attend(0, 0, _end(), P_SRC, 30.0)
    b.copy(0, 0, direction(T_X) + direction(T_X3), direction(R1) * strength)
    # Causal attention: position 0 attends only to itself, so 0.0 also writes R1 there on X1 and X3 prompts;
    # 1.0 reads position 0 at that norm, so on X3 it writes R2 * strength exactly, as 0.0 writes R1.
    src = math.sqrt(2 + strength**2)
    b.attend(1, 0, _end(), P_SRC, 30.0, key_norm=src)
    b.copy(1, 0, direction(T_X2) + direction(T_X3), direction(R2) * strength, read_norm=src)
    return b.build()


def superposition_cases() -> list[PlantedCase]:
    model = superposition_model()
    truths = {X: ((((0, 0),),), (((0, 0),),)), X2: ((((1, 0),),), (((1, 0),),)),
              X3: ((((0, 0), (1, 0)),), (((0, 0), (1, 0)),))}  # fmt: skip
    return [
        PlantedCase(f"superposition_f{i + 1}", model, token, ANSWERS[i], None, *truths[token])
        for i, token in enumerate((X, X2, X3))
    ]


def all_cases() -> list[PlantedCase]:
    """Every planted case, in a fixed order."""
    return [or_case(), and_case(), composition_case(), decoy_case(), *superposition_cases()]

"""A GPT-2-scale planted suite: 12 layers × 12 heads with MLPs and LayerNorm, planted circuits among
129 distractor heads (and ~500 distractor MLP neurons per layer) with random, non-zero weights.

Model: d_model 128, d_head 16, d_mlp 512, n_ctx 8, gelu_new, LayerNorm (weight 1, bias 0), d_vocab 48;
built by writing parameters into a zero model (TransformerLens's causal buffers kept), seeded, < 1 s.
Prompts: position 0 the source token (clean: the case's signal X, corrupted: NULL), positions 1–5 random
fillers, position 6 the fixed ANS token (the "slot"), position 7 END; the answer pair is read at END.

Construction (why the distractors do real work yet cannot affect the answer):

- The residual stream's mean-zero subspace (so LayerNorm's centring is a no-op and LN(x) = √d · x/|x|) is
  split into C (31 named circuit directions v_i = (e_2i − e_2i+1)/√2 on coordinates 0–61) and D (a seeded
  orthonormal basis of the mean-zero vectors on coordinates 62–127: D_in, 20 dims, and D_w, 45 dims).
- Positions 1–6 are *quiet*: every head and MLP computes there only from quiet positions, so their residual
  stream is the same in the clean, corrupted and every patched run (per prompt). Filler tokens and quiet
  positional embeddings carry random D_in parts; the source, NULL, END and ANS tokens and positions 0 and
  END have none. Planted heads have a "sink" slot (query and key read P_QUIET) so that at quiet positions
  they attend only to quiet positions.
- Distractor heads: random W_Q reading D_in only (plus a random query bias), random W_K and W_V reading
  all of D (so they compose with earlier distractors' writes), random W_O writing D_w; b_V = b_O = 0. Slot
  0 of every distractor has query bias β and a key reading −κ(P_SRC + P_END): from every query the score
  to positions 0 and END is −225·s (s = √d/|x| there; below −100 for |x| ≤ 25), so they attend only to
  quiet positions (weight < 1e-6, checked in the tests; position 0 only to
  itself, where the D part is 0, so they write 0 there). At END their query is the bias alone (D_in is 0
  there). Hence every distractor's z is a function of the quiet positions only: identical in every run
  (to float rounding, ~1e-6), whatever the LayerNorm scale at position 0 or END does. They write random
  D_w vectors everywhere, including END (a per-prompt mass the final LayerNorm divides by), and
  non-answer tokens' unembeddings read D, so they change the model's other logits.
- Distractor MLP neurons: random W_in reading D_in (b_in = 0), random W_out writing D_w: real work at quiet
  positions, exactly 0 at positions 0 and END (gelu(0) = 0).
- Circuits (15 planted heads, 4 planted MLP neurons) read and write C only; the answer tokens'
  unembeddings read C only. So the only coupling between distractors and circuits is the LayerNorm norm,
  and the distractor part of it does not change between runs.

Cases (`gpt2_cases`; one model hosts all, each case its own signal token and answer pair; heads
(layer, head)). Promised minimal sets at recovery ≥ 0.9 (`tests/test_planted_gpt2.py` and
`experiments/planted_gpt2_verify.py` check them by exhaustive search over each case's heads):

- `or`: 2.3 and 7.9 both copy X into R (14 each); either alone nearly saturates the final LayerNorm.
  Denoising {2.3} or {7.9}; noising {2.3, 7.9}.
- `and`: 4.2 and 4.8 write flags Fa, Fb at END; two layer-9 MLP neurons form a clipped ramp that writes
  R only when both flags are present. Denoising {4.2, 4.8}; noising {4.2} or {4.8}.
- `composition` (3 layers and an MLP): 1.8 writes F1 at END; two layer-3 MLP neurons turn F1 into F2;
  6.4's query reads F2 and moves its attention from the fillers to the slot, whose ANS token its value
  copies into R. Denoising and noising {1.8} or {6.4}.
- `backup`: 3.7 copies X into R and writes a suppression flag S; 8.1 copies X into R only when S is
  absent (in the clean run it attends the fillers and writes 0). Denoising {3.7}; noising {3.7, 8.1}:
  only noising reveals the backup 8.1.
- `negative`: 5.10 writes +8 R, 10.6 writes −4 R (a negative head, larger when 5.10 is removed).
  Minimal {5.10} both directions; 10.6's single-head effect is negative in both.
- `decoy`: 2.0 writes +12 R (the largest direct logit attribution); 6.11 reads it back at position 0 and
  writes exactly −12 R; 9.5 copies X into R weakly (+2): the real head. Minimal {9.5} both directions.
- `superposition_f1/f2/f3`: 4.4 carries X1 and X3 (writes R1), 11.0 carries X2 and X3 (writes R2);
  X3's answer reads (R1 + R2)/√2, so X3 needs both heads (each alone: 0.65 denoising, 0.23–0.35
  noising). Minimal {4.4}, {11.0}, {4.4, 11.0} for f1, f2, f3, both directions.
- `trap_8` (its own model, `trap_model`: the same embeddings and distractor construction, with the small
  suite's greedy trap, `groundtruth/planted_hard.py`, planted in layer 0 instead of the circuits above):
  the strong pair 0.0 and 0.1 write A·R ± M·S (together 2A·R, no mass), six weak heads 0.2–0.7 each
  w·R + (M/6)·S; END carries a constant s·R + e·F2 that sets its norm. Dropping 0.0 from all heads cancels
  the weak heads' mass (the effect rises), so the minimal-set step from all heads with α = 1 (ties in
  head order: 0.0 first) cannot return {0.0, 0.1}: it keeps 0.1 and three weak heads. Denoising {0.0, 0.1}
  (1.41; every other pair ≤ 0.41); noising {0.1} (0.92: removing it leaves 0.0's mass uncancelled).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import torch
from jaxtyping import Bool
from torch import Tensor

from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.engine.vocabulary import Head
from ioi_superpose.models import HookedTransformer, HookedTransformerConfig, freeze

N_LAYERS, N_HEADS, D_MODEL, D_HEAD, D_MLP, N_CTX, D_VOCAB = 12, 12, 128, 16, 512, 8, 48
SRC_POS, SLOT_POS, END_POS = 0, 6, 7
FILL_POS = (1, 2, 3, 4, 5)
# tokens
FILLERS = (0, 1, 2, 3, 4, 5)
END, NULL, ANS = 6, 7, 8
FEATURES = ("or", "and", "composition", "backup", "negative", "decoy", "s1", "s2", "s3")
SIGNAL = {name: 9 + i for i, name in enumerate(FEATURES)}
ANSWERS = {name: (18 + 2 * i, 19 + 2 * i) for i, name in enumerate(FEATURES)}  # (correct, wrong); 36–47 other
# named circuit directions (C)
C_NAMES = (
    "T_END", "T_NULL", "T_ANS", "T_FILLER", "P_SRC", "P_QUIET", "P_FILL", "P_SLOT", "P_END",
    *(f"X_{name}" for name in FEATURES),
    *(f"R_{name}" for name in FEATURES[:-1]),  # s3 reads (R_s1 + R_s2)/√2
    "Fa", "Fb", "F1", "F2", "S",
)  # fmt: skip
N_C, N_IN = len(C_NAMES), 20
N_D = D_MODEL - 2 * N_C - 1  # the mean-zero subspace of the coordinates C does not use
N_W = N_D - N_IN
SINK, MAIN, AUX = 0, 1, 2  # query/key slots of planted heads
SINK_GAIN = 6.0
"""Planted heads' sink slot: query and key weight on P_QUIET."""
SOURCE_GAIN = 14.0
"""Planted heads that attend from END to position 0: query and key weight."""
MASK_GAIN = 30.0
"""Distractors' slot 0: query bias β and key weight κ on −(P_SRC + P_END)."""


@dataclass(frozen=True)
class SuiteCase:
    """One planted feature of the suite: its model, prompts, planted heads and promised minimal sets."""

    name: str
    model: HookedTransformer
    signal: int
    answers: tuple[int, int]
    heads: tuple[Head, ...]
    """This case's planted heads: the exhaustive search runs over these; every other head is a distractor."""
    denoising_minimal: tuple[tuple[Head, ...], ...]
    noising_minimal: tuple[tuple[Head, ...], ...]
    distractors: tuple[Head, ...] = field(default=())
    """Every head of the model outside `heads` (random distractors and other features' planted heads)."""

    def prompts(self, n: int, seed: int) -> ContrastBatch:
        """`n` clean/corrupted pairs; fillers drawn from a generator seeded with `seed`."""
        generator = torch.Generator().manual_seed(seed)
        fillers = torch.tensor(FILLERS)[torch.randint(len(FILLERS), (n, len(FILL_POS)), generator=generator)]
        column = lambda token: torch.full((n, 1), token)  # noqa: E731
        clean = torch.cat([column(self.signal), fillers, column(ANS), column(END)], 1)
        corrupted = clean.clone()
        corrupted[:, SRC_POS] = NULL
        answers = torch.tensor(self.answers).repeat(n, 1)
        return ContrastBatch.from_tokens(clean, corrupted, answers, torch.full((n,), END_POS), name=self.name)


def gpt2_config() -> HookedTransformerConfig:
    return HookedTransformerConfig(
        n_layers=N_LAYERS, n_heads=N_HEADS, d_model=D_MODEL, d_head=D_HEAD, d_mlp=D_MLP, n_ctx=N_CTX,
        d_vocab=D_VOCAB, act_fn="gelu_new", normalization_type="LN", positional_embedding_type="standard",
        device="cpu", default_prepend_bos=False,
    )  # fmt: skip


class _SuiteBuilder:
    """Writes the basis, embeddings, unembedding, planted circuits and random distractors into a zero model."""

    def __init__(self, seed: int) -> None:
        self.model = HookedTransformer(gpt2_config(), move_to_device=False)
        parameters = {name for name, _ in self.model.named_parameters()}
        # Parameters start at zero; buffers (the causal IGNORE = −inf) stay TransformerLens's own.
        self.state = {
            k: torch.zeros_like(v) if k in parameters else v.clone() for k, v in self.model.state_dict().items()
        }
        for key in parameters:
            if "ln" in key and key.endswith(".w"):
                self.state[key] += 1.0
        self.rng = torch.Generator().manual_seed(seed)
        # C: v_i = (e_2i − e_2i+1)/√2. D: a seeded orthonormal basis of the mean-zero vectors on the other
        # coordinates. Disjoint supports make every C·D product exactly 0 in floating point too.
        self.c = {}
        for i, name in enumerate(C_NAMES):
            self.c[name] = torch.zeros(D_MODEL)
            self.c[name][2 * i], self.c[name][2 * i + 1] = 2**-0.5, -(2**-0.5)
        rest = D_MODEL - 2 * N_C
        seeded = torch.randn(rest, rest, generator=self.rng)
        seeded[:, 0] = 1.0  # QR keeps the all-ones direction first: the other columns are mean-zero
        self.d_all = torch.zeros(D_MODEL, N_D)
        self.d_all[2 * N_C :] = torch.linalg.qr(seeded).Q[:, 1:]
        self.d_in, self.d_w = self.d_all[:, :N_IN], self.d_all[:, N_IN:]
        self.planted: set[Head] = set()
        self.planted_neurons: dict[int, set[int]] = {}

    def randn(self, *shape: int) -> Tensor:
        return torch.randn(*shape, generator=self.rng)

    def p(self, name: str, layer: int | None = None) -> Tensor:
        return self.state[name if layer is None else f"blocks.{layer}.{name}"]

    # ---- embeddings and unembedding

    def embed(self) -> None:
        w_e, w_pos, w_u = self.p("embed.W_E"), self.p("pos_embed.W_pos"), self.p("unembed.W_U")
        c = self.c
        for token, name in ((END, "T_END"), (NULL, "T_NULL"), (ANS, "T_ANS")):
            w_e[token] = c[name]
        for name, token in SIGNAL.items():
            w_e[token] = c[f"X_{name}"]
        for token in FILLERS:  # a C part the circuits may see, and a random D_in part the distractors read
            w_e[token] = c["T_FILLER"] + self.d_in @ self.randn(N_IN) / math.sqrt(N_IN)
        w_pos[SRC_POS], w_pos[END_POS] = c["P_SRC"], c["P_END"]
        for pos in (*FILL_POS, SLOT_POS):
            marker = c["P_FILL"] if pos in FILL_POS else c["P_SLOT"]
            w_pos[pos] = c["P_QUIET"] + marker + 0.7 * self.d_in @ self.randn(N_IN) / math.sqrt(N_IN)
        for name, (good, bad) in ANSWERS.items():
            r = (c["R_s1"] + c["R_s2"]) / math.sqrt(2) if name == "s3" else c[f"R_{name}"]
            w_u[:, good], w_u[:, bad] = r, -r
        others = [t for t in range(D_VOCAB) if t not in {a for pair in ANSWERS.values() for a in pair}]
        w_u[:, others] = self.randn(D_MODEL, len(others)) / math.sqrt(D_MODEL)  # these read D too

    # ---- planted heads

    def head(self, layer: int, head: int) -> None:
        """Mark a planted head and give it the sink slot: at quiet positions it attends to quiet positions."""
        self.planted.add((layer, head))
        self.p("attn.W_Q", layer)[head, :, SINK] = SINK_GAIN * self.c["P_QUIET"]
        self.p("attn.W_K", layer)[head, :, SINK] = SINK_GAIN * self.c["P_QUIET"]

    def attend(self, layer: int, head: int, slot: int, query: Tensor, key: str, gain: float) -> None:
        """Query reads the (unit) C vector `query`, key reads the positional direction `key`: score
        gain² · (LN'd query component) · (LN'd key component) / √d_head."""
        self.p("attn.W_Q", layer)[head, :, slot] = gain * query
        self.p("attn.W_K", layer)[head, :, slot] = gain * self.c[key]

    def copy(self, layer: int, head: int, read: Tensor, write: Tensor, read_norm: float = math.sqrt(2)) -> None:
        """Value reads `read` of the attended position, output writes `write`: an attended residual of norm
        `read_norm` holding `read` once writes exactly `write`."""
        self.p("attn.W_V", layer)[head, :, 0] = read * read_norm / math.sqrt(D_MODEL)
        self.p("attn.W_O", layer)[head, 0, :] = write

    def source_copier(self, layer: int, head: int, read: Tensor, write: Tensor, read_norm: float = math.sqrt(2),
                      gain: float | None = None) -> None:  # fmt: skip
        """A head that attends from END to position 0 and copies `read` there into `write`."""
        self.head(layer, head)
        end = (self.c["T_END"] + self.c["P_END"]) / math.sqrt(2)
        self.attend(layer, head, MAIN, end, "P_SRC", SOURCE_GAIN if gain is None else gain)
        self.copy(layer, head, read, write, read_norm)

    def ramp(self, layer: int, read: Tensor, threshold: float, write: Tensor, gain: float = 20.0) -> None:
        """Two MLP neurons: a clipped ramp of u = LN(x) · `read`, 0 below `threshold` and 1 from
        `threshold` + 20/`gain` on (gelu_new ≈ relu at these scales), times `write`."""
        used = self.planted_neurons.setdefault(layer, set())
        first = len(used)
        used.update({first, first + 1})
        w_in, b_in, w_out = self.p("mlp.W_in", layer), self.p("mlp.b_in", layer), self.p("mlp.W_out", layer)
        height = 20.0  # pre = gain (u − threshold); output (gelu(pre) − gelu(pre − height)) / height
        for neuron, shift in ((first, 0.0), (first + 1, height)):
            w_in[:, neuron] = gain * read
            b_in[neuron] = -gain * threshold - shift
        w_out[first], w_out[first + 1] = write / height, -write / height

    # ---- distractors

    def distractors(self, score: float = 3.0, value: float = 1.0, write: float = 0.12, mlp_in: float = 1.5,
                    mlp_write: float = 1.0) -> None:  # fmt: skip
        """Random distractor heads and MLP neurons. `score`: std of a query·key slot product per unit
        LN'd input; `value`: std of a value entry per unit LN'd input; `write`: norm of a head's output per
        unit z; `mlp_in`: std of a neuron's input per unit LN'd input; `mlp_write`: output norm per neuron."""
        beta = kappa = MASK_GAIN  # slot 0 scores −β κ s / 4 (= −225 s): below −100 for LN scales s ≥ 0.45
        mask_key = -kappa * (self.c["P_SRC"] + self.c["P_END"])
        n_d = self.d_all.shape[1]
        per_unit = math.sqrt(D_MODEL)  # |LN(x)| = √d: read weights are scaled per unit of it
        for layer in range(N_LAYERS):
            w_q, b_q, w_k = self.p("attn.W_Q", layer), self.p("attn.b_Q", layer), self.p("attn.W_K", layer)
            w_v, w_o = self.p("attn.W_V", layer), self.p("attn.W_O", layer)
            qk = math.sqrt(score * math.sqrt(D_HEAD)) / per_unit
            for head in range(N_HEADS):
                if (layer, head) in self.planted:
                    continue
                w_q[head, :, 1:] = self.d_in @ self.randn(N_IN, D_HEAD - 1) * qk
                b_q[head, 1:] = self.randn(D_HEAD - 1) * qk * per_unit / 4
                b_q[head, 0] = beta
                w_k[head, :, 0] = mask_key
                w_k[head, :, 1:] = self.d_all @ self.randn(n_d, D_HEAD - 1) * qk
                w_v[head] = self.d_all @ self.randn(n_d, D_HEAD) * value / per_unit
                w_o[head] = self.randn(D_HEAD, N_W) @ self.d_w.T * write / math.sqrt(N_W)
            used = self.planted_neurons.get(layer, set())
            free = [n for n in range(D_MLP) if n not in used]
            self.p("mlp.W_in", layer)[:, free] = self.d_in @ self.randn(N_IN, len(free)) * mlp_in / per_unit
            self.p("mlp.W_out", layer)[free] = (
                self.randn(len(free), N_W) @ self.d_w.T * mlp_write / math.sqrt(N_W * len(free))
            )

    def build(self) -> HookedTransformer:
        self.model.load_state_dict(self.state)
        return freeze(self.model)


# Planted heads (layer, head) per feature.
OR_HEADS = ((2, 3), (7, 9))
AND_HEADS = ((4, 2), (4, 8))  # one layer: neither reads position 0 after the other wrote there
AND_MLP_LAYER = 9
COMPOSITION_HEADS = ((1, 8), (6, 4))
COMPOSITION_MLP_LAYER = 3
BACKUP_HEADS = ((3, 7), (8, 1))
NEGATIVE_HEADS = ((5, 10), (10, 6))
DECOY_HEADS = ((2, 0), (6, 11), (9, 5))  # decoy, its canceller, the real head
SUPERPOSITION_HEADS = ((4, 4), (11, 0))


def _plant(b: _SuiteBuilder) -> None:
    c = b.c
    # or: each head writes 14 R (alone: ≥ 0.95 of both through the final LayerNorm, for an END norm ≤ 5.1
    # without them); the second reads position 0 after the first wrote 14 R there.
    (l1, h1), (l2, h2) = OR_HEADS
    b.source_copier(l1, h1, c["X_or"], 14.0 * c["R_or"])
    b.source_copier(l2, h2, c["X_or"], 14.0 * c["R_or"], read_norm=math.sqrt(2 + 196))
    # and: flags of 6 each. With the END norm n0 ∈ [2.8, 4.4] without them, the ramp's input LN(x)·(Fa + Fb)
    # is 12√d/√(n0² + 72) ∈ [14.2, 15.2] with both flags and 6√d/√(n0² + 36) ∈ [9.1, 10.2] with one.
    for (layer, head), flag in zip(AND_HEADS, ("Fa", "Fb")):
        b.source_copier(layer, head, c["X_and"], 6.0 * c[flag])
    b.ramp(AND_MLP_LAYER, c["Fa"] + c["Fb"], 12.1, 6.0 * c["R_and"])
    # composition: 1.8 → F1 → layer-3 MLP → F2 → 6.4's query moves it from the fillers to the ANS slot.
    (la, ha), (lb, hb) = COMPOSITION_HEADS
    b.source_copier(la, ha, c["X_composition"], 3.0 * c["F1"])
    b.ramp(COMPOSITION_MLP_LAYER, c["F1"], 4.0, 3.0 * c["F2"])
    b.head(lb, hb)
    b.attend(lb, hb, MAIN, (c["T_END"] + c["P_END"]) / math.sqrt(2), "P_FILL", 5.0)
    b.attend(lb, hb, AUX, c["F2"], "P_SLOT", 12.0)
    b.copy(lb, hb, c["T_ANS"], 6.0 * c["R_composition"], read_norm=3.5)
    # backup: 3.7 writes R and S; 8.1 copies X into R unless S sends its attention to the fillers.
    (la, ha), (lb, hb) = BACKUP_HEADS
    b.source_copier(la, ha, c["X_backup"], 10.0 * c["R_backup"] + 3.0 * c["S"])
    b.source_copier(lb, hb, c["X_backup"], 10.0 * c["R_backup"], gain=5.0)
    b.attend(lb, hb, AUX, c["S"], "P_FILL", 10.0)
    # negative: +8 R, then −4 R read at position 0 after the +8 R write (norm √(2 + 64)).
    (lp, hp), (ln, hn) = NEGATIVE_HEADS
    b.source_copier(lp, hp, c["X_negative"], 8.0 * c["R_negative"])
    b.source_copier(ln, hn, c["X_negative"], -4.0 * c["R_negative"], read_norm=math.sqrt(2 + 64))
    # decoy: +12 R; the canceller reads R at position 0 (norm √(2 + 144)) and writes −12 R, also at
    # position 0, so the real head (after both) reads position 0 at norm √2 and writes +2 R.
    (ld, hd), (lc, hc), (lr, hr) = DECOY_HEADS
    b.source_copier(ld, hd, c["X_decoy"], 12.0 * c["R_decoy"])
    b.source_copier(lc, hc, c["R_decoy"] / 12.0, -12.0 * c["R_decoy"], read_norm=math.sqrt(2 + 144))
    b.source_copier(lr, hr, c["X_decoy"], 2.0 * c["R_decoy"])
    # superposition: 4.4 reads X1 + X3, 11.0 reads X2 + X3 (at norm √(2 + 36): after 4.4's write on X3).
    (l1, h1), (l2, h2) = SUPERPOSITION_HEADS
    b.source_copier(l1, h1, c["X_s1"] + c["X_s3"], 6.0 * c["R_s1"])
    b.source_copier(l2, h2, c["X_s2"] + c["X_s3"], 6.0 * c["R_s2"], read_norm=math.sqrt(2 + 36))


TRAP_HEADS = tuple((0, head) for head in range(8))  # the strong pair 0.0, 0.1, then six weak heads
TRAP_STRONG, TRAP_WEAK, TRAP_MASS, TRAP_END_ANSWER, TRAP_END_NORM = 6.1, 2.1, 32.0, 4.2, 12.5
"""A, w, M, s, e of the `trap_8` docstring: the small trap_8's (`planted_hard.TRAPS[6]`) with w and e lowered
(from 2.3 and 13.8) so that the noising truth has a margin too; chosen among 9 (e, w) pairs by exhaustive search
(noising at 13.3 / 2.3 was 0.1 and three or four weak heads, depending on the prompts); the tests re-check it."""


def _plant_trap(b: _SuiteBuilder) -> None:
    c = b.c
    b.p("embed.W_E")[END] += TRAP_END_ANSWER * c["R_or"] + TRAP_END_NORM * c["F2"]
    n_weak = len(TRAP_HEADS) - 2
    writes = [TRAP_STRONG * c["R_or"] + TRAP_MASS * c["S"], TRAP_STRONG * c["R_or"] - TRAP_MASS * c["S"]]
    writes += [TRAP_WEAK * c["R_or"] + TRAP_MASS / n_weak * c["S"]] * n_weak
    for (layer, head), write in zip(TRAP_HEADS, writes):  # one layer: each reads position 0 before any writes
        b.source_copier(layer, head, c["X_or"], write)


def trap_model(seed: int = 0) -> HookedTransformer:
    """The `trap_8` case's model: the suite's embeddings and distractors, with only the trap planted (it
    reuses the `or` feature's signal and answer tokens, and the S and F2 directions, which nothing else
    here reads)."""
    b = _SuiteBuilder(seed)
    b.embed()
    _plant_trap(b)
    b.distractors()
    return b.build()


def suite_model(seed: int = 0) -> HookedTransformer:
    """The suite's model: every planted circuit and 129 random distractor heads (deterministic in `seed`)."""
    b = _SuiteBuilder(seed)
    b.embed()
    _plant(b)
    b.distractors()
    return b.build()


def _case(model: HookedTransformer, name: str, feature: str, heads, denoising, noising) -> SuiteCase:  # noqa: ANN001
    everyone = [(layer, head) for layer in range(N_LAYERS) for head in range(N_HEADS)]
    return SuiteCase(name, model, SIGNAL[feature], ANSWERS[feature], tuple(heads), tuple(denoising),
                     tuple(noising), tuple(h for h in everyone if h not in heads))  # fmt: skip


def _cases_of(model: HookedTransformer) -> list[SuiteCase]:
    case = functools.partial(_case, model)

    o1, o2 = OR_HEADS
    a1, a2 = AND_HEADS
    ca, cb = COMPOSITION_HEADS
    b1, b2 = BACKUP_HEADS
    p, _ = NEGATIVE_HEADS
    *_, real = DECOY_HEADS
    s1, s2 = SUPERPOSITION_HEADS
    return [
        case("or", "or", OR_HEADS, ((o1,), (o2,)), ((o1, o2),)),
        case("and", "and", AND_HEADS, ((a1, a2),), ((a1,), (a2,))),
        case("composition", "composition", COMPOSITION_HEADS, ((ca,), (cb,)), ((ca,), (cb,))),
        case("backup", "backup", BACKUP_HEADS, ((b1,),), ((b1, b2),)),
        case("negative", "negative", NEGATIVE_HEADS, ((p,),), ((p,),)),
        case("decoy", "decoy", DECOY_HEADS, ((real,),), ((real,),)),
        case("superposition_f1", "s1", SUPERPOSITION_HEADS, ((s1,),), ((s1,),)),
        case("superposition_f2", "s2", SUPERPOSITION_HEADS, ((s2,),), ((s2,),)),
        case("superposition_f3", "s3", SUPERPOSITION_HEADS, ((s1, s2),), ((s1, s2),)),
    ]


def trap_case(seed: int = 0) -> SuiteCase:
    """`trap_8` on `trap_model(seed)`: denoising {0.0, 0.1}; noising {0.1}."""
    a, b = TRAP_HEADS[:2]
    return _case(trap_model(seed), "trap_8", "or", TRAP_HEADS, [(a, b)], [(b,)])


def gpt2_cases(seed: int = 0) -> list[SuiteCase]:
    """Every case of the suite, in a fixed order: the circuits on one `suite_model(seed)`, then the trap on its
    own `trap_model(seed)`."""
    return [*_cases_of(suite_model(seed)), trap_case(seed)]


def case_mask(heads: tuple[Head, ...] | list[Head]) -> Bool[Tensor, "n_layers n_heads"]:
    """A [12, 12] boolean mask of `heads`."""
    mask = torch.zeros(N_LAYERS, N_HEADS, dtype=torch.bool)
    for layer, head in heads:
        mask[layer, head] = True
    return mask

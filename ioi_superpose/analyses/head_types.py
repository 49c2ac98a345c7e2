"""Head types of every head: previous-token, duplicate-token, induction, copying, and where END looks in IOI.

The seed notebook's question 4 ("are these heads a more specialised application of another head type?") needs a
score per head and type. `head_types(model, prompts)` returns [n_layers, n_heads] tensors:

- `previous_token`, `duplicate_token`, `induction`: TransformerLens's head detector scores
  (`transformer_lens.head_detector`: its detection patterns and `compute_head_attention_similarity_score`, error
  measure "mul" = the share of a head's attention that falls on the pattern's query-key pairs), averaged over the
  clean prompts, each prompt cut at its END. `detect_head` itself is not called: it tokenizes strings with the
  model's tokenizer (toy checkpoints keep theirs outside the model) and runs one forward per prompt; here one
  batched forward gives every pattern, and per prompt the score is the detector's own function on it.
- `copying`: the OV circuit's eigenvalue test of copying restricted to names. With E = W_E[names] (the names of the
  prompts, at IO and S1), the head's n_names × n_names circuit is M = E W_V W_O W_U[:, names]: row i is how the
  head, attending to name i, raises each name's logit. Score Σ_i λ_i / Σ_i |λ_i| over M's eigenvalues (real part in
  the numerator): +1 for a pure copier (M's eigenvalues all positive, e.g. M = c·I with c > 0), −1 for a pure
  anti-copier (negative name movers). This is the eigenvalue measure of Elhage et al. 2021 ("A Mathematical
  Framework for Transformer Circuits", §"Copying / positive eigenvalues") taken over name tokens, the copying
  property the IOI paper (Wang et al. 2022, §3.1) checks for name movers (their own test, top-5 logits of the OV
  output after the first MLP, is `copying_top5` below without the MLP step). Raw weights: no layer norm, no MLP.
- `copying_cosine`: tr(M) / (√n ‖M‖_F), the cosine between M and the identity. Σλ/Σ|λ| is scale-free *within* M:
  a circuit that moves one name into a direction the names do not read (a rank-1 M, one non-zero row, whose only
  non-zero eigenvalue is that name's own, possibly tiny, diagonal entry) scores ±1 as if it copied every name. As
  tr(M) = Σλ and Σ|λ| ≤ √n ‖M‖_F, this score is ≤ the eigenvalue score in size, equal to it (±1) for M = ±c·I,
  and near 0 for a circuit whose mass lies off the diagonal. Use it to tell copiers from heads that only *read*
  names (`experiments/planted_head_types.py`: the eigenvalue score calls 24 of the 144-head suite's 27 planted
  heads copiers or anti-copiers; none copies by construction).
- `copying_top5`: share of names whose own token is among the 5 largest of (W_E[name] W_V W_O) W_U over the names.
- `attn_end_io`, `attn_end_s1`, `attn_end_s2`: mean attention probability from END to the IO, S1 and S2 positions of
  the clean prompts (IOI batches only: their `io_pos`, `s1_pos`, `s2_pos`).
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.data.ioi import IOIBatch
from ioi_superpose.engine.runs import capture
from ioi_superpose.engine.vocabulary import hook_name
from ioi_superpose.errors import ConfigError
from ioi_superpose.models import HookedTransformer, head_detector

DETECTOR_TYPES: dict[str, str] = {
    "previous_token": "previous_token_head",
    "duplicate_token": "duplicate_token_head",
    "induction": "induction_head",
}
TYPES: tuple[str, ...] = (*DETECTOR_TYPES, "copying", "copying_cosine", "copying_top5", "attn_end_io", "attn_end_s1",
                          "attn_end_s2")  # fmt: skip


@torch.no_grad()
def attention_patterns(model: HookedTransformer, tokens: Tensor) -> Float[Tensor, "layer batch head q k"]:
    names = [hook_name("pattern", layer) for layer in range(model.cfg.n_layers)]
    acts = capture(model, tokens, names)
    return torch.stack([acts[name] for name in names]).cpu()


@torch.no_grad()
def detector_scores(
    patterns: Float[Tensor, "layer batch head q k"],
    tokens: Tensor,
    end_pos: Tensor,
    exclude_bos: bool = False,
) -> dict[str, Float[Tensor, "layer head"]]:
    """TransformerLens's detector scores per head, averaged over prompts (each cut at its END)."""
    n_layers, batch, n_heads = patterns.shape[:3]
    out = {name: torch.zeros(n_layers, n_heads) for name in DETECTOR_TYPES}
    for row in range(batch):
        length = int(end_pos[row]) + 1
        row_tokens = tokens[row, :length].cpu()
        for name, detector in DETECTOR_TYPES.items():
            pattern = getattr(head_detector, f"get_{detector}_detection_pattern")(row_tokens)
            for layer in range(n_layers):
                for head in range(n_heads):
                    out[name][layer, head] += head_detector.compute_head_attention_similarity_score(
                        patterns[layer, row, head, :length, :length], pattern,
                        exclude_bos=exclude_bos, exclude_current_token=False, error_measure="mul",
                    )  # fmt: skip
    return {name: scores / batch for name, scores in out.items()}


@torch.no_grad()
def name_circuits(model: HookedTransformer, names: Tensor) -> Float[Tensor, "layer head name name"]:
    """M[l, h] = W_E[names] W_V[l, h] W_O[l, h] W_U[:, names] (rows: the attended name; columns: logits)."""
    names = names.to(model.W_E.device)
    embed = model.W_E[names]  # [name, d_model]
    ov = torch.einsum("lhmd,lhdn->lhmn", model.W_V, model.W_O)  # [layer, head, d_model, d_model]
    return torch.einsum("im,lhmn,nj->lhij", embed, ov, model.W_U[:, names]).cpu()


def copying_scores(circuits: Float[Tensor, "layer head name name"]) -> Float[Tensor, "layer head"]:
    """Σ Re λ / Σ |λ| over each circuit's eigenvalues (+1: copies names, −1: suppresses them)."""
    eigenvalues = torch.linalg.eigvals(circuits.double())
    return (eigenvalues.real.sum(-1) / eigenvalues.abs().sum(-1).clamp_min(1e-12)).float()


def copying_cosines(circuits: Float[Tensor, "layer head name name"]) -> Float[Tensor, "layer head"]:
    """tr(M) / (√n ‖M‖_F): the cosine of each circuit with the identity (+1: copies every name alike)."""
    circuits = circuits.double()
    trace = circuits.diagonal(dim1=-2, dim2=-1).sum(-1)
    size = circuits.flatten(-2).norm(dim=-1) * circuits.shape[-1] ** 0.5
    return (trace / size.clamp_min(1e-12)).float()


def copying_top_k(circuits: Float[Tensor, "layer head name name"], k: int = 5) -> Float[Tensor, "layer head"]:
    """Share of names i whose own logit is among the k largest of row i (the IOI paper's copy test, without MLP0)."""
    k = min(k, circuits.shape[-1])
    top = circuits.topk(k, dim=-1).indices  # [layer, head, name, k]
    own = torch.arange(circuits.shape[-1])[None, None, :, None]
    return (top == own).any(-1).float().mean(-1)


def end_attention(
    patterns: Float[Tensor, "layer batch head q k"], prompts: IOIBatch
) -> dict[str, Float[Tensor, "layer head"]]:
    """Mean attention from END to the IO, S1 and S2 positions."""
    by_prompt = patterns.transpose(0, 1)  # [batch, layer, head, q, k]
    rows = torch.arange(by_prompt.shape[0])
    from_end = by_prompt[rows, :, :, prompts.end_pos.cpu()]  # [batch, layer, head, k]
    out = {}
    for name, positions in (("attn_end_io", prompts.io_pos), ("attn_end_s1", prompts.s1_pos),
                            ("attn_end_s2", prompts.s2_pos)):  # fmt: skip
        out[name] = from_end[rows, :, :, positions.cpu()].mean(0)  # [layer, head]
    return out


@torch.no_grad()
def detector_head_types(
    model: HookedTransformer, prompts: ContrastBatch, exclude_bos: bool = False
) -> dict[str, Float[Tensor, "layer head"]]:
    """The types any task's prompts show (`DETECTOR_TYPES`: previous-token, duplicate-token, induction), on the clean
    prompts; `head_types` adds the IOI ones."""
    return detector_scores(attention_patterns(model, prompts.clean_tokens), prompts.clean_tokens, prompts.end_pos,
                           exclude_bos)  # fmt: skip


@torch.no_grad()
def head_types(
    model: HookedTransformer, prompts: IOIBatch, names: Tensor | None = None, exclude_bos: bool = False
) -> dict[str, Float[Tensor, "layer head"]]:
    """Every head's score for every type in `TYPES` (see the module docstring), on the clean prompts.

    `names`: the name token ids of the copying scores (default: the distinct tokens at the prompts' IO and S1
    positions). `exclude_bos`: the detectors ignore attention to position 0 (TransformerLens's option).
    """
    for field in ("io_pos", "s1_pos", "s2_pos"):
        if not hasattr(prompts, field):
            raise ConfigError(f"head_types: prompts must be an IOIBatch with IO/S1/S2 positions (no {field}); "
                              "make them with ioi_superpose.data.prompts.ioi_prompts.")  # fmt: skip
    tokens = prompts.clean_tokens
    if names is None:
        rows = torch.arange(len(tokens))
        names = torch.cat([tokens[rows, prompts.io_pos], tokens[rows, prompts.s1_pos]]).unique()
    if len(names) < 2:
        raise ConfigError(f"head_types: names must hold at least 2 name tokens, got {len(names)}.")
    patterns = attention_patterns(model, tokens)
    scores = detector_scores(patterns, tokens, prompts.end_pos, exclude_bos)
    circuits = name_circuits(model, names)
    scores["copying"] = copying_scores(circuits)
    scores["copying_cosine"] = copying_cosines(circuits)
    scores["copying_top5"] = copying_top_k(circuits)
    scores.update(end_attention(patterns, prompts))
    return {name: scores[name] for name in TYPES}

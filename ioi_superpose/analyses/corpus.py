"""Max-activating positions of a learned head combination on any text (`--data.corpus FILE`, one text a line).

No clean/corrupted pairs here: a position is ranked by the **direct effect** of the combination's head outputs on
the logit of the token that actually comes next in the text,

    effect[b, p] = LN_final( Σ_{l,h} w[l, h] · z[l, b, p, h] W_O[l, h] ) · W_U[:, t_{p+1}],

where w is the combination's [layer, head] view (`head_coefficients`: α for `scalar` / `hard_concrete`, the largest
α over roles for `per_position`, the source view for `mixing`) and LN_final is linearised at the run's own final
residual (centred, divided by that position's `ln_final` scale, times its weight; biases and b_O excluded, as in
direct logit attribution). Positive: the weighted heads push the true next token up. The last position of a text
has no next token and is not ranked. `rotation` is refused: its units are directions, not head weights.

    examples = corpus_examples(model, tokenizer, read_corpus("texts.txt"), weights, k=10)
    corpus_markdown(examples)                                         # results.tables
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from ioi_superpose.data.corpus import tokenize
from ioi_superpose.engine.vocabulary import hook_name
from ioi_superpose.errors import ConfigError
from ioi_superpose.models import HookedTransformer


@torch.no_grad()
def direct_effects(
    model: HookedTransformer, tokens: Tensor, weights: Float[Tensor, "layer head"]
) -> Float[Tensor, "batch pos"]:
    """effect[b, p] on the logit of tokens[b, p + 1] (module docstring); the last column is 0 (no next token)."""
    names = [hook_name("z", layer) for layer in range(model.cfg.n_layers)]
    has_ln = model.cfg.normalization_type is not None
    if has_ln:
        names.append("ln_final.hook_scale")
    _, cache = model.run_with_cache(tokens.to(model.cfg.device), names_filter=lambda name: name in names)
    weights = weights.to(model.cfg.device, model.W_O.dtype)
    written = sum(
        torch.einsum("bphd,hdm,h->bpm", cache[hook_name("z", layer)], model.W_O[layer], weights[layer])
        for layer in range(model.cfg.n_layers)
    )  # [batch, pos, d_model]: Σ_h w · z W_O
    if has_ln:
        written = (written - written.mean(-1, keepdim=True)) / cache["ln_final.hook_scale"]
        if getattr(model.ln_final, "w", None) is not None:
            written = written * model.ln_final.w
    next_tokens = tokens[:, 1:].to(model.cfg.device)
    unembed = model.W_U.T[next_tokens]  # [batch, pos - 1, d_model]
    effects = torch.zeros(tokens.shape, device=model.cfg.device)
    effects[:, :-1] = torch.einsum("bpm,bpm->bp", written[:, :-1], unembed)
    return effects.cpu()


@dataclass
class CorpusExample:
    rank: int
    text: int
    """Line of the corpus (0-based)."""
    position: int
    context: str
    """The text up to and including the position."""
    next_token: str
    effect: float


@dataclass
class CorpusExamples:
    top: list[CorpusExample]
    bottom: list[CorpusExample]
    n_positions: int

    def to_dict(self) -> dict[str, Any]:
        return {"n_positions": self.n_positions, "top": [asdict(e) for e in self.top],
                "bottom": [asdict(e) for e in self.bottom]}  # fmt: skip


def corpus_examples(
    model: HookedTransformer,
    tokenizer: Any,
    texts: Sequence[str],
    weights: Float[Tensor, "layer head"],
    k: int = 10,
    batch_size: int = 64,
) -> CorpusExamples:
    """The k positions of largest and of smallest direct effect over `texts` (module docstring)."""
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}.")
    if tuple(weights.shape) != (model.cfg.n_layers, model.cfg.n_heads):
        raise ConfigError(
            f"weights must be [n_layers, n_heads] = {[model.cfg.n_layers, model.cfg.n_heads]}, "
            f"got {list(weights.shape)}."
        )
    entries: list[tuple[float, int, int]] = []
    token_rows: list[list[int]] = []
    for start in range(0, len(texts), batch_size):
        tokens, lengths = tokenize(model, tokenizer, texts[start : start + batch_size])
        effects = direct_effects(model, tokens, weights)
        for row in range(len(tokens)):
            token_rows.append(tokens[row, : int(lengths[row])].tolist())
            for position in range(int(lengths[row]) - 1):
                entries.append((float(effects[row, position]), start + row, position))
    if not entries:
        raise ConfigError("the corpus has no text of two or more tokens: nothing to rank.")
    entries.sort(key=lambda entry: -entry[0])

    def example(rank: int, entry: tuple[float, int, int]) -> CorpusExample:
        effect, line, position = entry
        ids = token_rows[line]
        return CorpusExample(rank=rank, text=line, position=position,
                             context=tokenizer.decode(ids[: position + 1], skip_special_tokens=True),
                             next_token=tokenizer.decode([ids[position + 1]]), effect=round(effect, 5))  # fmt: skip

    top = [example(i + 1, e) for i, e in enumerate(entries[:k])]
    bottom = [example(len(entries) - i, e) for i, e in enumerate(reversed(entries[-k:]))]
    return CorpusExamples(top=top, bottom=bottom, n_positions=len(entries))

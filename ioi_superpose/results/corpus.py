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
    examples.to_markdown()
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from ioi_superpose.data.ioi import TextEncoder
from ioi_superpose.engine.runs import hook_name
from ioi_superpose.errors import ConfigError
from ioi_superpose.models import HookedTransformer


def read_corpus(path: str | Path, option: str = "--data.corpus") -> list[str]:
    """The non-empty lines of a UTF-8 text file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{option}={str(path)!r} is not a file: give a text file with one text a line.")
    texts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        raise ConfigError(f"{option}={str(path)!r} holds no text: give a file with one text a line.")
    return texts


def tokenize(
    model: HookedTransformer, tokenizer: TextEncoder, texts: Sequence[str]
) -> tuple[Tensor, Tensor, list[int]]:
    """Right-padded token rows (BOS first when the tokenizer has one, cut at the model's context), their lengths, and
    the indices of the texts that were cut (longer than the context)."""
    rows, cut = [], []
    for index, text in enumerate(texts):
        ids = tokenizer.encode(text, add_special_tokens=False)
        if tokenizer.bos_token_id is not None:
            ids = [tokenizer.bos_token_id, *ids]
        if len(ids) > model.cfg.n_ctx:
            cut.append(index)
        rows.append(ids[: model.cfg.n_ctx])
    lengths = torch.tensor([len(row) for row in rows])
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    tokens = torch.full((len(rows), int(lengths.max())), pad, dtype=torch.long)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return tokens, lengths, cut


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
    cut: list[int] = field(default_factory=list)
    """Texts (the `line` numbers of the tables) longer than the model's context: only their first `n_ctx` tokens
    were ranked."""
    n_ctx: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"n_positions": self.n_positions, "cut": self.cut, "n_ctx": self.n_ctx,
                "top": [asdict(e) for e in self.top], "bottom": [asdict(e) for e in self.bottom]}  # fmt: skip

    def cut_note(self) -> str | None:
        """The line that says which texts were cut at the context, or None."""
        if not self.cut:
            return None
        shown = ", ".join(map(str, self.cut[:10])) + (" …" if len(self.cut) > 10 else "")
        return (f"note: {len(self.cut)} corpus text(s) are longer than the model's context ({self.n_ctx} tokens) and "
                f"were cut: only their first {self.n_ctx} tokens are ranked (line {shown}, counted as the tables' "
                "line column). Split such texts into lines of at most that length to rank all of them.")  # fmt: skip

    def to_markdown(self) -> str:
        lines = [
            f"# Max-activating positions on the corpus ({self.n_positions} positions)",
            "",
            "Effect: direct effect of the learned combination's weighted head outputs on the logit of the true next "
            "token (`ioi_superpose/corpus.py`). Top: pushes it up most; bottom: down most.",
        ]
        if self.cut_note():
            lines += ["", str(self.cut_note())]
        for title, rows in (("Top", self.top), ("Bottom", self.bottom)):
            lines += ["", f"## {title}", "", "| rank | line | pos | context | next | effect |",
                      "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
            for e in rows:
                context = e.context.replace("|", "\\|")
                lines.append(f"| {e.rank} | {e.text} | {e.position} | {context} | {e.next_token} | {e.effect:.3f} |")
        return "\n".join(lines) + "\n"


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
    cut: list[int] = []
    for start in range(0, len(texts), batch_size):
        tokens, lengths, batch_cut = tokenize(model, tokenizer, texts[start : start + batch_size])
        cut += [start + index for index in batch_cut]
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
    return CorpusExamples(top=top, bottom=bottom, n_positions=len(entries), cut=cut, n_ctx=model.cfg.n_ctx)


def write_corpus_examples(system: Any, corpus: str | Path, run_dir: str | Path, k: int = 10) -> dict[str, Path]:
    """`corpus_examples` of a trained `HeadSuperposition` on the file `corpus`, written atomically into `run_dir`
    as corpus_examples.md and .json (`--data.corpus`)."""
    from ioi_superpose.files import atomic_write, write_json
    from ioi_superpose.models import load_tokenizer

    if system.hparams.get("combination") == "rotation":
        raise ConfigError(
            "--data.corpus ranks positions by head weights; --model.combination rotation learns directions, not "
            "head weights: leave --data.corpus unset for rotation runs."
        )
    tokenizer = load_tokenizer(system.hparams.model_name)
    examples = corpus_examples(system.frozen, tokenizer, read_corpus(corpus), system.combination.head_coefficients(), k)
    run_dir = Path(run_dir)
    if examples.cut_note():
        print(examples.cut_note())
    text = examples.to_markdown()
    return {
        "corpus_examples": atomic_write(run_dir / "corpus_examples.md", lambda name: Path(name).write_text(text)),
        "corpus_json": write_json(run_dir / "corpus_examples.json", examples.to_dict()),
    }

"""A text corpus (`--data.corpus FILE`, one text a line): reading it, and its token rows for a model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from ioi_superpose.data.ioi import TextEncoder
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


def tokenize(model: HookedTransformer, tokenizer: TextEncoder, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
    """Right-padded token rows (BOS first when the tokenizer has one, cut at the model's context) and lengths."""
    rows = []
    for text in texts:
        ids = tokenizer.encode(text, add_special_tokens=False)
        if tokenizer.bos_token_id is not None:
            ids = [tokenizer.bos_token_id, *ids]
        rows.append(ids[: model.cfg.n_ctx])
    lengths = torch.tensor([len(row) for row in rows])
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    tokens = torch.full((len(rows), int(lengths.max())), pad, dtype=torch.long)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return tokens, lengths

"""A word-level tokenizer for toy IOI: one token per word or punctuation mark.

The vocabulary is closed and given to the constructor; the toy-IOI one (the special tokens, the IOI
names, places and objects, and every word of every template family, so all of the main job's test sets
are in-vocabulary) is built by `ioi_superpose.toy.ioi_vocabulary.toy_ioi_tokenizer` and stored in each
toy-IOI checkpoint, from which `models.load_tokenizer` rebuilds it.
Whitespace only separates words, so `encode(" Mary") == encode("Mary")` is one token, and tokenizing a
prompt slot by slot (as the IOI generator does) equals tokenizing the whole string.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from ioi_superpose.errors import UnknownWordError

BOS = "<bos>"
PAD = "<pad>"
_WORD = re.compile(r"[A-Za-z0-9']+|[^\sA-Za-z0-9']")
"""A word is a run of letters/digits/apostrophes; every other non-space character is its own token."""
_NO_SPACE_BEFORE = frozenset(",.;:!?")


def split_words(text: str) -> list[str]:
    """The words and punctuation marks of `text`, in order (whitespace dropped)."""
    return _WORD.findall(text)


class WordTokenizer:
    """Maps each word / punctuation mark to one id; `<bos>` is id 0 and `<pad>` id 1.

    Has what the IOI generator needs (`encode`, `bos_token_id`, `pad_token_id`) and is stored as
    JSON (`to_dict` / `from_dict`) in a toy checkpoint's metadata, so a checkpoint file is enough to
    rebuild its tokenizer.
    """

    padding_side = "right"
    """Prompts are padded after END (`data.ioi`); TransformerLens reads this of a model's attached tokenizer
    (`load_frozen_model` attaches a toy checkpoint's) on every forward."""

    def __init__(self, vocab: Sequence[str]) -> None:
        vocab = list(vocab)
        if vocab[:2] != [BOS, PAD]:
            raise ValueError(f"vocab must start with {BOS!r}, {PAD!r}, got {vocab[:2]}")
        if len(set(vocab)) != len(vocab):
            duplicates = sorted({word for word in vocab if vocab.count(word) > 1})
            raise ValueError(f"vocab has duplicate entries: {duplicates}")
        bad = [word for word in vocab[2:] if split_words(word) != [word]]
        if bad:
            raise ValueError(f"vocab entries must be single words or punctuation marks, got {bad}")
        self.vocab: list[str] = vocab
        self._ids = {word: index for index, word in enumerate(vocab)}
        self.bos_token_id: int = self._ids[BOS]
        self.pad_token_id: int = self._ids[PAD]

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Ids of the words of `text`; with `add_special_tokens`, `<bos>` first."""
        words = split_words(text)
        unknown = [word for word in words if word not in self._ids]
        if unknown:
            raise UnknownWordError(
                f"Words not in the toy-IOI vocabulary: {sorted(set(unknown))} (in {text!r}). The vocabulary "
                "is built from data/templates.py (names, places, objects, template words); add new words there "
                "and retrain the toy model."
            )
        ids = [self._ids[word] for word in words]
        return [self.bos_token_id, *ids] if add_special_tokens else ids

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """Words joined by spaces, punctuation attached to the word before it."""
        text = ""
        for index in ids:
            index = int(index)
            if not 0 <= index < len(self.vocab):
                raise ValueError(f"token id {index} is outside the vocabulary (size {len(self.vocab)})")
            word = self.vocab[index]
            if skip_special_tokens and word in (BOS, PAD):
                continue
            text += word if (not text or word in _NO_SPACE_BEFORE) else " " + word
        return text

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        return [self.vocab[int(index)] for index in ids]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (what a checkpoint stores)."""
        return {"type": "word", "vocab": list(self.vocab)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "WordTokenizer":
        if not isinstance(data, dict) or data.get("type") != "word" or "vocab" not in data:
            raise ValueError(
                f"not a WordTokenizer description: expected {{'type': 'word', 'vocab': [...]}}, got {data!r:.200}"
            )
        return cls(data["vocab"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WordTokenizer) and self.vocab == other.vocab

    def __repr__(self) -> str:
        return f"WordTokenizer({len(self)} words)"

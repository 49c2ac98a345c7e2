"""Seeded IOI prompt generation: clean prompts, their corruptions, answers and role positions.

Prompts are tokenized slot by slot (text pieces and " Name" words separately) so the positions of
the roles are known exactly. For GPT-2's BPE this equals tokenizing the whole string, because its
pre-tokenizer always splits before a space-prefixed word (tested); a word-level toy tokenizer does
the same by construction.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch
from jaxtyping import Int
from torch import Tensor

from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.data.templates import NAMES, OBJECTS, PLACES
from ioi_superpose.errors import ConfigError

Corruption = Literal["name_swap", "abc"]
_SLOT = re.compile(r" \[(A|B|PLACE|OBJECT)\]")


class TextEncoder(Protocol):
    """What the generator needs of a tokenizer (Hugging Face tokenizers and our toy one have it)."""

    bos_token_id: int | None
    pad_token_id: int | None

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...


@dataclass
class IOIBatch(ContrastBatch):
    """IOI prompts with the positions of their roles (indices into the token rows)."""

    io_pos: Int[Tensor, " batch"]
    s1_pos: Int[Tensor, " batch"]
    s2_pos: Int[Tensor, " batch"]
    template_id: Int[Tensor, " batch"]


def ioi_features(batch: IOIBatch, encoder: TextEncoder) -> dict[str, list[Any]]:
    """Each prompt's IOI features (the `ioi` task's, `tasks/ioi.py`): the IO and S names, the template id, and the order
    (ABBA: the IO named first, else BABA)."""
    io, s = ([encoder.decode([token]).strip() for token in column.tolist()] for column in batch.answer_tokens.T)
    order = ["ABBA" if a < b else "BABA" for a, b in zip(batch.io_pos.tolist(), batch.s1_pos.tolist())]
    return {"io": io, "s": s, "template_id": batch.template_id.tolist(), "order": order}


def single_token_words(encoder: TextEncoder, words: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split `words` into those that are one token with a leading space, and those that are not."""
    single, multi = [], []
    for word in words:
        (single if len(encoder.encode(" " + word, add_special_tokens=False)) == 1 else multi).append(word)
    return single, multi


def require_single_tokens(encoder: TextEncoder, words: Sequence[str], what: str) -> None:
    _, multi = single_token_words(encoder, words)
    if multi:
        raise ConfigError(
            f"These {what} are not single tokens for the model's tokenizer (with a leading space): "
            f"{', '.join(multi)}. Remove them from the {what} list: IOI needs one-token names so that "
            "clean and corrupted prompts align position by position."
        )


def default_names(encoder: TextEncoder) -> list[str]:
    """The IOI paper's 99 names that are one token for this tokenizer."""
    return single_token_words(encoder, NAMES)[0]


def _encode_prompt(
    encoder: TextEncoder, template: str, words: dict[str, str]
) -> tuple[list[int], dict[str, list[int]]]:
    """Tokens of the prompt (the template without its final " [A]") and where each slot landed."""
    prompt_template = template.removesuffix(" [A]")
    tokens: list[int] = [encoder.bos_token_id] if encoder.bos_token_id is not None else []
    slot_positions: dict[str, list[int]] = {"A": [], "B": [], "PLACE": [], "OBJECT": []}
    cursor = 0
    for match in _SLOT.finditer(prompt_template):
        if match.start() > cursor:
            tokens += encoder.encode(prompt_template[cursor : match.start()], add_special_tokens=False)
        slot = match.group(1)
        slot_positions[slot].append(len(tokens))
        tokens += encoder.encode(" " + words[slot], add_special_tokens=False)
        cursor = match.end()
    if cursor < len(prompt_template):
        tokens += encoder.encode(prompt_template[cursor:], add_special_tokens=False)
    return tokens, slot_positions


def prompt_text(template: str, io: str, subject: str, place: str, obj: str) -> str:
    """The prompt as a string (for display and tests)."""
    text = template.removesuffix(" [A]")
    for slot, word in (("[A]", io), ("[B]", subject), ("[PLACE]", place), ("[OBJECT]", obj)):
        text = text.replace(slot, word)
    return text


def generate_ioi(
    encoder: TextEncoder,
    n_prompts: int,
    templates: Sequence[str],
    template_ids: Sequence[int],
    names: Sequence[str],
    corruption: Corruption = "name_swap",
    seed: int = 0,
    places: Sequence[str] = PLACES,
    objects: Sequence[str] = OBJECTS,
) -> IOIBatch:
    """`n_prompts` clean/corrupted IOI pairs, drawn with a fixed seed.

    Corruptions: `name_swap` (the notebook's) puts the IO's name in the subject's second slot, so the
    clean answer becomes the wrong one; `abc` (the IOI paper's) replaces IO, S1 and S2 by three other
    names, so neither answer is in the corrupted prompt.
    """
    if len(templates) != len(template_ids):
        raise ConfigError("templates and template_ids must have the same length")
    if corruption not in ("name_swap", "abc"):
        raise ConfigError(f"Unknown corruption '{corruption}': choose 'name_swap' or 'abc'.")
    needed = 5 if corruption == "abc" else 2
    if len(names) < needed:
        raise ConfigError(f"The '{corruption}' corruption needs at least {needed} names, got {len(names)}.")
    require_single_tokens(encoder, names, "names")
    rng = random.Random(seed)
    rows: list[dict] = []
    for _ in range(n_prompts):
        which = rng.randrange(len(templates))
        template = templates[which]
        io, subject, *others = rng.sample(list(names), needed)
        words = {"A": io, "B": subject, "PLACE": rng.choice(places), "OBJECT": rng.choice(objects)}
        clean, slots = _encode_prompt(encoder, template, words)
        corrupted = list(clean)
        if corruption == "name_swap":
            corrupted[slots["B"][1]] = _name_token(encoder, io)
        else:
            # Every occurrence of a name gets the same replacement (the A slot can occur twice).
            for slot, replacement in (("A", others[0]), ("B", others[1])):
                for position in slots[slot]:
                    corrupted[position] = _name_token(encoder, replacement)
            corrupted[slots["B"][1]] = _name_token(encoder, others[2])
        rows.append(
            dict(
                clean=clean,
                corrupted=corrupted,
                answers=[_name_token(encoder, io), _name_token(encoder, subject)],
                io_pos=slots["A"][0],
                s1_pos=slots["B"][0],
                s2_pos=slots["B"][1],
                end_pos=len(clean) - 1,
                template_id=template_ids[which],
            )
        )
    return _stack(rows, pad_token_id=_pad_id(encoder))


def _name_token(encoder: TextEncoder, name: str) -> int:
    (token,) = encoder.encode(" " + name, add_special_tokens=False)
    return token


def _pad_id(encoder: TextEncoder) -> int:
    # Padding sits after END and causal attention never reads it: any valid id works.
    return encoder.pad_token_id if encoder.pad_token_id is not None else 0


def _stack(rows: list[dict], pad_token_id: int) -> IOIBatch:
    length = max(len(row["clean"]) for row in rows)

    def padded(key: str) -> Tensor:
        return torch.tensor([row[key] + [pad_token_id] * (length - len(row[key])) for row in rows])

    def column(key: str) -> Tensor:
        return torch.tensor([row[key] for row in rows])

    return IOIBatch(
        clean_tokens=padded("clean"),
        corrupted_tokens=padded("corrupted"),
        answer_tokens=torch.tensor([row["answers"] for row in rows]),
        io_pos=column("io_pos"),
        s1_pos=column("s1_pos"),
        s2_pos=column("s2_pos"),
        end_pos=column("end_pos"),
        index=torch.arange(len(rows)),
        template_id=column("template_id"),
    )

"""Checks of prompts handed to the Python API as plain tensors (issue 19): END positions and padding,
the token dtype, and a clean/corrupted gap that recovery can be measured over.

A CLI run builds its prompts itself and knows every END; an API caller passes token rows, and a row
whose last token is padding would silently be scored at the pad.
"""

from __future__ import annotations

import torch
from jaxtyping import Int
from torch import Tensor

from ioi_superpose.errors import ConfigError
from ioi_superpose.models import HookedTransformer
from ioi_superpose.models.toy import TOY_PAD_ATTRIBUTE


def check_token_tensor(tokens: object, name: str, dims: int = 2) -> None:
    """`tokens` must be an integer tensor with `dims` dimensions (token ids, not floats or lists)."""
    if not isinstance(tokens, Tensor):
        raise ConfigError(f"{name} must be a torch tensor of token ids, got {type(tokens).__name__}.")
    if tokens.dtype == torch.bool or tokens.is_floating_point() or tokens.is_complex():
        raise ConfigError(
            f"{name} must hold integer token ids (torch.long), got dtype {tokens.dtype}: pass the tokenizer's "
            f"output as is, or convert with {name}.long() if the values are whole numbers."
        )
    if tokens.dim() != dims:
        shape = "[batch, pos]" if dims == 2 else "[batch]"
        raise ConfigError(f"{name} must be {shape}, got shape {list(tokens.shape)}.")


def end_positions_for(
    model: HookedTransformer,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupted_tokens: Int[Tensor, "batch pos"],
    end_positions: Int[Tensor, " batch"] | None,
) -> Int[Tensor, " batch"]:
    """Each prompt's END: `end_positions` when given (checked), else the last position, refused when it is
    padding (the answers would be read at a pad token)."""
    batch, length = clean_tokens.shape
    if end_positions is not None:
        check_token_tensor(end_positions, "end_positions", dims=1)
        if end_positions.shape[0] != batch:
            raise ConfigError(f"end_positions must have one entry per prompt ({batch}), got {end_positions.shape[0]}.")
        if batch and (int(end_positions.min()) < 0 or int(end_positions.max()) >= length):
            raise ConfigError(
                f"end_positions must index the prompt rows, in [0, {length - 1}]; got values in "
                f"[{int(end_positions.min())}, {int(end_positions.max())}]."
            )
        ends = end_positions.cpu()
        refuse_pad_reads(model, clean_tokens, corrupted_tokens, ends)
        return ends
    padded = padded_rows(model, clean_tokens) | padded_rows(model, corrupted_tokens)
    if bool(padded.any()):
        raise ConfigError(
            f"{int(padded.sum())} of {batch} prompts end in padding ({_rows(padded)}), so "
            "their answers would be read at a pad token. Pass end_positions (each prompt's last real token; "
            "ioi_prompts(...).end_pos), or build equal-length prompts (ioi_prompts(..., equal_length=True))."
        )
    ends = torch.full((batch,), length - 1)
    refuse_pad_reads(model, clean_tokens, corrupted_tokens, ends)
    return ends


def refuse_pad_reads(
    model: HookedTransformer,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupted_tokens: Int[Tensor, "batch pos"],
    ends: Int[Tensor, " batch"],
) -> None:
    """Refuse rows that would be read at or through padding: an END that holds the pad token (the answer read at a
    pad), and a pad token before END (left padding: the model reads pads as part of the prompt, and positions do not
    line up across rows). Position 0 is exempt where the pad token is also BOS (GPT-2's `<|endoftext|>`)."""
    pad = pad_token_id(model)
    if pad is None or clean_tokens.shape[1] == 0:
        return
    bos = getattr(getattr(model, "tokenizer", None), "bos_token_id", None)
    positions = torch.arange(clean_tokens.shape[1])
    at_end = torch.zeros(clean_tokens.shape[0], dtype=torch.bool)
    before_end = torch.zeros_like(at_end)
    for tokens in (clean_tokens, corrupted_tokens):
        is_pad = tokens.cpu() == pad
        if bos is not None and int(bos) == pad:
            is_pad[:, 0] = False
        rows = torch.arange(len(tokens))
        at_end |= is_pad[rows, ends]
        before_end |= (is_pad & (positions[None, :] < ends[:, None])).any(dim=1)
    if bool(at_end.any()):
        raise ConfigError(
            f"end_positions point at the pad token in {int(at_end.sum())} of {len(ends)} prompts ({_rows(at_end)}): "
            "their answers would be read at padding. Each row's END must be its last real token (ioi_prompts(...)"
            ".end_pos for right-padded prompts)."
        )
    if bool(before_end.any()):
        raise ConfigError(
            f"{int(before_end.sum())} of {len(ends)} prompts hold the pad token before END ({_rows(before_end)}): "
            "left padding (or padding inside a prompt), which the model would read as part of the prompt, and the "
            "roles' positions would not line up across rows. Pad on the right and pass end_positions, or build "
            "the prompts with ioi_prompts(...)."
        )


def _rows(mask: torch.Tensor) -> str:
    """The rows where `mask` holds, as a message names them (the first 8)."""
    rows = mask.nonzero().flatten().tolist()
    return f"rows {rows[:8]}{' …' if len(rows) > 8 else ''}"


def padded_rows(model: HookedTransformer, tokens: Int[Tensor, "batch pos"]) -> torch.Tensor:
    """Rows whose last token is the pad token of the model's tokenizer: `model.tokenizer`'s, or for a toy
    model (whose tokenizer lives in its checkpoint file) the one `load_frozen_model` recorded on it."""
    pad = pad_token_id(model)
    if pad is None or tokens.shape[1] == 0:
        return torch.zeros(tokens.shape[0], dtype=torch.bool)
    return tokens[:, -1].cpu() == pad


def pad_token_id(model: HookedTransformer) -> int | None:
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is not None and getattr(tokenizer, "pad_token_id", None) is not None:
        return int(tokenizer.pad_token_id)
    return getattr(model, TOY_PAD_ATTRIBUTE, None)

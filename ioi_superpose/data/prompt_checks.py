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
        return end_positions.cpu()
    padded = padded_rows(model, clean_tokens) | padded_rows(model, corrupted_tokens)
    if bool(padded.any()):
        rows = padded.nonzero().flatten().tolist()
        raise ConfigError(
            f"{len(rows)} of {batch} prompts end in padding (rows {rows[:8]}{' …' if len(rows) > 8 else ''}), so "
            "their answers would be read at a pad token. Pass end_positions (each prompt's last real token; "
            "ioi_prompts(...).end_pos), or build equal-length prompts (ioi_prompts(..., equal_length=True))."
        )
    return torch.full((batch,), length - 1)


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

"""Freezing a model: the one rule every loader applies (its own module, so `loading.py` and `toy.py`
both import it without importing each other in a cycle)."""

from __future__ import annotations

from transformer_lens import HookedTransformer


def freeze(model: HookedTransformer) -> HookedTransformer:
    """Eval mode, no parameter takes gradients: interventions train, the model never does."""
    model.eval()
    model.requires_grad_(False)
    return model

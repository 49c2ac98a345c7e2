"""What the engine's fast runner needs to know of a TransformerLens model's build, asked here so that no module
outside `models/` imports TransformerLens: its standard component classes, its post-norm architectures, and
which hook points have hooks attached (TransformerLens keeps those in private `nn.Module` dicts)."""

from __future__ import annotations

from transformer_lens import HookedTransformer
from transformer_lens.components import MLP, Attention, LayerNorm, LayerNormPre, TransformerBlock

__all__ = [
    "MLP",
    "Attention",
    "LayerNorm",
    "LayerNormPre",
    "TransformerBlock",
    "attached_hooks",
    "post_norm_architectures",
]


def post_norm_architectures() -> tuple[str, ...]:
    """The `cfg.original_architecture` names TransformerLens builds with post-norm blocks."""
    try:
        from transformer_lens.components.transformer_block import POST_NORM_ARCHITECTURES
    except ImportError:  # older TransformerLens: no post-norm models
        return ()
    return tuple(POST_NORM_ARCHITECTURES)


def attached_hooks(model: HookedTransformer) -> list[str]:
    """Names of the hook points that have a forward (pre-)hook attached."""
    return [name for name, point in model.hook_dict.items() if point._forward_hooks or point._forward_pre_hooks]

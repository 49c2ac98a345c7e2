"""The one place that talks to TransformerLens: every other module imports model types from here."""

from transformer_lens import ActivationCache, HookedTransformer, HookedTransformerConfig, head_detector
from transformer_lens.hook_points import HookPoint

from ioi_superpose.errors import ModelLoadError
from ioi_superpose.models.frozen import freeze
from ioi_superpose.models.loading import describe_model, load_frozen_model, load_tokenizer
from ioi_superpose.models.shipped import shipped_checkpoint
from ioi_superpose.models.tokenizer import gpt2_tokenizer
from ioi_superpose.models.word_tokenizer import WordTokenizer

__all__ = [
    "ActivationCache",
    "HookPoint",
    "HookedTransformer",
    "HookedTransformerConfig",
    "ModelLoadError",
    "WordTokenizer",
    "describe_model",
    "freeze",
    "head_detector",
    "gpt2_tokenizer",
    "load_frozen_model",
    "load_tokenizer",
    "shipped_checkpoint",
]

"""Contrast batches and IOI prompts. `ioi_prompts` is the one call a notebook needs."""

from ioi_superpose.data.ioi import IOIBatch
from ioi_superpose.data.prompts import ioi_prompts, ioi_texts

__all__ = ["IOIBatch", "ioi_prompts", "ioi_texts"]

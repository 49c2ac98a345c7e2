"""The reference cache: each training prompt's unpatched source and base results, kept after first use
(the model is frozen, so they never change)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.engine.runs import Reference
from ioi_superpose.engine.vocabulary import Direction


@dataclass
class CachedRow:
    """One training prompt's reference results (`Reference`'s per-prompt rows)."""

    source_z: Float[Tensor, "layer pos head d_head"] | None
    """The source run's head outputs up to END, as the cache's dtype and device; None: over the size cap, or
    activations are not kept."""
    source_answer_logits: Float[Tensor, " 2"]
    base_answer_logits: Float[Tensor, " 2"]
    source_log_probs: Float[Tensor, " vocab"] | None
    """The source run's END log-probabilities (the `kl` objective only)."""


class ReferenceCache:
    """Per-prompt reference rows of the training set, keyed by `ContrastBatch.index`.

    Caching the source activations turns a training step into one patched forward and backward;
    without it (`keep_activations=False`) only the small per-prompt answer logits are kept. The head
    outputs z (n_layers × (END+1) × n_heads × d_head per prompt) are stored as `dtype` on `device`
    (None: the module's device), and only while their total stays within `max_bytes`: a batch with a
    row left out is recomputed. Cleared at the start of every fit: the keys are row numbers, which
    another dataset reuses.
    """

    def __init__(
        self,
        keep_activations: bool,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        max_bytes: float | None = None,
    ) -> None:
        self.keep_activations = keep_activations
        self.dtype, self.device, self.max_bytes = dtype, device, max_bytes
        self.rows: dict[int, CachedRow] = {}
        self.z_bytes = 0
        """Bytes of the cached z rows."""
        self.rows_over_cap = 0
        """Rows whose z did not fit under `max_bytes` (recomputed whenever their batch comes)."""

    def clear(self) -> None:
        self.rows.clear()
        self.z_bytes = self.rows_over_cap = 0

    def get(self, batch: ContrastBatch, direction: Direction) -> Reference | None:
        keys = batch.index.tolist()
        if not self.keep_activations or any(key not in self.rows or self.rows[key].source_z is None for key in keys):
            return None
        rows = [self.rows[key] for key in keys]
        length = batch.clean_tokens.shape[1]
        # The answer logits stay as the model made them; z rows are cast back to their dtype and device.
        device, dtype = rows[0].source_answer_logits.device, rows[0].source_answer_logits.dtype
        source_z = torch.stack(
            [F.pad(row.source_z.to(device=device, dtype=dtype), (0, 0, 0, 0, 0, length - row.source_z.shape[1]))
             for row in rows],
            dim=1,
        )  # fmt: skip
        log_probs = None if rows[0].source_log_probs is None else torch.stack([row.source_log_probs for row in rows])
        return Reference(
            direction,
            source_z,
            torch.stack([row.source_answer_logits for row in rows]),
            torch.stack([row.base_answer_logits for row in rows]),
            log_probs,
            batch.answer_weights,
            batch.metric,
        )

    def base_answer_logits(self, batch: ContrastBatch) -> Tensor | None:
        """The base run's answer logits of every row, when all are cached (the base run can be skipped)."""
        keys = batch.index.tolist()
        if any(key not in self.rows for key in keys):
            return None
        return torch.stack([self.rows[key].base_answer_logits for key in keys])

    def put(self, batch: ContrastBatch, reference: Reference) -> None:
        for row, (key, end) in enumerate(zip(batch.index.tolist(), batch.end_pos.tolist())):
            if key in self.rows and (self.rows[key].source_z is not None or not self.keep_activations):
                continue
            was_over_cap = key in self.rows  # seen before without its z: counted once
            z = None
            if self.keep_activations:
                # Positions after END never influence the END logits (causal attention): not stored.
                source = reference.source_z[:, row, : end + 1]
                size = source.numel() * torch.empty((), dtype=self.dtype).element_size()
                if self.max_bytes is None or self.z_bytes + size <= self.max_bytes:
                    z = source.to(device=self.device or source.device, dtype=self.dtype, copy=True)
                    self.z_bytes += size
                    self.rows_over_cap -= was_over_cap
                elif not was_over_cap:
                    self.rows_over_cap += 1
            log_probs = None if reference.source_log_probs is None else reference.source_log_probs[row]
            self.rows[key] = CachedRow(
                z, reference.source_answer_logits[row], reference.base_answer_logits[row], log_probs
            )

    def describe(self) -> str:
        """The cache's size, in words, with the options that set it."""
        line = (f"Reference cache: {self.z_bytes / 2**20:.1f} MB of source activations for "
                f"{len(self.rows) - self.rows_over_cap} training prompts (--model.cache_dtype "
                f"{str(self.dtype).removeprefix('torch.')}, "
                f"--model.cache_device {self.device or 'same'}).")  # fmt: skip
        if self.rows_over_cap:
            line += (f" --model.cache_max_mb {self.max_bytes / 2**20:g} reached: {self.rows_over_cap} prompts are "
                     "not cached, and their batches are recomputed at every step.")  # fmt: skip
        return line

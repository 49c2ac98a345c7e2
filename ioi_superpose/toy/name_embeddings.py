"""Frozen name embeddings for toy IOI: every name token a seeded random vector, shared by the
embedding and the unembedding, never trained.

Why random name embeddings, shared by embedding and unembedding, never trained. IOI is a copying
task: the answer is one of the names in the prompt. With learned embeddings, a name that never occurs
in training keeps its initial embedding and unembedding, which the learned circuits were never fitted
to: on held-out names such a model (2 layers × 4 heads, d_model 64) stays at chance (~50 % IO over S)
while it is perfect on seen ones. Fixing each name's embedding e_n to a random vector and its
unembedding column to the same e_n turns copying into linear algebra that works for any name: a head
whose OV circuit is close to a scaled identity writes c·e_IO, whose logit read-out e_n·c·e_IO is large
for n = IO and near 0 for other names (random vectors in d_model dimensions have cosines ~ 1/sqrt(d_model)),
and QK circuits that compare names ("attend to the name that is not the subject") work the same way.
Fixed vectors alone still leave room to fit the 79 training names individually (measured: 99 % IO
over S on seen names, 90 % on held-out ones). Redrawing the training names' vectors at every step
removes that room — no fact about a particular name survives to the next step — so only name-agnostic
circuits lower the loss, and the exported model (which holds one more seeded draw) is as good on names
it never saw as on the others (99.9 % vs 99.7 %). b_U is 0 for names so that no per-name parameter is left.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from jaxtyping import Float
from torch import Tensor

from ioi_superpose.errors import ConfigError
from ioi_superpose.models import HookedTransformer


def name_vectors(n_names: int, d_model: int, seed: int, norm: float) -> Float[Tensor, "n_names d_model"]:
    """Seeded Gaussian vectors of expected norm `norm` (nearly orthogonal when d_model is large)."""
    return _gaussian(n_names, d_model, torch.Generator().manual_seed(seed), norm)


def _gaussian(n: int, d_model: int, generator: torch.Generator, norm: float) -> Tensor:
    return torch.randn(n, d_model, generator=generator) * (norm / d_model**0.5)


@torch.no_grad()
def set_name_embeddings(model: HookedTransformer, token_ids: Sequence[int], vectors: Tensor) -> None:
    """Embedding rows and unembedding columns of `token_ids` := `vectors`; their b_U := 0."""
    ids = torch.as_tensor(list(token_ids), device=model.W_E.device)
    model.W_E[ids] = vectors.to(model.W_E)
    model.W_U[:, ids] = vectors.T.to(model.W_U)
    model.b_U[ids] = 0.0


class FrozenNameEmbeddings(L.Callback):
    """Give every name token a seeded random vector, shared by embedding and unembedding, never trained.

    Between training steps (so in validation, test and the exported model) the names hold fixed vectors
    (`name_vectors(n_names, d_model, seed, norm)`). With `resample_training_names`, each training step
    first swaps the *training* names' vectors for fresh random ones, so no name-specific fact can be
    learned: only name-agnostic copying and comparison circuits lower the loss, and those work on any
    random vectors — the fixed ones of the exported model, and the held-out names'. The names' gradients
    are zeroed after backward (the optimiser's moments stay 0 for them) and the fixed vectors restored
    after each step (undoing decoupled weight decay and the resampling).

    A callback rather than a model subclass: it composes with `train_toy`'s CLI (whose model class is
    fixed) and leaves a plain HookedTransformer state dict. Needs a datamodule with `name_token_ids` and
    `train_name_token_ids` (`ToyIOIDataModule`).
    """

    def __init__(self, seed: int = 0, norm: float = 1.0, resample_training_names: bool = True) -> None:
        """
        Args:
            seed: seed of the fixed name vectors (training-step resamples use seeds derived from it).
            norm: expected Euclidean norm of each name vector.
            resample_training_names: fresh random vectors for the training names at every step (see above);
                False keeps the fixed vectors throughout.
        """
        super().__init__()
        if norm <= 0:
            raise ConfigError(f"FrozenNameEmbeddings norm must be > 0, got {norm}.")
        self.seed, self.norm, self.resample = seed, norm, resample_training_names
        self.token_ids: list[int] = []
        self.train_rows: list[int] = []
        self.vectors: Tensor | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        data = trainer.datamodule
        if not (hasattr(data, "name_token_ids") and hasattr(data, "train_name_token_ids")):
            raise TypeError(
                f"FrozenNameEmbeddings needs a datamodule with name_token_ids and train_name_token_ids; "
                f"{type(data).__name__} lacks them"
            )
        self.token_ids = list(data.name_token_ids)
        train_ids = set(data.train_name_token_ids)
        self.train_rows = [row for row, token in enumerate(self.token_ids) if token in train_ids]
        self.vectors = name_vectors(len(self.token_ids), pl_module.model.cfg.d_model, self.seed, self.norm)
        set_name_embeddings(pl_module.model, self.token_ids, self.vectors)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if not self.resample:
            return
        fresh = self.vectors.clone()
        d_model = fresh.shape[1]
        generator = torch.Generator().manual_seed((self.seed + 1) * 1_000_003 + trainer.global_step)
        fresh[self.train_rows] = _gaussian(len(self.train_rows), d_model, generator, self.norm)
        set_name_embeddings(pl_module.model, self.token_ids, fresh)

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model = pl_module.model
        for parameter, index in (
            (model.W_E, (self.token_ids,)),
            (model.W_U, (slice(None), self.token_ids)),
            (model.b_U, (self.token_ids,)),
        ):
            if parameter.grad is not None:
                parameter.grad[index] = 0.0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        set_name_embeddings(pl_module.model, self.token_ids, self.vectors)

    def describe(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "norm": self.norm,
            "resample_training_names": self.resample,
            "n_names": len(self.token_ids),
        }

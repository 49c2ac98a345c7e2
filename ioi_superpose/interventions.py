"""Head-combination interventions on `blocks.{layer}.attn.hook_z`, and the context that attaches them.

    z_patched = z_base + α ⊙ (z_source − z_base)        α: one weight per (layer, head)

In a denoising run the base is the corrupted prompt and the source the clean one; noising swaps them.
α = 0 is the base run, α = 1 everywhere the source run, one-hot α single-head activation patching.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from jaxtyping import Float
from torch import Tensor, nn

from ioi_superpose.errors import ConfigError
from ioi_superpose.models import HookedTransformer, HookPoint


def z_hook_name(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_z"


class HeadCombination(nn.Module):
    """Learnable mixing weights α[layer, head] between a base and a source run's head outputs.

    With `bounded`, α lives in [0, 1]: call `project_()` after each optimiser step (a projected
    gradient step, which, with an L1 penalty, sets unneeded heads to exactly zero rather than
    merely small, as a sigmoid parametrisation would).
    """

    def __init__(self, n_layers: int, n_heads: int, bounded: bool = True, init: float = 1.0) -> None:
        super().__init__()
        if bounded and not 0.0 <= init <= 1.0:
            raise ConfigError(f"init={init} is outside [0, 1]; a bounded combination needs 0 <= init <= 1.")
        self.bounded = bounded
        self.coefficients = nn.Parameter(torch.full((n_layers, n_heads), float(init)))

    def forward(
        self,
        layer: int,
        z_base: Float[Tensor, "batch pos head d_head"],
        z_source: Float[Tensor, "batch pos head d_head"],
    ) -> Float[Tensor, "batch pos head d_head"]:
        alpha = self.coefficients[layer].to(z_base.dtype)[:, None]  # [head, 1] broadcasts over d_head
        return z_base + alpha * (z_source - z_base)

    def l1(self) -> Float[Tensor, ""]:
        return self.coefficients.abs().sum()

    def l0(self, threshold: float) -> int:
        """Number of heads whose |α| exceeds `threshold`."""
        return int((self.coefficients.detach().abs() > threshold).sum())

    @torch.no_grad()
    def project_(self) -> None:
        if self.bounded:
            self.coefficients.clamp_(0.0, 1.0)


@contextmanager
def patched_heads(
    model: HookedTransformer,
    combination: HeadCombination,
    source_z: Float[Tensor, "layer batch pos head d_head"],
) -> Iterator[None]:
    """Run `model` with every layer's z mixed towards `source_z` by `combination`.

    Hooks live only inside this context (TransformerLens removes them on exit, also on error).
    """

    def mix(z_base: Tensor, hook: HookPoint, layer: int) -> Tensor:
        return combination(layer, z_base, source_z[layer])

    hooks = [
        (z_hook_name(layer), lambda z, hook, layer=layer: mix(z, hook, layer))
        for layer in range(model.cfg.n_layers)
    ]
    with model.hooks(fwd_hooks=hooks):
        yield


def head_z(
    model: HookedTransformer, tokens: Tensor
) -> tuple[Float[Tensor, "layer batch pos head d_head"], Float[Tensor, "batch pos d_model"]]:
    """Every layer's head outputs z, and the final residual stream (before `ln_final`), in one run."""
    z_by_layer: list[Tensor] = []

    def record(z: Tensor, hook: HookPoint) -> None:
        z_by_layer.append(z)

    with model.hooks(fwd_hooks=[(z_hook_name(layer), record) for layer in range(model.cfg.n_layers)]):
        final_residual = model(tokens, stop_at_layer=model.cfg.n_layers)
    return torch.stack(z_by_layer), final_residual

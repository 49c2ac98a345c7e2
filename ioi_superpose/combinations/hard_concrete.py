"""`hard_concrete`: a stochastic L0 gate per head (Louizos et al. 2018)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ioi_superpose.combinations.base import LearnedFamily, SeededSettings, check_finite, check_init
from ioi_superpose.engine.patch import mix
from ioi_superpose.errors import SettingError

HARD_CONCRETE_STRETCH = (-0.1, 1.1)
"""(γ, ζ) of the hard-concrete distribution (Louizos et al. 2018): the concrete sample in (0, 1) is
stretched to (γ, ζ) and clamped to [0, 1], so a gate is exactly 0 or 1 with non-zero probability."""


@dataclass(frozen=True)
class HardConcreteSettings(SeededSettings):
    """`hard_concrete`'s settings: its gates' seed and temperature."""

    temperature: float = 2 / 3
    """the temperature β of the gates (Louizos et al. 2018)."""

    def __post_init__(self) -> None:
        check_finite("temperature", self.temperature)
        if not self.temperature > 0:
            raise SettingError("temperature", f"$temperature must be > 0 (the hard-concrete temperature β), got "
                               f"{self.temperature}.")  # fmt: skip


class HardConcreteCombination(LearnedFamily):
    """`hard_concrete`: a stochastic L0 gate per head (Louizos et al. 2018; as in subnetwork probing and
    Edge Pruning). Training samples u ~ U(0, 1) and gates g = clamp(σ((log u − log(1−u) + log α)/β)(ζ−γ)+γ,
    0, 1) with temperature β (default 2/3) and stretch (γ, ζ) = (−0.1, 1.1); the penalty is the expected
    number of open gates Σ σ(log α − β log(−γ/ζ)). In evaluation (`self.training` false) the gate is
    deterministic, clamp(σ(log α)(ζ−γ)+γ, 0, 1) — `coefficients`. Sampling uses its own generator seeded
    with `seed` (the global RNG is untouched), so a run is reproducible.
    """

    family = "hard_concrete"
    Settings = HardConcreteSettings
    description = "a stochastic L0 gate per head (expected-L0 penalty, deterministic gates in evaluation)"

    def __init__(
        self, n_layers: int, n_heads: int, init: float = 1.0, temperature: float = 2 / 3, seed: int = 0
    ) -> None:
        super().__init__()
        check_init(init, True, "hard_concrete")
        if not temperature > 0 or not math.isfinite(temperature):  # `not >`: NaN fails too
            raise SettingError(
                "temperature", f"$temperature must be a finite number > 0 (the hard-concrete temperature β), got "
                f"{temperature}."
            )  # fmt: skip
        self.temperature, self.seed = float(temperature), int(seed)
        self.gamma, self.zeta = HARD_CONCRETE_STRETCH
        # The log α whose deterministic gate is `init` (probabilities kept inside (0.001, 0.999)).
        p = min(max((init - self.gamma) / (self.zeta - self.gamma), 1e-3), 1 - 1e-3)
        self.log_alpha = nn.Parameter(torch.full((n_layers, n_heads), math.log(p / (1 - p))))
        self._generator: torch.Generator | None = None

    @classmethod
    def build(
        cls, n_layers: int, n_heads: int, d_head: int, init: float, settings: HardConcreteSettings
    ) -> "HardConcreteCombination":
        return cls(n_layers, n_heads, init, settings.temperature, settings.gate_seed)

    def _noise(self, shape: torch.Size, device: torch.device) -> Tensor:
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        return torch.rand(shape, generator=self._generator, device=device).clamp(1e-6, 1 - 1e-6)

    def gates(self, log_alpha: Tensor) -> Tensor:
        if self.training:
            u = self._noise(log_alpha.shape, log_alpha.device)
            s = torch.sigmoid((u.log() - (1 - u).log() + log_alpha) / self.temperature)
        else:
            s = torch.sigmoid(log_alpha)
        return (s * (self.zeta - self.gamma) + self.gamma).clamp(0.0, 1.0)

    @property
    def coefficients(self) -> Tensor:
        """The deterministic (evaluation) gates [layer, head]."""
        return (torch.sigmoid(self.log_alpha) * (self.zeta - self.gamma) + self.gamma).clamp(0.0, 1.0)

    def forward(self, layer: int, z_base: Tensor, z_source: Tensor) -> Tensor:
        return mix(z_base, z_source, self.gates(self.log_alpha[layer])[None])

    def penalty(self) -> Tensor:
        return torch.sigmoid(self.log_alpha - self.temperature * math.log(-self.gamma / self.zeta)).sum()

    @torch.no_grad()
    def set_mask_(self, mask: Tensor) -> None:
        self.log_alpha.copy_(torch.where(mask.bool().to(self.log_alpha.device), 10.0, -10.0))

"""Lightning callbacks: plots of the learned α and the patching baselines next to it."""

from ioi_superpose.callbacks.baselines import (
    ActivationPatchingBaseline,
    AttributionPatchingBaseline,
    CombinationBaselines,
    DirectLogitAttribution,
    HeadBaseline,
    PathPatchingBaseline,
)
from ioi_superpose.callbacks.coefficients import CoefficientPlots

__all__ = [
    "ActivationPatchingBaseline",
    "AttributionPatchingBaseline",
    "CoefficientPlots",
    "CombinationBaselines",
    "DirectLogitAttribution",
    "HeadBaseline",
    "PathPatchingBaseline",
]

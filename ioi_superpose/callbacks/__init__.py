"""Lightning callbacks: the α plots, thread control, the checkpoint callback. The baselines' are `baselines/`'s."""

from ioi_superpose.callbacks.coefficients import CoefficientPlots

__all__ = ["CoefficientPlots"]

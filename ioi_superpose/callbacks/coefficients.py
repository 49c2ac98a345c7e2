"""The learned α as a [layer × head] heatmap and a histogram, every validation epoch."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger

from ioi_superpose.plots import head_heatmap
from ioi_superpose.training.system import HeadSuperposition


class CoefficientPlots(L.Callback):
    """Logs α to TensorBoard (image + histogram) at the end of each validation epoch."""

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: HeadSuperposition) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        alpha = pl_module.combination.head_coefficients().cpu()  # [layer, head] (largest over roles)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                figure = head_heatmap(alpha, f"α at step {trainer.global_step}")
                logger.experiment.add_figure("coefficients/heatmap", figure, trainer.global_step)
                logger.experiment.add_histogram("coefficients/histogram", alpha, trainer.global_step)

"""The learned α as a [layer × head] heatmap and a histogram every validation epoch, and its history over the fit
(the run's `alpha_over_training.png`, `results.run_figures.alpha_over_training`)."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor

from ioi_superpose.plots import head_heatmap
from ioi_superpose.training.system import HeadSuperposition

ALPHA_LABEL = "α (0: base z, 1: source z)"


class CoefficientPlots(L.Callback):
    """Logs α to TensorBoard (image + histogram) at the end of each validation epoch, and keeps α's [layer, head]
    view after every optimisation step of this fit (`history`: steps and α, from the fit's first step)."""

    def __init__(self) -> None:
        self.steps: list[int] = []
        self.alphas: list[Tensor] = []

    @property
    def history(self) -> tuple[list[int], Tensor] | None:
        """(steps, α [time, layer, head]) of this fit, None before any step."""
        return (self.steps, torch.stack(self.alphas)) if self.alphas else None

    def on_train_start(self, trainer: L.Trainer, pl_module: HeadSuperposition) -> None:
        self.steps, self.alphas = [], []
        self._record(trainer, pl_module)  # the α this fit starts from (init, or a resumed checkpoint's)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: HeadSuperposition, *args: Any) -> None:
        self._record(trainer, pl_module)

    def _record(self, trainer: L.Trainer, pl_module: HeadSuperposition) -> None:
        if trainer.is_global_zero and (not self.steps or self.steps[-1] != trainer.global_step):
            self.steps.append(trainer.global_step)
            self.alphas.append(pl_module.combination.head_coefficients().detach().float().cpu().clone())

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: HeadSuperposition) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        alpha = pl_module.combination.head_coefficients().cpu()  # [layer, head] (largest over roles)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                figure = head_heatmap(alpha, f"α at step {trainer.global_step} ({pl_module.hparams.direction})",
                                      label=ALPHA_LABEL)  # fmt: skip
                logger.experiment.add_figure("coefficients/heatmap", figure, trainer.global_step)
                logger.experiment.add_histogram("coefficients/histogram", alpha, trainer.global_step)

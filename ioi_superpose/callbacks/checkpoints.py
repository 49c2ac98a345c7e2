"""`--checkpoint.*`: the best checkpoint by `monitor`, and a `last.ckpt` that is always the latest state."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn


class BestAndLastCheckpoint(ModelCheckpoint):
    """Lightning's `ModelCheckpoint`, with `save_last` meaning "the state at the latest save trigger".

    Lightning 2.6 rewrites `last.ckpt` at the end of an epoch or validation only when a top-k checkpoint
    was saved at that same step: after a validation whose `val/loss` is not the best, `last.ckpt` stays
    at the earlier, better step. A resumed run would then silently replay from there, and `last.ckpt`
    would not hold the final α. Here every epoch- and validation-end trigger leaves `last.ckpt` at the
    current step.
    """

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def _refresh_last(self, trainer: L.Trainer) -> None:
        fitting = trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking
        if not self.save_last or trainer.fast_dev_run or not fitting:
            return
        if self._last_written_step != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def _save_last_checkpoint(self, trainer: L.Trainer, monitor_candidates: dict) -> None:
        super()._save_last_checkpoint(trainer, monitor_candidates)
        self._last_written_step = trainer.global_step

    _last_written_step: int = -1
    """The step `last.ckpt` was last written at (every path that writes it goes through `_save_last_checkpoint`)."""

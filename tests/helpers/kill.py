"""A test hook, not a feature: a callback that SIGKILLs its own process, to test resuming a killed run.

Added on the command line only (`--trainer.callbacks+=tests.helpers.kill.KillAtStep
--trainer.callbacks.step K`); nothing in the package uses it.
"""

from __future__ import annotations

import os
import signal

import lightning as L


class KillAtStep(L.Callback):
    """SIGKILLs the process as the training batch after optimiser step `step` starts — after every
    callback (checkpoints included) has finished with step `step`, before anything of the next step runs.
    Deterministic: the run dies at the same point whatever the machine's speed."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class InterruptAtStep(L.Callback):
    """Raises KeyboardInterrupt — what Ctrl-C raises in the main thread — as the batch after step `step`
    starts (`--trainer.callbacks+=tests.helpers.kill.InterruptAtStep --trainer.callbacks.step K`)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            raise KeyboardInterrupt


class KillOnceAtStep(KillAtStep):
    """`KillAtStep` the first time only: the kill leaves `marker`, and a run that finds it trains on. A sweep point
    killed with SIGKILL, then run again with the same settings (`experiments/bad_inputs.py`)."""

    def __init__(self, step: int, marker: str) -> None:
        super().__init__(step)
        self.marker = marker

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step == self.step and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)

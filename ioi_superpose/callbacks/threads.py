"""Run a Trainer stage with a set number of torch threads (small models on a busy CPU)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import lightning as L
import torch

from ioi_superpose.errors import ConfigError


class TorchThreads(L.Callback):
    """Sets torch's intra-op threads for each fit / validate / test and restores the previous count after.

    Tiny models (the toy-IOI main job) spend their time in per-op overhead: on a busy 2-core CPU one
    thread ran the whole toy-IOI main job in 16 s, torch's default (2 threads) in 4 minutes.
    """

    def __init__(self, threads: int = 1) -> None:
        """
        Args:
            threads: torch intra-op threads while a Trainer stage runs (>= 1).
        """
        super().__init__()
        if threads < 1:
            raise ConfigError(f"TorchThreads threads must be >= 1, got {threads}.")
        self.threads = threads
        self._previous: int | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._previous is not None:
            torch.set_num_threads(self._previous)
            self._previous = None


@contextmanager
def stage_threads(trainer: L.Trainer) -> Iterator[None]:
    """The thread count of `trainer`'s `TorchThreads` (if it has one) for a block outside its stages — the run's
    post-fit work — then as it was: results written after fit do not depend on the machine's core count."""
    threads = next((c.threads for c in trainer.callbacks if isinstance(c, TorchThreads)), None)
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)

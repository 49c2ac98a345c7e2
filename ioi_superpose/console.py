"""What a researcher reads on the console: our own lines, not the dependencies' chatter.

Our progress lines (the reference cache's size, …) go to the `ioi_superpose` logger at INFO. The entry points
print them (`quiet_console` adds a handler); a notebook's API call does not (`quiet_call`) — so a benchmark of
78 API calls prints no CLI flag names. Lightning's info lines (GPU/TPU availability, the litlogger tip, "Seed set
to", "`Trainer.fit` stopped") and the dependencies' deprecation warnings are left out of the entry points' output
(`quiet_console`) and of the API's calls (`quiet_call`). Warnings about our own settings still show.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

LOG = logging.getLogger("ioi_superpose")
"""Our progress lines, at INFO: printed by the entry points, silent in a notebook's API call."""
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning_utilities")
DEPENDENCIES = r"(lightning|lightning_fabric|pytorch_lightning|torch|transformer_lens|jsonargparse|transformers)(\.|$)"
"""Modules whose deprecation warnings are theirs to fix, not the user's."""
IGNORED_WARNINGS = (
    ".*does not have many workers.*",  # our prompts are tensors in memory: loader workers would only add overhead
    ".*GPU available but not used.*",  # the user chose the accelerator
    ".*Checkpoint directory .* exists and is not empty.*",  # a resumed run writes into its own directory
    ".*log_every_n_steps.*",  # a small toy fit has fewer batches than the logging interval
)


def quiet_console() -> None:
    """For an entry point's process: our INFO lines on stdout, Lightning's info lines and the dependencies'
    deprecation warnings not shown. Call it after Lightning is imported (its import sets its loggers to INFO)."""
    for name in LIGHTNING_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    _ignore_dependency_deprecations()
    for message in IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    if not any(isinstance(handler, _Stdout) for handler in LOG.handlers):
        LOG.addHandler(_Stdout())
    LOG.setLevel(logging.INFO)


class _Stdout(logging.Handler):
    """Our lines, as they are, on whatever `sys.stdout` is when they are written (a test's capture included)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(record.getMessage(), file=sys.stdout, flush=True)


@contextmanager
def quiet_call() -> Iterator[None]:
    """Lightning's and our own info lines and the dependencies' deprecation warnings off for the block (an API
    call's fit), then as they were."""
    loggers = [logging.getLogger(name) for name in (*LIGHTNING_LOGGERS, LOG.name)]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():  # the caller's warning filters come back on exit
            _ignore_dependency_deprecations()
            # The API fits on its training prompts alone: the module's validation_step is the CLI's.
            warnings.filterwarnings("ignore", message=".*validation_step. but have no .val_dataloader.*")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _ignore_dependency_deprecations() -> None:
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=DEPENDENCIES)

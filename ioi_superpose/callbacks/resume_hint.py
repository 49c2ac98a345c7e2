"""A run stopped with Ctrl-C keeps its checkpoints and resumes exactly: say how, with the command to run."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint


def resume_command(argv: Sequence[str], checkpoint: str | Path) -> str:
    """`python -m ioi_superpose.train fit <argv without its --ckpt_path> --ckpt_path <checkpoint>`."""
    kept: list[str] = []
    skip_value = False
    for arg in argv:
        if skip_value:
            skip_value = False
        elif arg == "--ckpt_path":
            skip_value = True
        elif not arg.startswith("--ckpt_path="):
            kept.append(arg)
    if kept[:1] == ["fit"]:
        kept = kept[1:]
    return shlex.join([sys.executable, "-m", "ioi_superpose.train", "fit", *kept, "--ckpt_path", str(checkpoint)])


class ResumeHint(Callback):
    """On Ctrl-C (Lightning stops the fit, keeps the checkpoints and exits 1), print the resume command."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, KeyboardInterrupt) or not trainer.is_global_zero:
            return
        last = _last_checkpoint(trainer)
        if last is None:
            print(
                f"Stopped at step {trainer.global_step}, before any checkpoint was saved: nothing to resume. Run "
                "the same command again to start over.",
                file=sys.stderr,
            )
            return
        print(
            f"Stopped at step {trainer.global_step}; the checkpoints are kept. Resume exactly where the last one "
            f"left off with:\n  {resume_command(self.argv, last)}",
            file=sys.stderr,
        )


def _last_checkpoint(trainer: L.Trainer) -> Path | None:
    """The newest checkpoint file this fit's checkpoint callbacks wrote (last.ckpt when there is one)."""
    for callback in trainer.callbacks:
        if isinstance(callback, ModelCheckpoint):
            for path in (callback.last_model_path, callback.best_model_path):
                if path and Path(path).is_file():
                    return Path(path)
    return None

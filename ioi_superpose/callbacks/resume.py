"""Exact resume from any checkpoint a run writes, and a Ctrl-C that keeps the step it stopped at.

A checkpoint records where the run was in two ways: Lightning's loop counters (epochs and batches ready, started,
processed, completed) and the optimiser step count. Lightning 2.6 restores its counters correctly only for a
checkpoint written at the end of a training batch. One written at an epoch's end or at a validation's end, with
`max_steps` set (`trainer.max_steps != -1`: Lightning then always treats a load as a restart), re-runs the finished
epoch's end and counts it twice: the resumed run starts one epoch too far on, and our loader refuses the mismatch
(`data.datamodule.ResumableLoader`). A run stopped by `max_steps` mid-epoch saves at that epoch's end, so extending
it resumes at the next epoch's start, skipping the epoch's remaining batches.

`ExactResume` makes the optimiser step the one source of truth: on load, the counters are rewritten as a checkpoint
written at the end of the training batch that made step `global_step` would hold them (`align_loop_state`). That
is the one form Lightning restores exactly, whatever wrote the file. Each epoch takes the same number of batches
(the run's data settings are checked on resume), so the step fixes the epoch and the batch within it.
"""

from __future__ import annotations

import math
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from ioi_superpose.console import LOG
from ioi_superpose.errors import ConfigError


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


def batches_per_epoch(loader_state: dict[str, int], limit_train_batches: int | float) -> int:
    """Training batches in one epoch of a resumed run: the loader's full epoch, cut as Lightning cuts it with
    `limit_train_batches` (an int caps the count, a fraction scales it)."""
    full = math.ceil(loader_state["num_samples"] / loader_state["batch_size"])
    if isinstance(limit_train_batches, int):
        return min(full, limit_train_batches)
    return full if limit_train_batches == 1.0 else int(full * limit_train_batches)


def align_loop_state(checkpoint: dict[str, Any], batches: int) -> None:
    """Rewrite `checkpoint`'s fit-loop counters, in place, as a checkpoint written at the end of the training batch
    that made optimiser step `global_step` holds them (`batches` per epoch, one optimiser step per batch).

    The epoch is `(step - 1) // batches`, and the batch within it `step - epoch · batches`. A step at an epoch's
    boundary is the end of that epoch's last batch: Lightning then starts the next epoch, and the loader state
    says so (the next epoch, nothing yielded yet). The loader state is checked against the step first: a loader
    that was further on than the step is only possible for a batch drawn but not yet trained on (at most one).
    """
    step = int(checkpoint["global_step"])
    loops = checkpoint.get("loops", {}).get("fit_loop")
    if step == 0 or loops is None:  # nothing trained: the run starts over from its first batch
        return
    epoch, batch = divmod(step - 1, batches)
    batch += 1  # batches of `epoch` trained on, 1..batches
    loader_states = loops.get("state_dict", {}).get("combined_loader", [])
    for state in loader_states:
        drawn = state["epoch"] * batches + state["batches_yielded"]
        if not 0 <= drawn - step <= 1:
            raise ConfigError(
                f"The checkpoint's training loader stopped at epoch {state['epoch']}, batch {state['batches_yielded']} "
                f"({batches} batches per epoch), which does not match its optimiser step {step}: it was written by "
                "another run or with other --trainer.limit_train_batches. Resume with the settings that made it, or "
                "start a new run."
            )
        state["epoch"], state["batches_yielded"] = (epoch + 1, 0) if batch == batches else (epoch, batch)

    def progress(ready: int, processed: int, completed: int) -> dict[str, int]:
        return {"ready": ready, "started": ready, "processed": processed, "completed": completed}

    def twice(counts: dict[str, int]) -> dict[str, dict[str, int]]:  # this fit's and all fits' counts: one run
        return {"total": dict(counts), "current": dict(counts)}

    # The epoch is under way (processed lags started); the batch is processed, its end not yet completed.
    loops["epoch_progress"] = twice(progress(epoch + 1, epoch, epoch))
    loops["epoch_loop.batch_progress"] = {
        "total": progress(step, step, step - 1),
        "current": progress(batch, batch, batch - 1),
        "is_last_batch": batch == batches,
    }
    loops["epoch_loop.state_dict"] = {"_batches_that_stepped": step - 1}  # Lightning adds the batch back on restart
    optimisation = loops.get("epoch_loop.automatic_optimization.optim_progress", {}).get("optimizer")
    if optimisation is not None:
        optimisation["step"] = {"total": {"ready": step, "completed": step},
                                "current": {"ready": batch, "completed": batch}}
        optimisation["zero_grad"] = {"total": {"ready": step, "started": step, "completed": step},
                                     "current": {"ready": batch, "started": batch, "completed": batch}}  # fmt: skip
    validation = loops.get("epoch_loop.val_loop.batch_progress")
    if validation is not None:  # no validation under way: a batch's end comes before any validation
        done = validation["current"]["completed"]
        validation["total"] = progress(0, 0, 0)
        validation["current"] = progress(done, done, done)


class ExactResume(Callback):
    """Resume exactly from any checkpoint (`align_loop_state`); on Ctrl-C, save `last.ckpt` at the step the run
    stopped at and print the command that resumes it.

    `--trainer.accumulate_grad_batches` must be 1: the alignment reads one batch per optimiser step (and the
    objective is that of the whole batch; raise `--data.batch_size` instead).
    """

    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.accumulate_grad_batches != 1:
            raise ConfigError(
                f"--trainer.accumulate_grad_batches {trainer.accumulate_grad_batches} is not supported: the objective "
                "is that of the whole batch, and exact resume reads one batch per step. Use --data.batch_size "
                f"{trainer.accumulate_grad_batches}×B instead (with --trainer.devices N, N processes share the batch)."
            )

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        loader_states = checkpoint.get("loops", {}).get("fit_loop", {}).get("state_dict", {}).get("combined_loader")
        if trainer.state.fn != "fit" or not loader_states:
            return
        align_loop_state(checkpoint, batches_per_epoch(loader_states[0], trainer.limit_train_batches))
        # Lightning's own "Restoring states" line is off on our quiet console; a resume must still say so.
        LOG.info(f"Resuming exactly from the checkpoint's step {checkpoint.get('global_step', 0)}.")

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, KeyboardInterrupt) or not trainer.is_global_zero:
            return
        saved = _save_last(trainer)
        last = saved or _last_checkpoint(trainer)
        if last is None:
            print(
                f"Stopped at step {trainer.global_step}, before any checkpoint was saved: nothing to resume. Run "
                "the same command again to start over.",
                file=sys.stderr,
            )
            return
        where = (f"step {trainer.global_step} is saved in {last}" if saved else
                 f"the last checkpoint is {last}")  # fmt: skip
        print(f"Stopped at step {trainer.global_step}; {where}. Resume exactly from there with:\n  "
              f"{resume_command(self.argv, last)}", file=sys.stderr)  # fmt: skip


def _checkpoint_callback(trainer: L.Trainer) -> ModelCheckpoint | None:
    return next((callback for callback in trainer.callbacks if isinstance(callback, ModelCheckpoint)), None)


def _save_last(trainer: L.Trainer) -> Path | None:
    """Save `last.ckpt` at the current step, when that state is whole: one process (a save under DDP is collective,
    and the other processes may be stopped anywhere), at least one step taken, and no optimiser step half done
    (Ctrl-C between Adam's updates of the moments and of α would save a state no run ever had)."""
    callback = _checkpoint_callback(trainer)
    if callback is None or not callback.save_last or trainer.world_size != 1 or trainer.global_step == 0:
        return None
    step = trainer.fit_loop.epoch_loop.automatic_optimization.optim_progress.optimizer.step.total
    if step.ready != step.completed or callback.dirpath is None:
        return None
    path = Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}"
    trainer.save_checkpoint(path)
    return path


def _last_checkpoint(trainer: L.Trainer) -> Path | None:
    """The newest checkpoint file this fit's checkpoint callbacks wrote (last.ckpt when there is one)."""
    for callback in trainer.callbacks:
        if isinstance(callback, ModelCheckpoint):
            for path in (callback.last_model_path, callback.best_model_path):
                if path and Path(path).is_file():
                    return Path(path)
    return None

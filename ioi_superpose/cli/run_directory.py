"""`validate`, `test` and a resumed `fit` write into the run directory of their `--ckpt_path`.

Without this each opened a new `runs/<name>/version_N`: the README's paths went stale and TensorBoard filled with
empty runs. A checkpoint of ours lies in `RUN/checkpoints/` beside `RUN/config.yaml`; the TensorBoard logger then
logs into RUN itself (save_dir RUN/../.., name and version from RUN's path), unless the command line or config
names a version (the sweep does: its points are `OUT/<point>/`). The run's `config.yaml` stays the record of its
fit: `validate` / `test` do not write one, a resumed fit rewrites it (same model and data settings, enforced by
`SuperposeCLI._parse_ckpt_path`; its trainer settings and --ckpt_path are the ones the results come from).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.cli import SaveConfigCallback

TENSORBOARD_LOGGER = "lightning.pytorch.loggers.TensorBoardLogger"


def run_directory_of(ckpt_path: str | None) -> Path | None:
    """RUN for a checkpoint at RUN/checkpoints/NAME.ckpt written by a run (RUN/config.yaml exists), else None."""
    if not ckpt_path:
        return None
    path = Path(ckpt_path)
    run = path.parent.parent
    return run if path.parent.name == "checkpoints" and (run / "config.yaml").is_file() else None


def log_into_run_directory(config: Any) -> Path | None:
    """Point `config`'s (one subcommand's parsed settings) TensorBoard logger at its checkpoint's run directory;
    that directory, or None where the logger, the checkpoint or an explicit version says otherwise."""
    run = run_directory_of(config.get("ckpt_path"))
    logger = config["trainer"].get("logger")
    if run is None or not hasattr(logger, "get") or logger.get("class_path") != TENSORBOARD_LOGGER:
        return None
    init_args = logger["init_args"]
    if init_args.get("version") is not None:
        return None
    # Relative to the working directory where it can be, as the fit's was: Lightning's checkpoint callback then sees
    # the same directory and restores its best-checkpoint records.
    save_dir = run.parent.parent
    if save_dir.resolve().is_relative_to(Path.cwd().resolve()):
        save_dir = Path(os.path.relpath(save_dir.resolve(), Path.cwd().resolve()))
    init_args["save_dir"], init_args["name"], init_args["version"] = str(save_dir), run.parent.name, run.name
    return run


def keep_the_runs_config(trainer: L.Trainer, subcommand: str | None, resumed: bool) -> None:
    """`validate` / `test` / `predict` write no config.yaml over the run's; a resumed fit rewrites it."""
    for callback in list(trainer.callbacks):
        if isinstance(callback, SaveConfigCallback):
            if subcommand != "fit":
                trainer.callbacks.remove(callback)
            elif resumed:
                callback.overwrite = True

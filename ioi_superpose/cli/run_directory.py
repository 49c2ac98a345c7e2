"""`validate`, `test` and a resumed `fit` write into the run directory of their `--ckpt_path`.

Without this each opened a new `runs/<name>/version_N` beside the run: the README's paths went stale and TensorBoard
filled with empty runs. A checkpoint of ours lies in `RUN/checkpoints/` beside `RUN/config.yaml`; when RUN is one of
the logger's versions (`save_dir/name/version_K`) the TensorBoard logger logs into RUN itself, unless the command
line or config names a version (the sweep does: its points are `OUT/<point>/`). The run's `config.yaml` stays the
record of its fit: `validate` / `test` do not write one, a resumed fit rewrites it (same model and data settings,
enforced by `SuperposeCLI._parse_ckpt_path`; its trainer settings and --ckpt_path are the ones the results come
from).
"""

from __future__ import annotations

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
    """Point `config`'s (one subcommand's parsed settings) TensorBoard logger at its checkpoint's run directory when
    that directory is one of the logger's own versions (`save_dir/name/version_K`, where the run would otherwise
    open a new `version_N` beside it); that directory, or None where the logger, the checkpoint or an explicit
    version says otherwise (a checkpoint from elsewhere starts a run directory of its own, as before)."""
    run = run_directory_of(config.get("ckpt_path"))
    logger = config["trainer"].get("logger")
    if run is None or not hasattr(logger, "get") or logger.get("class_path") != TENSORBOARD_LOGGER:
        return None
    init_args = logger["init_args"]
    if init_args.get("version") is not None:
        return None
    versions = Path(init_args.get("save_dir") or ".") / (init_args.get("name") or "lightning_logs")
    if run.parent.resolve() != versions.resolve():
        return None
    init_args["version"] = run.name
    return run


def keep_the_runs_config(trainer: L.Trainer, subcommand: str | None, resumed: bool) -> None:
    """`validate` / `test` / `predict` write no config.yaml over the run's; a resumed fit rewrites it."""
    for callback in list(trainer.callbacks):
        if isinstance(callback, SaveConfigCallback):
            if subcommand != "fit":
                trainer.callbacks.remove(callback)
            elif resumed:
                callback.overwrite = True

"""A test hook, not a feature: a callback that keeps a copy of every checkpoint file its run writes.

`last.ckpt` and the best checkpoint are overwritten as a run goes on; to resume from *every* checkpoint a run
ever wrote (tests of exact resume), this copies each file as soon as it is written, to
`<its folder>/kept/<n>_step<global step>_<name>`. Added on the command line only
(`--trainer.callbacks+=tests.helpers.keep_checkpoints.KeepCheckpoints`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import lightning as L


class KeepCheckpoints(L.Callback):
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        save = trainer.save_checkpoint
        written = 0

        def save_and_keep(filepath, *args, **kwargs):
            nonlocal written
            save(filepath, *args, **kwargs)
            path = Path(filepath)
            kept = path.parent / "kept"
            kept.mkdir(exist_ok=True)
            shutil.copyfile(path, kept / f"{written:03d}_step{trainer.global_step}_{path.name}")
            written += 1

        trainer.save_checkpoint = save_and_keep

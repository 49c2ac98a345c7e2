"""Train attention-only toy models: `python -m ioi_superpose.train_toy {fit,validate,test} --config …`.

The datamodule is chosen in the config (`data.class_path`); the model's `d_vocab`, `n_ctx` and
`group_names` are linked from it, so a task is described once. Add the `ioi_superpose.toy.ExportToyModel`
callback to write the trained model and its metrics when fit ends (the shipped configs in `experiments/` do): the
model goes into the run directory, and to the callback's path unless a file is there already (a shipped
`checkpoints/*.pt` is replaced only with `--replace_checkpoint true`, which the documented regeneration commands
pass). TensorBoard logs go to `runs/` unless the config says otherwise.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, Optional

import lightning as L
import torch
from lightning.pytorch.cli import LightningArgumentParser

from ioi_superpose.cli.flag_order import refuse_flags_replaced_by_config
from ioi_superpose.cli.lightning_parsing import OneLineParseErrors, lightning_parser_kwargs
from ioi_superpose.cli.run_checks import CheckedCLI
from ioi_superpose.console import quiet_console
from ioi_superpose.errors import user_facing_main
from ioi_superpose.toy import ExportToyModel, ToyModelTraining


class ToyCLI(OneLineParseErrors, CheckedCLI):
    command = "toy"

    def __init__(self, *positional: Any, args: Sequence[str] | None = None, **kwargs: Any) -> None:
        refuse_flags_replaced_by_config(list(args) if isinstance(args, (list, tuple)) else sys.argv[1:])
        super().__init__(*positional, args=args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--torch_threads",
            type=Optional[int],
            default=None,
            help="torch intra-op threads (None: torch's default). Toy models are so small that threading "
            "overhead dominates: 1 thread ran a step in 11 ms on a busy 2-core CPU, 2 threads in 160+ ms.",
        )
        parser.add_argument(
            "--replace_checkpoint",
            type=bool,
            default=False,
            help="let the export callbacks (ExportToyModel) write over an existing file at their path, e.g. a shipped "
            "checkpoints/*.pt (the documented regeneration commands pass it). Default: an existing file is kept and "
            "the trained model is written into the run directory only.",
        )
        # The datamodule knows its vocabulary, length and groups; the model must not be told twice.
        for name in ("d_vocab", "n_ctx", "group_names"):
            parser.link_arguments(f"data.{name}", f"model.{name}", apply_on="instantiate")

    def before_fit(self) -> None:
        if self.config.fit.replace_checkpoint:
            for callback in self.trainer.callbacks:
                if isinstance(callback, ExportToyModel):
                    callback.replace = True

    def before_instantiate_classes(self) -> None:
        threads = self.config[self.subcommand].torch_threads if self.subcommand else self.config.torch_threads
        if threads is not None:
            torch.set_num_threads(threads)


@user_facing_main
def main(args: list[str] | None = None) -> ToyCLI:
    """Run the CLI; a `UserFacingError` (a bad setting, a missing checkpoint), also one raised inside
    the datamodule's instantiation, prints `error: <message>` on stderr and exits with status 1, without
    a traceback (`cli.entry.user_facing_main`)."""
    quiet_console()
    return ToyCLI(
            ToyModelTraining,
            L.LightningDataModule,
            subclass_mode_data=True,
            seed_everything_default=0,
            trainer_defaults={
                "enable_model_summary": False,  # its table's 20 lines fill the screen; checkpoints/README gives sizes
                "logger": {
                    "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                    "init_args": {"save_dir": "runs", "name": "toy"},
                },
            },
            save_config_kwargs={"overwrite": True},
            args=args,
            parser_kwargs=lightning_parser_kwargs("toy", __doc__),
        )


if __name__ == "__main__":
    main()

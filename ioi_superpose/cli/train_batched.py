"""`python -m ioi_superpose.train_batched --member "--config X.yaml --model.l1=0.01 …" --member "…" …`

K training runs that differ only in batchable settings (`fitting.settings.BATCHABLE`: `--model.l1`, `init`, `lr`,
`gate_seed`) trained in one process, in one batched forward of the frozen model per step (K × batch
rows; `HeadSuperposition.batched`). Each `--member` holds the arguments of one `python -m
ioi_superpose.cli.train fit` run (without `fit`); each member ends exactly as that run ends: its final α
evaluated on validation and every test set, its baselines, and its run directory written by the same
code (`train.write_results`: `summary.json`, `coefficients.pt`, figures). What a batched member does not
leave: checkpoints (`checkpoints/*.ckpt`) and training curves in TensorBoard (the group has one fit, with
no logger), so a group stopped part-way cannot resume: it is trained again from its first step. The
sweep runs its groups through this (`python -m ioi_superpose.sweep … --batch_variants K`).
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import SaveConfigCallback

from ioi_superpose.arguments import OneLineParser
from ioi_superpose.baselines.callbacks import Baselines, baseline_specs, evaluation_sets
from ioi_superpose.baselines.compute import BaselineResult, compute_baselines
from ioi_superpose.callbacks.coefficients import CoefficientPlots
from ioi_superpose.cli.lightning_parsing import lightning_parser_kwargs
from ioi_superpose.cli.train import TRAINER_DEFAULTS, SuperposeCLI, write_results
from ioi_superpose.console import quiet_console
from ioi_superpose.errors import ConfigError, UserFacingError, user_facing_main
from ioi_superpose.tasks.datamodule import TaskDataModule
from ioi_superpose.training.system import HeadSuperposition, superposition_module

GROUP_TRAINER_OFF = ("logger", "callbacks", "enable_checkpointing", "enable_progress_bar", "default_root_dir")
"""Trainer settings of the members that the group's own fit replaces (it keeps no logs or checkpoints)."""


MEMBER_CALLBACKS = (Baselines, ModelCheckpoint, CoefficientPlots, SaveConfigCallback)
"""Callbacks that belong to each member's run (its baselines, checkpoints, α plots and config.yaml), not to
the group's fit."""


def member_cli(args: Sequence[str]) -> SuperposeCLI:
    """One member's settings, parsed and instantiated as `train fit` would, without running anything."""
    return SuperposeCLI(
        superposition_module,
        TaskDataModule,
        trainer_defaults=TRAINER_DEFAULTS,
        seed_everything_default=0,
        args=list(args),
        run=False,
        parser_kwargs=lightning_parser_kwargs("train"),
        # A group stopped part-way is trained again from scratch: its members' config.yaml is rewritten.
        save_config_kwargs={"overwrite": True},
    )


def check_same_run(clis: Sequence[SuperposeCLI]) -> None:
    """Members must share the data, the seed and the training schedule (the model's own settings are
    checked by `system.check_batchable`)."""
    first = clis[0].config

    def trainer_settings(config: object) -> dict:
        return {k: v for k, v in config["trainer"].as_dict().items() if k not in ("logger", "default_root_dir")}

    for k, cli in enumerate(clis[1:], start=1):
        for name, mine, theirs in (
            ("seed_everything", first["seed_everything"], cli.config["seed_everything"]),
            ("data", first["data"].as_dict(), cli.config["data"].as_dict()),
            ("trainer", trainer_settings(first), trainer_settings(cli.config)),
        ):
            if mine != theirs:
                raise ConfigError(
                    f"batched member {k} has other --{name} settings than member 0; only --model.l1, init, lr and "
                    "gate_seed may differ within a group."
                )


def group_trainer(cli: SuperposeCLI) -> L.Trainer:
    """A Trainer with member 0's schedule and its non-baseline callbacks (e.g. `TorchThreads`), no
    logger, no checkpoints and no validation during the fit (each member is evaluated after it, by its own
    trainer; the group module is member 0 and would otherwise validate it alone every epoch)."""
    settings = {k: v for k, v in cli.config["trainer"].as_dict().items() if k not in GROUP_TRAINER_OFF}
    settings.update(limit_val_batches=0, num_sanity_val_steps=0)
    callbacks = [
        callback
        for callback in cli.config_init["trainer"].get("callbacks") or []
        if not isinstance(callback, MEMBER_CALLBACKS)
    ]
    return L.Trainer(
        **settings, callbacks=callbacks, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )


def fit_group(members: Sequence[Sequence[str]]) -> None:
    """Train the members in one batched fit, then evaluate and write each as its own run would."""
    clis = [member_cli(args) for args in members]
    check_same_run(clis)
    # One frozen model for all: `batched` gives every member member 0's (the copies the other CLIs loaded are dropped).
    group = HeadSuperposition.batched([cli.model for cli in clis])
    for cli in clis:
        cli.before_fit()  # the run directories can be made (a clear error otherwise)
    L.seed_everything(clis[0].config["seed_everything"], verbose=False)  # as `train fit` seeds right before fit
    trainer = group_trainer(clis[0])
    trainer.fit(group, datamodule=clis[0].datamodule)
    if trainer.interrupted:
        raise UserFacingError("the batched fit was interrupted; no member's results were written.")
    baselines = group_baselines(clis[0])
    for cli in clis:
        write_results(cli.trainer, cli.model, cli.datamodule, cli.config.as_dict(), baselines)


def group_baselines(cli: SuperposeCLI) -> list[BaselineResult]:
    """The baselines member 0's config lists, computed once for the whole group: they do not depend on α, and
    the members share model, prompts and direction (`check_same_run`, `system.check_batchable`). Rank 0 only,
    as a fit's `Baselines` callback computes them."""
    if not cli.trainer.is_global_zero:
        return []
    fitted = cli.model.to(cli.trainer.strategy.root_device).fitted()
    specs = baseline_specs(cli.trainer.callbacks)
    return compute_baselines(fitted.model, evaluation_sets(cli.datamodule), fitted.direction, specs,
                             rest=fitted.rest, ablation=fitted.ablation)  # fmt: skip


@user_facing_main
def main(args: Sequence[str] | None = None) -> None:
    quiet_console()
    parser = OneLineParser(
        prog="python -m ioi_superpose.train_batched", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument(
        "--member", action="append", required=True, metavar="ARGS",
        help="one run's arguments, as for `python -m ioi_superpose.train fit` (quoted; repeat once per member)",
    )  # fmt: skip
    parsed = parser.parse_args(args)
    fit_group([shlex.split(member) for member in parsed.member])


if __name__ == "__main__":
    main()

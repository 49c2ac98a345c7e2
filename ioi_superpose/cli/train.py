"""`python -m ioi_superpose.train {fit,validate,test} --config experiments/….yaml`

Learns a sparse head combination on IOI with a frozen model. After `fit`, the run directory (printed at
the end) holds `summary.json`, `coefficients.pt`, `coefficients.png`, the baselines' figures, the
max-activating examples (`max_activating.md` / `.json`, options `--max_activating.*`), checkpoints and
TensorBoard logs.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import LightningArgumentParser

from ioi_superpose.analyses.max_activating import MaxActivatingOptions
from ioi_superpose.analyses.per_prompt import per_prompt_recoveries
from ioi_superpose.analyses.post_fit import AfterFit, after_fit
from ioi_superpose.analyses.scrubbing.learned import check_scrub_file
from ioi_superpose.baselines.callbacks import Baselines, join_baselines, log_baselines, log_figure
from ioi_superpose.baselines.compute import BaselineResult
from ioi_superpose.callbacks.checkpoints import BestAndLastCheckpoint
from ioi_superpose.callbacks.coefficients import CoefficientPlots
from ioi_superpose.callbacks.resume import ExactResume
from ioi_superpose.callbacks.threads import stage_threads
from ioi_superpose.cli.flag_order import refuse_flags_replaced_by_config
from ioi_superpose.cli.lightning_parsing import OneLineParseErrors, lightning_parser_kwargs
from ioi_superpose.cli.run_checks import CheckedCLI
from ioi_superpose.cli.run_directory import keep_the_runs_config, log_into_run_directory
from ioi_superpose.cli.run_records import run_figures
from ioi_superpose.console import quiet_console
from ioi_superpose.data.datamodule import IOIDataModule
from ioi_superpose.data.splits import TRAIN_SET, VAL_SET
from ioi_superpose.engine.runs import check_token_ids
from ioi_superpose.errors import ConfigError, SettingError, cli_flag, user_facing_main
from ioi_superpose.results.analysis import distribution
from ioi_superpose.results.caveats import alpha_headline, prune_caveat
from ioi_superpose.results.evaluation_table import evaluation_table, stage_set_names
from ioi_superpose.results.pareto import pareto_figures
from ioi_superpose.results.summary import RunWriter, build_summary, write_corpus_examples
from ioi_superpose.tasks.base import Task, TaskPrompts
from ioi_superpose.tasks.datamodule import TaskDataModule, check_roles_for_family
from ioi_superpose.training.system import HeadSuperposition, superposition_module

TRAINER_DEFAULTS = {
    "max_epochs": 5,
    "log_every_n_steps": 5,
    "default_root_dir": "runs",
    "enable_model_summary": False,  # a table of the 8 to 1,728 trainable weights of α says nothing
    # The datamodule shards the data itself: seeded, resumable order, and no padding of evaluation sets.
    "use_distributed_sampler": False,
    "logger": {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        "init_args": {"save_dir": "runs", "name": "ioi_superpose"},
    },
}
LINKED_MODEL_ARGUMENTS = ("test_sets",)
"""Model arguments the CLI sets from the datamodule, never from the command line or a checkpoint."""
TRAINING_DATA_ARGUMENTS = (
    "corruption", "n_train", "batch_size", "held_out_templates", "held_out_name_fraction", "seed",
)  # fmt: skip
"""Data arguments that decide the training prompts and their order: a resumed run must keep them. The others
(n_val, n_test, off_distribution, num_workers) only change what is evaluated, or how fast."""


class SuperposeCLI(OneLineParseErrors, CheckedCLI):
    command = "train"

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # One model name for both: the datamodule tokenizes with the model's tokenizer.
        parser.link_arguments("model.model_name", "data.model_name")
        parser.link_arguments("data.test_set_names", "model.test_sets", apply_on="instantiate")
        parser.add_lightning_class_args(BestAndLastCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.monitor": "val/loss", "checkpoint.mode": "min", "checkpoint.save_last": True})
        parser.add_lightning_class_args(CoefficientPlots, "coefficient_plots")
        # Options only, not a callback: the table is made once, in `after_fit`, from the final combination.
        parser.add_class_arguments(MaxActivatingOptions, "max_activating")

    def before_instantiate_classes(self) -> None:
        if self.subcommand:  # validate, test and a resumed fit log into their checkpoint's run directory
            log_into_run_directory(self.config[self.subcommand])

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        """The Trainer, with the baselines the config lists one by one joined into one callback
        (`join_baselines`): the combinations' rankings are the other baselines' scores of the same call."""
        trainer = super().instantiate_trainer(**kwargs)
        trainer.callbacks[:] = join_baselines(trainer.callbacks)
        if self.subcommand:
            keep_the_runs_config(trainer, self.subcommand, resumed=bool(self.config[self.subcommand].get("ckpt_path")))
        return trainer

    def _parse_ckpt_path(self) -> None:
        """Lightning replaces the model's settings by those stored in `--ckpt_path`, silently. Ours
        refuses a checkpoint whose settings differ from the ones asked for, naming each difference, and
        a file that is not a readable checkpoint."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt_path:
            return
        if not Path(ckpt_path).is_file():
            raise ConfigError(
                f"--ckpt_path {ckpt_path}: no such file. Give a checkpoint written by a run, e.g. "
                "runs/…/checkpoints/last.ckpt."
            )
        try:
            checkpoint = torch.load(ckpt_path, weights_only=True, map_location="cpu")
        except Exception as error:  # truncated, not a torch file, or not ours
            raise ConfigError(
                f"--ckpt_path {ckpt_path} is not a readable checkpoint ({type(error).__name__}: "
                f"{str(error).splitlines()[0] if str(error) else 'no details'}). It may be truncated (a run "
                "killed while saving); use another checkpoint of the run, e.g. its last.ckpt."
            ) from None
        stored = checkpoint if isinstance(checkpoint, dict) else {}
        saved = dict(stored.get("hyper_parameters", {}))
        asked = self.config[subcommand]["model"]
        differences = [
            f"--model.{key}: the checkpoint has {value!r}, this run asks for {asked.get(key)!r}"
            for key, value in saved.items()
            if not key.startswith("_")
            and key not in LINKED_MODEL_ARGUMENTS
            and key in asked
            and _comparable(asked.get(key)) != _comparable(value)
        ]
        # The training prompts too: resuming on other prompts would continue another run's α silently.
        saved_data, asked_data = dict(stored.get("datamodule_hyper_parameters", {})), self.config[subcommand]["data"]
        differences += [
            f"--data.{key}: the checkpoint has {saved_data[key]!r}, this run asks for {asked_data.get(key)!r}"
            for key in TRAINING_DATA_ARGUMENTS
            if key in saved_data
            and key in asked_data
            and _comparable(asked_data.get(key)) != _comparable(saved_data[key])
        ]
        if differences:
            raise ConfigError(
                f"--ckpt_path {ckpt_path} was saved by a run with other settings:\n  "
                + "\n  ".join(differences)
                + "\nResume with the settings the checkpoint was made with (its run's config.yaml), or start a "
                "new run without --ckpt_path."
            )

    def __init__(self, *positional: Any, args: Sequence[str] | None = None, **kwargs: Any) -> None:
        self.argv = list(args) if isinstance(args, (list, tuple)) else sys.argv[1:]
        """The command line, for the resume command printed when a run is stopped (`ExactResume`)."""
        refuse_flags_replaced_by_config(self.argv)
        super().__init__(*positional, args=args, **kwargs)

    def before_validate(self) -> None:
        self._say_if_untrained("validate")
        self._tables_off("validate")

    def before_test(self) -> None:
        self._say_if_untrained("test")
        self._tables_off("test")

    def _tables_off(self, subcommand: str) -> None:
        """Lightning's per-dataloader tables off (our per-set lines replace them), unless --verbose is given."""
        if not any(arg.startswith("--verbose") for arg in self.argv):
            self.config_init[subcommand]["verbose"] = False

    def after_validate(self) -> None:
        self._print_evaluation("val")

    def after_test(self) -> None:
        self._print_evaluation("test")

    def _print_evaluation(self, stage: str) -> None:
        """Per evaluation set, the named figures (Lightning's unnamed per-dataloader tables are off)."""
        if self.trainer.is_global_zero:
            metrics = {key: float(value) for key, value in self.trainer.callback_metrics.items()}
            print(evaluation_table(metrics, stage, stage_set_names(stage, self.datamodule.test_set_names),
                                   self.datamodule.task.metric))  # fmt: skip
            if self.trainer.log_dir:
                print(f"  {'logged to':<15} {self.trainer.log_dir}")

    def _say_if_untrained(self, subcommand: str) -> None:
        """Without --ckpt_path, validate / test evaluate α as `--model.init` made it: say so, before the numbers."""
        if not self.config[subcommand].get("ckpt_path"):
            init = self.config[subcommand]["model"].get("init")
            print(
                f"note: {subcommand} without --ckpt_path evaluates the initial α (every weight --model.init = "
                f"{init}; no optimisation step taken), not a learned one. Pass --ckpt_path "
                "runs/…/checkpoints/last.ckpt to evaluate a trained α."
            )

    def before_fit(self) -> None:
        self.trainer.callbacks.append(ExactResume(self.argv))
        family = self.model.config.family.combination
        check_roles_for_family(family, self.model.combination.reads_roles, self.datamodule.task)
        self.datamodule.setup("fit")  # every set's prompts now: one too long for the model fails before training
        for name, prompts in self.datamodule.splits.items():
            check_token_ids(self.model.frozen, prompts.clean_tokens, f"the {name} set's prompts")
        if self.datamodule.hparams.get("corpus") and self.model.config.family.combination == "rotation":
            raise ConfigError(
                "--data.corpus ranks positions by head weights; --model.combination rotation learns directions, "
                "not head weights: leave --data.corpus unset for rotation runs."
            )
        if self.model.config.prune.scrub is not None:
            check_scrub(self.model.config.prune.scrub, self.model, self.datamodule.task)

    def after_fit(self) -> None:
        """Evaluate the final α on validation and every test set, then write the run's results."""
        if self.trainer.interrupted:
            return
        write_results(self.trainer, self.model, self.datamodule, self.config[self.subcommand].as_dict())


def check_scrub(path: str, model: HeadSuperposition, task: Task) -> None:
    """`--model.scrub`, before training: the file's format, its heads the model's, its features the run's task's (the
    datamodule's prompts; `analyses.scrubbing.learned.check_scrub_file`)."""
    try:
        check_scrub_file(path, model.frozen, task.feature_names, task.name)
    except ConfigError as error:
        raise SettingError("scrub", "$scrub: " + str(error).replace("$", "$$")) from None


def scrub_sets(datamodule: TaskDataModule, n_train: int) -> dict[str, TaskPrompts]:
    """What `--model.scrub` scores the learned set on: the first `n_train` training prompts and the validation
    prompts, each with its task's features (`TaskDataModule.features`)."""
    return {
        "train": TaskPrompts(batch=datamodule.splits[TRAIN_SET], features=datamodule.features(TRAIN_SET))[:n_train],
        "val": TaskPrompts(batch=datamodule.splits[VAL_SET], features=datamodule.features(VAL_SET)),
    }


def write_results(
    trainer: L.Trainer,
    model: HeadSuperposition,
    datamodule: TaskDataModule,
    config: dict,
    baselines: Sequence[BaselineResult] | None = None,
) -> None:
    """After fit: the work that follows it (`analyses.post_fit.after_fit`: rotation's dimension count, pruning, the
    circuit criteria, head types, as the settings ask), then evaluate `model`'s final α on validation and every
    test set, write the run directory (`trainer`'s log dir) and print where. `config`: the run's parsed settings
    (`--max_activating.*` among them).

    `baselines`: the run's baseline results; None: those its `Baselines` callback computed at fit start. A
    member of a batched fit (`ioi_superpose.cli.train_batched`), whose trainer did not fit, is given its
    group's (`compute.compute_baselines`, once per group); their figures go to its TensorBoard here."""
    # Every process runs it alike (the same first training prompts), before the collective evaluation below.
    model.to(trainer.strategy.root_device)
    datamodule.setup("fit")  # a batched member's own datamodule was not the one the group's fit set up
    prune = model.config.prune
    scrubbed = scrub_sets(datamodule, prune.prune_prompts) if prune.scrub is not None else None
    with stage_threads(trainer):  # the run's thread count (TorchThreads), as the Trainer's stages have
        after = after_fit(model.fitted(), datamodule.splits[TRAIN_SET], datamodule.hparams.batch_size, cli_flag,
                          scrubbed, datamodule.task.name)  # fmt: skip
    val_metrics = trainer.validate(model, datamodule=datamodule, verbose=False)[0]
    test_metrics: dict[str, float] = {}
    for per_loader in trainer.test(model, datamodule=datamodule, verbose=False):
        test_metrics.update(per_loader)
    run_dir = trainer.log_dir  # a collective call under DDP: every rank makes it, then rank 0 writes
    if not trainer.is_global_zero:
        return
    if baselines is None:
        baselines = fitted_baselines(trainer)
    else:
        log_baselines(trainer, baselines)
    # Each stage ends by moving the module to the CPU: the summary's own runs go back to the device.
    model.to(trainer.strategy.root_device).eval()
    with stage_threads(trainer):  # the run's thread count (TorchThreads) for the work outside Trainer stages too
        _write_results(trainer, model, datamodule, config, baselines, val_metrics, test_metrics, run_dir, after)


def _write_results(
    trainer: L.Trainer, model: HeadSuperposition, datamodule: IOIDataModule, config: dict,
    baselines: Sequence[BaselineResult], val_metrics: dict, test_metrics: dict, run_dir: str | None, after: AfterFit,
) -> None:  # fmt: skip
    fitted = model.fitted()
    sets = [VAL_SET, *datamodule.test_set_names]
    recoveries = {name: per_prompt_recoveries(fitted, datamodule.splits[name]) for name in sets}
    per_prompt = {name: distribution(values) for name, values in recoveries.items()}
    steps = trainer.global_step if model.steps_trained is None else model.steps_trained  # a batched member: its group's
    summary = build_summary(
        fitted, val_metrics, test_metrics, datamodule.test_set_names, config, baselines, per_prompt, steps=steps,
        after=after, metric=datamodule.task.metric,
    )  # fmt: skip
    for set_name, figure in pareto_figures([summary]).items():  # this run's point on every set's front
        log_figure(trainer, f"pareto/{set_name}", figure)
    if run_dir is None:  # fast_dev_run and logger=False runs keep no files
        print("No run directory (fast_dev_run or no logger): results not written.")
        return
    # The table reads the final combination (after pruning), like the summary.
    max_activating = MaxActivatingOptions(**config["max_activating"])
    # Before RunWriter: its summary.json, written last, marks the run directory complete.
    corpus_paths = (write_corpus_examples(fitted, datamodule.hparams.corpus, run_dir, max_activating.k)
                    if datamodule.hparams.get("corpus") else {})  # fmt: skip
    # The table's corpus is drawn by IOI's generators (its names, templates, corruptions): IOI runs only.
    examples = max_activating.run(fitted, datamodule) if datamodule.task.name == "ioi" else None
    if examples is None and datamodule.task.name != "ioi" and max_activating.per_set:
        print(f"note: no max-activating table: its corpus is drawn by IOI's generators, and this run's task is "
              f"{datamodule.task.name!r}.")  # fmt: skip
    figures, files = run_figures(trainer, fitted, summary, recoveries, datamodule.splits[VAL_SET])
    paths = RunWriter(run_dir).write(fitted, summary, baselines, examples, figures, files)
    paths.update(corpus_paths)
    recovery = summary.recovery

    def shown(value: float | None) -> str:
        return "n/a (clean ≈ corrupted)" if value is None else f"{value:.3f}"

    what = alpha_headline(steps, pruned=bool(summary.prune and summary.prune.get("reached")))
    print(
        f"\n{what}: L0 = {summary.l0} {UNITS.get(summary.combination, 'heads')} "
        f"({summary.n_heads_total} heads in the model), "
        f"val recovery {shown(recovery.val)}; test recovery "
        + ", ".join(f"{name} {shown(value)}" for name, value in recovery.test.items())
    )
    shortfall = prune_caveat(summary.prune)
    if shortfall:
        print(shortfall)
    for name, path in paths.items():
        print(f"  {name:<15} {path}")
    print(f"  {'tensorboard':<15} tensorboard --logdir {Path(run_dir).parent}")


def fitted_baselines(trainer: L.Trainer) -> list[BaselineResult]:
    """The results the trainer's `Baselines` callbacks computed at fit start, in order."""
    callbacks = [callback for callback in trainer.callbacks if isinstance(callback, Baselines)]
    if any(callback.results is None for callback in callbacks):
        raise RuntimeError("write_results after a trainer that did not fit: pass the run's baselines.")
    return [result for callback in callbacks for result in callback.results or ()]


UNITS = {"per_position": "(head, role) units", "mixing": "map entries (target, source head)"}
"""What L0 counts for the families whose units are not heads (a mixing L0 can exceed the number of heads)."""


def _comparable(value: object) -> object:
    """Config values as the parser and a checkpoint hold them (tuples become lists in YAML)."""
    return list(value) if isinstance(value, tuple) else value


@user_facing_main
def main(args: list[str] | None = None) -> None:
    quiet_console()
    build_cli(args)


def build_cli(args: list[str] | None, cli_class: type[SuperposeCLI] = SuperposeCLI) -> SuperposeCLI:
    """The training CLI on `args` (`cli.options_page` builds it with a subclass that stops once its parsers exist)."""
    return cli_class(
        superposition_module,
        TaskDataModule,
        trainer_defaults=TRAINER_DEFAULTS,
        seed_everything_default=0,
        args=args,
        parser_kwargs=lightning_parser_kwargs("train", __doc__),
    )


if __name__ == "__main__":
    main()

"""`python -m ioi_superpose.train {fit,validate,test} --config experiments/….yaml`

Learns a sparse head combination on IOI with a frozen model. After `fit`, the run directory (printed at
the end) holds `summary.json`, `coefficients.pt`, `coefficients.png`, checkpoints and TensorBoard logs.
"""

from __future__ import annotations

import sys
from pathlib import Path

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from ioi_superpose.callbacks import CoefficientPlots, HeadBaseline
from ioi_superpose.data.datamodule import IOIDataModule
from ioi_superpose.errors import UserFacingError
from ioi_superpose.results import build_summary, write_run_results
from ioi_superpose.system import HeadSuperposition

TRAINER_DEFAULTS = {
    "max_epochs": 5,
    "log_every_n_steps": 5,
    "default_root_dir": "runs",
    "logger": {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        "init_args": {"save_dir": "runs", "name": "ioi_superpose"},
    },
}


class SuperposeCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # One model name for both: the datamodule tokenizes with the model's tokenizer.
        parser.link_arguments("model.model_name", "data.model_name")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {"checkpoint.monitor": "val/loss", "checkpoint.mode": "min", "checkpoint.save_last": True}
        )
        parser.add_lightning_class_args(CoefficientPlots, "coefficient_plots")

    def after_fit(self) -> None:
        """Evaluate the final α on validation and every test set, then write the run's results."""
        if self.trainer.interrupted:
            return
        val_metrics = self.trainer.validate(self.model, datamodule=self.datamodule, verbose=False)[0]
        test_metrics: dict[str, float] = {}
        for per_loader in self.trainer.test(self.model, datamodule=self.datamodule, verbose=False):
            test_metrics.update(per_loader)
        run_dir = self.trainer.log_dir  # a collective call under DDP: every rank must make it
        if not self.trainer.is_global_zero:
            return
        config = self.config.get(self.config["subcommand"]).as_dict()
        alpha = self.model.combination.coefficients.detach()
        l0 = self.model.combination.l0(self.model.hparams.l0_threshold)
        baselines = {
            callback.name: callback.summary(alpha.cpu(), l0)
            for callback in self.trainer.callbacks
            if isinstance(callback, HeadBaseline)
        }
        summary = build_summary(
            self.model, val_metrics, test_metrics, self.datamodule.test_set_names, config, baselines
        )
        if run_dir is None:  # fast_dev_run and logger=False runs keep no files
            print("No run directory (fast_dev_run or no logger): results not written.")
            return
        paths = write_run_results(Path(run_dir), self.model, summary)
        recovery = summary["recovery"]
        print(
            f"\nLearned α: L0 = {summary['l0']} of {summary['n_heads_total']} heads, "
            f"val recovery {recovery['val']:.3f}; test recovery "
            + ", ".join(f"{name} {value:.3f}" for name, value in recovery["test"].items())
        )
        for name, path in paths.items():
            print(f"  {name:<12} {path}")
        print(f"  {'tensorboard':<12} tensorboard --logdir {Path(run_dir).parent}")


def main(args: list[str] | None = None) -> None:
    try:
        SuperposeCLI(
            HeadSuperposition,
            IOIDataModule,
            trainer_defaults=TRAINER_DEFAULTS,
            seed_everything_default=0,
            args=args,
            parser_kwargs={"description": __doc__},
        )
    except UserFacingError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

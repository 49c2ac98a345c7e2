"""The checks every training entry point (`train`, `train_toy`, a batched group's members) makes on its parsed
settings before any work (issue 24): the seed, the trainer options Lightning would refuse only with a traceback (or
only after the model has loaded), and the directories the run will write. A failing check is one `error:` line that
names the option and the fix (`errors.ConfigError`); a trainer setting Lightning still refuses when it builds the
Trainer is turned into the same kind of line (`CheckedCLI.instantiate_trainer`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from ioi_superpose.errors import ConfigError
from ioi_superpose.files import check_writable_dir
from ioi_superpose.seeds import check_seed

ACCELERATORS_NEEDING = {
    "gpu": ("a CUDA GPU", torch.cuda.is_available),
    "cuda": ("a CUDA GPU", torch.cuda.is_available),
    "mps": ("Apple's MPS", lambda: torch.backends.mps.is_available()),
}
"""Accelerators this machine may lack, what they need and how to tell (`--trainer.accelerator`)."""


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _at_least(minimum: int, allow_none: bool = False) -> tuple[Any, str]:
    def ok(value: Any) -> bool:
        return (allow_none and value is None) or (_whole(value) and value >= minimum)

    return ok, f"a whole number >= {minimum}" + (" or null" if allow_none else "")


def _steps_limit(value: Any) -> bool:
    return value is None or (_whole(value) and value >= -1)


def _non_negative(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0)


def _positive(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0)


TRAINER_RULES: dict[str, tuple[Any, str]] = {
    "max_steps": (_steps_limit, "-1 (no limit) or a whole number >= 0"),
    "max_epochs": (_steps_limit, "-1 (no limit), null or a whole number >= 0"),
    "min_steps": _at_least(0, allow_none=True),
    "min_epochs": _at_least(0, allow_none=True),
    "num_nodes": _at_least(1),
    "accumulate_grad_batches": _at_least(1),
    "log_every_n_steps": _at_least(0, allow_none=True),
    "check_val_every_n_epoch": _at_least(1, allow_none=True),
    "num_sanity_val_steps": _at_least(-1, allow_none=True),
    "val_check_interval": (_positive, "a number > 0 or null"),
    "limit_train_batches": (_non_negative, "a number >= 0 or null"),
    "limit_val_batches": (_non_negative, "a number >= 0 or null"),
    "limit_test_batches": (_non_negative, "a number >= 0 or null"),
    "gradient_clip_val": (_non_negative, "a number >= 0 or null"),
}
"""Trainer options checked by value: option → (test, what it must be). Lightning checks these only when it builds
the Trainer (after the model loaded) or when the loop starts, with a traceback."""


def check_devices(devices: Any) -> None:
    """`--trainer.devices`: "auto", a count >= 1, -1 (all), or a non-empty list of device indices."""
    text = devices.strip() if isinstance(devices, str) else None
    if text is not None and (text == "auto" or text == "-1"):
        return
    if text is not None and text.isdigit():
        devices = int(text)
    elif text is not None:
        parts = [part.strip() for part in text.split(",") if part.strip()]
        devices = [int(part) for part in parts] if parts and all(p.isdigit() for p in parts) else text
    ok = (_whole(devices) and (devices >= 1 or devices == -1)) or (
        isinstance(devices, (list, tuple)) and len(devices) > 0 and all(_whole(d) and d >= 0 for d in devices)
    )
    if not ok:
        raise ConfigError(
            f"--trainer.devices {devices!r} runs on no device: give a count >= 1 (e.g. 1), -1 (every device), "
            "auto, or a list of device indices (e.g. [0, 1])."
        )


def check_trainer(trainer: Mapping[str, Any]) -> None:
    """Every `TRAINER_RULES` option, the devices and the accelerator of the parsed `trainer` settings."""
    for name, (ok, rule) in TRAINER_RULES.items():
        if name in trainer and not ok(trainer[name]):
            raise ConfigError(f"--trainer.{name} must be {rule}, got {trainer[name]!r}.")
    if "devices" in trainer:
        check_devices(trainer["devices"])
    accelerator = trainer.get("accelerator")
    if isinstance(accelerator, str) and accelerator in ACCELERATORS_NEEDING:
        needs, available = ACCELERATORS_NEEDING[accelerator]
        if not available():
            raise ConfigError(
                f"--trainer.accelerator {accelerator} needs {needs}, and this machine has none (torch sees no "
                "device). Use --trainer.accelerator cpu, or auto (a GPU when there is one)."
            )


def logger_dirs(trainer: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(option, directory) of every place the run writes: each logger's `save_dir` and the trainer's root dir."""
    loggers = trainer.get("logger")
    for index, logger in enumerate(loggers if isinstance(loggers, list) else [loggers]):
        logger = logger.as_dict() if hasattr(logger, "as_dict") else logger
        if isinstance(logger, Mapping):
            save_dir = (logger.get("init_args") or {}).get("save_dir")
            if save_dir:
                suffix = f"[{index}]" if isinstance(loggers, list) else ""
                yield f"--trainer.logger{suffix}.init_args.save_dir", str(save_dir)
    if trainer.get("default_root_dir"):
        yield "--trainer.default_root_dir", str(trainer["default_root_dir"])


class CheckedCLI(LightningCLI):
    """A LightningCLI that checks its parsed settings before any work (module docstring)."""

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        settings = self.config[subcommand] if subcommand else self.config
        self.check_settings(settings.as_dict() if hasattr(settings, "as_dict") else dict(settings))

    def check_settings(self, settings: Mapping[str, Any]) -> None:
        """The checks of every entry point; a subclass adds its own after these."""
        seed = settings.get("seed_everything")
        if seed is not None and not isinstance(seed, bool):
            check_seed("--seed_everything", seed)
        trainer = settings.get("trainer") or {}
        check_trainer(trainer)
        for option, directory in logger_dirs(trainer):
            check_writable_dir(directory, option)

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        """The Trainer; a setting Lightning refuses (one `check_trainer` does not know) is one `error:` line."""
        try:
            return super().instantiate_trainer(**kwargs)
        except (MisconfigurationException, ValueError) as error:  # Lightning raises both for a setting it refuses
            raise ConfigError(f"a --trainer setting is refused by Lightning: {error} Fix that option.") from None

"""Every error the entry points report as one clear message and a non-zero exit, without a traceback.

Each message names the problem and the fix. The CLIs catch `UserFacingError`; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from string import Template
from typing import ParamSpec, TypeVar


class UserFacingError(Exception):
    """An error caused by the user's input or environment; its message says how to fix it."""


class ConfigError(UserFacingError, ValueError):
    """A setting is invalid; the message names the option and how to fix it."""


class SettingError(ConfigError):
    """A setting (a field of a config dataclass, `fitting/settings.py`) is invalid.

    The message is a `string.Template` whose `$field` placeholders name settings. `str()` names them as the
    Python API and the dataclasses do (`l1`); `named(rename)` names them as a caller's user knows them: the
    CLIs give `--model.l1`, `learn_combination` its own argument names (`seed` for `gate_seed`).
    """

    def __init__(self, field: str, template: str, rename: Callable[[str], str] | None = None) -> None:
        self.field, self.template, self.rename = field, template, rename or (lambda name: name)
        super().__init__(self._render())

    def _render(self) -> str:
        return Template(self.template).safe_substitute(_Names(self.rename))

    def __str__(self) -> str:
        return self._render()

    def named(self, rename: Callable[[str], str]) -> "SettingError":
        """The same error with every setting named by `rename` (applied to the field names)."""
        error = SettingError(self.field, self.template, rename)
        error.__cause__, error.__traceback__ = self.__cause__, self.__traceback__
        return error


class _Names(dict):
    """Every `$name` of a message template, named by `rename`."""

    def __init__(self, rename: Callable[[str], str]) -> None:
        super().__init__()
        self.rename = rename

    def __missing__(self, key: str) -> str:
        return self.rename(key)


def cli_flag(field: str) -> str:
    """How the training CLIs name a model setting."""
    return f"--model.{field}"


def cli_message(error: UserFacingError) -> str:
    """`error`'s message as a training CLI prints it: settings named by their `--model.*` flags."""
    return str(error.named(cli_flag)) if isinstance(error, SettingError) else str(error)


class ModelLoadError(UserFacingError, RuntimeError):
    """The model could not be loaded; the message says why and how to fix it."""


class NonFiniteLossError(UserFacingError, RuntimeError):
    """Training produced a NaN or infinite loss; the message says at which step."""


class UnknownWordError(UserFacingError, KeyError):
    """A word outside a closed vocabulary; the message lists them."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0])


def user_facing_cause(error: BaseException) -> UserFacingError | None:
    """`error` itself or the first `UserFacingError` it was raised from (`__cause__` / `__context__`).

    jsonargparse wraps what a class raises while it instantiates a `subclass_mode` argument (train_toy's
    datamodule) in a `ValueError("Does not validate against any of the Union subtypes …")`; the
    user's error is still there, as the cause.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, UserFacingError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


P = ParamSpec("P")
R = TypeVar("R")


def user_facing_main(main: Callable[P, R]) -> Callable[P, R]:
    """Wrap an entry point's `main`: a user's error is one line on stderr and exit 1; nothing else is caught."""

    @functools.wraps(main)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return main(*args, **kwargs)
        except Exception as error:
            user_error = user_facing_cause(error)  # jsonargparse wraps what a class raises while it instantiates
            if user_error is None:
                raise
            print(f"error: {cli_message(user_error)}", file=sys.stderr)
            sys.exit(1)

    return wrapped

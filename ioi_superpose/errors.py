"""Every error the entry points report as one clear message and a non-zero exit, without a traceback.

Each message names the problem and the fix. The CLIs catch `UserFacingError`; anything else is a bug and
keeps its traceback.
"""


class UserFacingError(Exception):
    """An error caused by the user's input or environment; its message says how to fix it."""


class ConfigError(UserFacingError, ValueError):
    """A setting is invalid; the message names the option and how to fix it."""


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

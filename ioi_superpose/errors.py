"""Errors that the CLI reports as one clear message and a non-zero exit, without a traceback."""


class ConfigError(ValueError):
    """A setting is invalid; the message names the option and how to fix it."""

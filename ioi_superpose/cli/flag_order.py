"""Refuse a command-line flag that a later `--config` would silently replace.

jsonargparse applies arguments in order, so in `fit --model.l1 0.5 --config run.yaml` the file's `model.l1`
replaces 0.5 and the run trains with a setting the user did not ask for, exit status 0.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from ioi_superpose.errors import ConfigError


def refuse_flags_replaced_by_config(argv: Sequence[str]) -> None:
    """Raise `ConfigError` when a `--key value` comes before a `--config FILE` that sets `key`."""
    seen: list[str] = []  # the keys of the flags so far, in the order given
    tokens = iter(argv)
    for token in tokens:
        if not token.startswith("--"):
            if token in ("fit", "validate", "test", "predict"):
                seen = []  # a subcommand's flags belong to its own parser, not to a config given before it
            continue
        key, _, inline_value = token[2:].partition("=")
        if key != "config":
            seen.append(key)
            continue
        path = inline_value or next(tokens, "")
        settings = set(_keys(_load(path)))
        for flag in seen:
            if flag in settings:
                raise ConfigError(
                    f"--{flag} is given before --config {path}, which also sets {flag}: the later --config "
                    f"replaces it (arguments apply in order), so the run would silently use the file's value. "
                    f"Put --config first, e.g. `… --config {path} --{flag} …`."
                )


def _load(path: str) -> Any:
    """The config file's contents, or None when it cannot be read (jsonargparse then reports the file itself)."""
    try:
        return yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return None


def _keys(settings: Any, prefix: str = "") -> Iterator[str]:
    """Every dotted key of a nested mapping, inner nodes included (`model`, `model.l1`, …)."""
    if not isinstance(settings, dict):
        return
    for name, value in settings.items():
        key = f"{prefix}{name}"
        yield key
        yield from _keys(value, f"{key}.")

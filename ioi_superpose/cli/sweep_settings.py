"""A sweep point's settings as values: what the grid, the config file and the options after `--` set, compared as
the training CLI reads them (issue 24).

- `parse_value` / `same_value`: `true` and `True`, `null` and `~`, `1e-3` and `0.001` are one setting; `1` and
  `true` are two (a number is not a boolean).
- `split_values`: a grid's values, split at the commas between values, not inside a list (`[0],[0,1]`).
- `refuse_clashes`: an option after `--` that the grid sets would override it on every point while the points
  kept the grid's labels; one the sweep sets itself (the run directory) would be overridden in turn. Refused.
- `point_settings` / `settings_differences`: every setting a point runs with, flat (`model.l1`, …), and what
  changed between the run that made a point directory and the one about to reuse it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ioi_superpose.errors import ConfigError

SWEEP_OWNED = (
    "trainer.logger.save_dir", "trainer.logger.name", "trainer.logger.version", "trainer.enable_progress_bar",
    "ckpt_path",
)  # fmt: skip
"""Settings the sweep gives every point itself (`sweep_points.run_point`): the run directory OUT/<point>/, and the
checkpoint a stopped point resumes from (keys as `option_key` writes them)."""
_CLOSING = {"[": "]", "{": "}", "(": ")"}


def parse_value(text: str) -> Any:
    """A value as the training CLI reads it: YAML (`true`, `null`, `[0, 1]`), with `1e-3` a number (YAML 1.1
    reads a mantissa without a dot as text; jsonargparse reads it as a float); text that is neither stays text."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def canonical(value: Any) -> Any:
    """A hashable key under which equal settings are equal: numbers by value (1 == 1.0), a boolean is not a number,
    lists and mappings by their items; NaN equals NaN (one setting, written twice)."""
    if isinstance(value, bool) or value is None:
        return ("constant", value)
    if isinstance(value, (int, float)):
        return ("number", "nan" if isinstance(value, float) and math.isnan(value) else float(value))
    if isinstance(value, (list, tuple)):
        return ("list", tuple(canonical(item) for item in value))
    if isinstance(value, Mapping):
        return ("mapping", tuple(sorted((str(key), canonical(item)) for key, item in value.items())))
    return ("text", str(value))


def same_value(a: Any, b: Any) -> bool:
    return canonical(a) == canonical(b)


def split_values(text: str, spec: str) -> list[str]:
    """`text` split at the commas outside brackets and quotes: `[0],[0,1],null` → `[0]`, `[0,1]`, `null`."""
    values, current, stack, quote = [], "", [], None
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in _CLOSING:
            stack.append(_CLOSING[char])
        elif char in _CLOSING.values():
            if not stack or stack.pop() != char:
                raise ConfigError(f"--grid {spec!r}: an unmatched closing bracket {char!r}; write a list value as "
                                  "[a,b], e.g. --grid model.rotation_layers=[0],[0,1].")  # fmt: skip
        elif char == "," and not stack:
            values.append(current.strip())
            current = ""
            continue
        current += char
    if stack or quote:
        raise ConfigError(f"--grid {spec!r}: an unclosed bracket or quote; write a list value as [a,b], e.g. "
                          "--grid model.rotation_layers=[0],[0,1].")  # fmt: skip
    values.append(current.strip())
    return [value for value in values if value]


def option_key(flag: str) -> str:
    """A setting's key as the sweep compares it: `--model.init_args.l1` and `--model.l1` are one setting (jsonargparse
    accepts both), `--trainer.callbacks+=` appends to `trainer.callbacks`."""
    key = flag.lstrip("-").removesuffix("+")
    return ".".join(part for part in key.split(".") if part != "init_args")


def options(args: Sequence[str]) -> Iterator[tuple[str, str, str | None]]:
    """(flag as given, key, value text) of every `--key value` / `--key=value` in `args`; None for a flag with no
    value (the training CLI then reports it)."""
    index = 0
    while index < len(args):
        token = args[index]
        index += 1
        if not token.startswith("--"):
            continue  # a stray value or a subcommand: the training CLI reports it
        flag, sep, value = token.partition("=")
        if not sep:
            has_value = index < len(args) and not args[index].startswith("--")
            value, index = (args[index], index + 1) if has_value else (None, index)
        yield flag, option_key(flag), value


def _overlap(a: str, b: str) -> bool:
    """One setting sets the other: equal keys, or one holds the other (`model` holds `model.l1`)."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def flat(settings: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config as `{dotted key: leaf value}`, `init_args` levels dropped (as `option_key`)."""
    if not isinstance(settings, Mapping) or not settings:
        return {prefix: settings} if prefix else {}
    out: dict[str, Any] = {}
    for name, value in settings.items():
        key = prefix if name == "init_args" else f"{prefix}.{name}" if prefix else str(name)
        out.update(flat(value, key))
    return out


def read_config(path: Path) -> dict[str, Any]:
    """A YAML config file's settings, flat; an unreadable file is refused, naming it."""
    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"--config {path} cannot be read as YAML ({error}).") from None
    return flat(loaded or {})


def refuse_clashes(grid_keys: Sequence[str], extra: Sequence[str]) -> None:
    """Refuse an option after `--` that the grid sets (it would replace the grid's value on every point, under the
    grid's label), a `--config` there that sets a grid key, and an option the sweep sets itself."""
    for flag, key, value in options(extra):
        if key == "config" and value is not None:
            for setting in read_config(Path(value)):
                clash = next((grid for grid in grid_keys if _overlap(option_key(grid), setting)), None)
                if clash is not None:
                    raise ConfigError(
                        f"-- --config {value} sets {setting}, which the grid sweeps (--grid {clash}=…): it would "
                        f"replace the grid's value on every point. Remove {setting} from {value}, or drop it from "
                        "the grid."
                    )
            continue
        clash = next((grid for grid in grid_keys if _overlap(option_key(grid), key)), None)
        if clash is not None:
            raise ConfigError(
                f"{flag} after -- sets what the grid sweeps (--grid {clash}=…): it would replace the grid's value on "
                f"every point while each point kept its grid label. Give its values in the grid, or drop {flag}."
            )
        owned = next((own for own in SWEEP_OWNED if _overlap(own, key)), None)
        if owned is not None:
            raise ConfigError(
                f"{flag} after -- sets what the sweep sets for every point itself ({owned}: each point runs in "
                "OUT/<point>/ and resumes from its own checkpoint). Drop it; choose the place with --out."
            )


def point_settings(config: Path, grid: Sequence[tuple[str, str]], extra: Sequence[str]) -> dict[str, Any]:
    """Every setting a point runs with, flat: the config file's, then the grid's, then the options after `--` (a later
    one replaces an earlier one, as the training CLI applies them). `+=` options accumulate in order."""
    settings = read_config(config)
    for key, value in grid:
        settings[option_key(key)] = parse_value(value)
    for flag, key, value in options(extra):
        parsed = None if value is None else parse_value(value)
        if key == "config" and value is not None:
            settings.update(read_config(Path(value)))
        elif flag.endswith("+"):
            settings[key + "+="] = [*settings.get(key + "+=", []), parsed]
        else:
            settings[key] = parsed
    return settings


def settings_differences(before: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """`key: before → now` for every setting whose value changed, appeared or went away."""
    missing = object()
    lines = []
    for key in sorted(set(before) | set(now)):
        old, new = before.get(key, missing), now.get(key, missing)
        if old is missing or new is missing or not same_value(old, new):
            shown_old = "(not set)" if old is missing else repr(old)
            shown_new = "(not set)" if new is missing else repr(new)
            lines.append(f"{key}: {shown_old} then, {shown_new} now")
    return lines

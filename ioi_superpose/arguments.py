"""Parser mistakes as one line: a wrong choice, a misspelt flag, a missing config file.

argparse and jsonargparse answer a mistake with the whole usage (about 105 lines for `train fit`), exit status 2
and, under LightningCLI, a tip naming a command that may not exist (`train.py fit --help`). Here a mistake is a
`ConfigError` naming the flag — with the closest valid name for a misspelt one —, what is wrong with it, and the
`--help` command that lists the options; the entry points' one error wrapper (`errors.user_facing_main`) prints it
as one `error:` line with exit status 1. Standard library only: every entry point's parser imports it.
"""

from __future__ import annotations

import argparse
import difflib
import inspect
import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from ioi_superpose.errors import ConfigError

_PARSER_KEY = re.compile(r'Parser key "([^"]+)":\s*(.*)', re.DOTALL)
_LITERAL = re.compile(r"Expected a typing\.Literal\[(.*?)\]\. Got value: (.*)")
_TYPED = re.compile(r"Expected a <class '([\w.]+)'>\. Got value: (.*)")
_CHOICE = re.compile(r"argument (\S+): invalid choice: '?(.*?)'? \(choose from (.*)\)")
_ARGPARSE_VALUE = re.compile(r"argument (\S+): (.*)")
_NOT_ACCEPTED = re.compile(r"Option '([^']+)' is not accepted")
_CLASS_PATH = re.compile(r"class_path '([\w.]+)'")

CONSOLE_NAMES: dict[str, str] = {}
"""`python -m` program name → the console script's name for it (`ioi-superpose sweep`), filled by the console
script (`cli/entry.py`) so that an error names the `--help` command in the form the user typed."""


def shown_as(prog: str) -> str:
    """How the user started the program whose `python -m` name is `prog`."""
    return CONSOLE_NAMES.get(prog, prog)


def describe(message: str, options: Iterable[str] = ()) -> str:
    """A parser's error `message` as one line naming the flag; `options`: the valid option strings (for the
    closest name to a misspelt one)."""
    message = message.strip()
    if message.startswith("unrecognized arguments:"):
        tokens = message.removeprefix("unrecognized arguments:").split()
        flag = next((token for token in tokens if token.startswith("-")), tokens[0] if tokens else "")
        name = flag.split("=", 1)[0]
        if not name.startswith("-"):
            return f"unexpected argument {name!r}"
        close = difflib.get_close_matches(name, sorted(set(options)), n=1, cutoff=0.6)
        return f"{name}: no such option" + (f" (did you mean {close[0]}?)" if close else "")
    if match := _CHOICE.match(message):
        name, value, choices = match.groups()
        allowed = [choice.strip(" '\"") for choice in choices.split(",")]
        close = difflib.get_close_matches(value, allowed, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return f"{name} {value!r} is not one of {', '.join(allowed)}{hint}"
    if match := _PARSER_KEY.match(message):
        key, detail = match.groups()
        flag = f"--{key}"
        if nested := _PARSER_KEY.search(detail):  # a class_path's own argument: "--data.batch_size"
            return describe(f'Parser key "{key}.{nested.group(1)}": {nested.group(2)}', options)
        if unknown := _NOT_ACCEPTED.search(detail):  # a class_path's argument that the class does not take
            name = f"{flag}.{unknown.group(1)}"
            path = _CLASS_PATH.search(detail)
            accepted = [f"{flag}.{parameter}" for parameter in _init_parameters(path.group(1) if path else "")]
            close = difflib.get_close_matches(name, accepted, n=1, cutoff=0.6)
            return f"{name}: no such option" + (f" (did you mean {close[0]}?)" if close else "")
        if key == "config" and "does not exist" in detail:
            path = detail.split(":", 1)[-1].strip().strip("'\"")
            return f"--config {path}: no such file"
        if literal := _LITERAL.search(detail):
            allowed = [choice.strip(" '\"") for choice in literal.group(1).split(",")]
            return f"{flag} {literal.group(2).strip()}: not one of {', '.join(allowed)}"
        if typed := _TYPED.search(detail):
            return f"{flag} {typed.group(2).strip()}: expected a value of type {typed.group(1)}"
        lines = [line.strip(" -") for line in detail.splitlines() if line.strip(" -")]
        reason = next((line for line in lines if line.startswith(("Expected", "Key", "Problem", "Unable"))), None)
        return f"{flag}: {reason or (lines[0] if lines else 'invalid value')}"
    if match := _ARGPARSE_VALUE.match(message):  # argparse: "argument --seed: invalid int value: 'x'"
        return f"{match.group(1)}: {match.group(2)}"
    return " ".join(message.split())


def _init_parameters(class_path: str) -> list[str]:
    """The `__init__` parameters of an already imported class named by its dotted path (none if it is not)."""
    module_name, _, class_name = class_path.rpartition(".")
    cls = getattr(sys.modules.get(module_name), class_name, None)
    if not isinstance(cls, type):
        return []
    return [name for name in inspect.signature(cls.__init__).parameters if name != "self"]


def one_line_error(message: str, options: Iterable[str], help_with: str) -> ConfigError:
    """The error a parser's `message` becomes: what is wrong, then the command that lists the options."""
    return ConfigError(f"{describe(message, options).rstrip('.')}. See `{help_with}`.")


class OneLineParser(argparse.ArgumentParser):
    """An `argparse.ArgumentParser` whose mistakes are one-line `ConfigError`s (see the module docstring).

    `prog` is the `python -m` command (`python -m ioi_superpose.sweep`); the `--help` command in a message follows
    how the process was started (`ioi-superpose sweep --help` from the console script)."""

    _given: Sequence[str] = ()

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        self._given = list(sys.argv[1:] if args is None else args)
        return super().parse_args(args, namespace)

    def error(self, message: str) -> Any:  # argparse calls this for every mistake, then would exit 2
        unknown = self._unknown_flags()
        if unknown and not message.startswith("unrecognized arguments"):
            # argparse reports a missing required option before a misspelt one (`--outt` for `--out`): name the latter
            message = f"unrecognized arguments: {' '.join(unknown)}"
        raise one_line_error(message, self._option_string_actions, f"{shown_as(self.prog)} --help")

    def _unknown_flags(self) -> list[str]:
        """The `--flags` given (before a `--`) that are no option's name nor an unambiguous prefix of one."""
        flags = []
        for token in self._given:
            if token == "--":
                break
            name = token.split("=", 1)[0]
            if name.startswith("--") and name not in self._option_string_actions:
                prefixed = [option for option in self._option_string_actions if option.startswith(name)]
                if len(prefixed) != 1 or not self.allow_abbrev:
                    flags.append(name)
        return flags

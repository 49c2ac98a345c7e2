"""`--help` without torch, parser mistakes in one line.

Every entry point's plain `--help` prints a text stored in the package, generated from the live parser (a test
regenerates and compares, so a changed flag fails until the texts are regenerated), without importing torch,
Lightning or TransformerLens. A wrong choice, a misspelt flag or a missing config file is one `error:` line naming
the flag (with the closest valid name) and the `--help` command that lists the options, exit status 1.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

from ioi_superpose.arguments import describe
from ioi_superpose.cli import entry
from ioi_superpose.cli.stored_help import HELP_DIR
from tests.helpers import EXPERIMENTS, REPO

HEAVY = ("torch", "lightning", "transformer_lens")
SHIMS = {"train": "train", "toy": "train_toy", "sweep": "sweep", "report": "report", "benchmark": "benchmark",
         "train-batched": "train_batched"}  # fmt: skip
HELP_REQUESTS = [(command, subcommand) for command in entry.COMMANDS
                 for subcommand in (None, *entry.COMMANDS[command].subcommands)]  # fmt: skip
SMOKE_HELP = ("train", "fit")
"""The one help request the smoke subset checks (the others are the same path)."""


def test_the_stored_help_texts_are_the_live_parsers_help():
    """Regenerated from the live parsers (each LightningCLI in a fresh process) and compared with cli/help/."""
    result = subprocess.run([sys.executable, "-m", "ioi_superpose.cli.help_texts", "--check"], cwd=REPO,
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(list(HELP_DIR.glob("*.txt"))) == len(HELP_REQUESTS)


def _loaded_after(code: str) -> tuple[str, list[str]]:
    """Run `code` in a fresh interpreter; (its stdout, the heavy packages it had imported when it exited)."""
    probe = ("import atexit, sys\natexit.register(lambda: print('LOADED', sorted({m.split('.')[0] for m in sys.modules} "
             f"& {set(HEAVY)!r}), file=sys.stderr))\n" + code)  # fmt: skip
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    loaded = [line for line in result.stderr.splitlines() if line.startswith("LOADED")]
    return result.stdout, eval(loaded[-1].removeprefix("LOADED "))


@pytest.mark.parametrize("command, subcommand", [pytest.param(*request, marks=pytest.mark.smoke)
                                                if request == SMOKE_HELP else request for request in HELP_REQUESTS])
def test_help_imports_neither_torch_nor_lightning(command, subcommand):
    args = [subcommand, "--help"] if subcommand else ["--help"]
    for code in (  # `python -m ioi_superpose.X …` and `ioi-superpose COMMAND …`
        f"import runpy; sys.argv = ['x', *{args!r}]; runpy.run_module('ioi_superpose.{SHIMS[command]}', "
        "run_name='__main__')",
        f"from ioi_superpose.cli.entry import main; main([{command!r}, *{args!r}])",
    ):
        out, loaded = _loaded_after(code)
        assert loaded == [] and out.startswith("usage: ")
        assert out == (HELP_DIR / (f"{command}.{subcommand}.txt" if subcommand else f"{command}.txt")).read_text()


def _error_of(args, capsys, console_script=False):
    """(exit status, stderr) of an entry point called in-process as `python -m` or as the console script."""
    with pytest.raises(SystemExit) as exit_info:
        if console_script:
            entry.main(args)
        else:
            entry.run(args[0], args[1:])
    return exit_info.value.code, capsys.readouterr().err


TOY = str(EXPERIMENTS / "toy_ioi.yaml")
MISTAKES = [
    (["train", "fit", "--config", TOY, "--data.corruption", "swap"],
     "error: --data.corruption swap: not one of name_swap, abc. See `python -m ioi_superpose.train fit --help`."),
    (["train", "fit", "--config", TOY, "--model.l1x", "0.1"],
     "error: --model.l1x: no such option (did you mean --model.l1?). See `python -m ioi_superpose.train fit --help`."),
    (["train", "validate", "--config", "no/such.yaml"],
     "error: --config {cwd}/no/such.yaml: no such file. See `python -m ioi_superpose.train validate --help`."),
    (["train", "fti"], "error: subcommand 'fti' is not one of fit, validate, test, predict (did you mean fit?). "
     "See `python -m ioi_superpose.train --help`."),
    (["toy", "fit", "--config", str(EXPERIMENTS / "toy_ioi_model.yaml"), "--data.batch_sise", "3"],
     "error: --data.batch_sise: no such option (did you mean --data.batch_size?). "
     "See `python -m ioi_superpose.train_toy fit --help`."),
    (["sweep", "--config", TOY, "--outt", "runs/x"],
     "error: --outt: no such option (did you mean --out?). See `python -m ioi_superpose.sweep --help`."),
    (["benchmark", "--suite", "gtp2"],
     "error: --suite 'gtp2' is not one of small, gpt2 (did you mean gpt2?). See `python -m ioi_superpose.benchmark --help`."),
    (["report", "runs/x", "--out", "y", "--k"], "error: --k: no such option. See `python -m ioi_superpose.report --help`."),
]  # fmt: skip


@pytest.mark.parametrize("args, expected", MISTAKES, ids=[" ".join(a[:2] + a[-2:-1]) for a, _ in MISTAKES])
def test_a_parser_mistake_is_one_line_naming_the_flag_and_the_help_command(args, expected, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    code, err = _error_of(args, capsys)
    assert (code, err) == (1, expected.format(cwd=REPO) + "\n")


@pytest.mark.smoke
def test_the_console_script_names_its_own_help_command_without_lightnings_args_warning(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "argv", ["ioi-superpose", "train", "fit", "--config", TOY, "--model.l1x", "0.1"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, err = _error_of(sys.argv[1:], capsys, console_script=True)
    assert code == 1
    assert err == "error: --model.l1x: no such option (did you mean --model.l1?). See `ioi-superpose train fit --help`.\n"
    assert not [w for w in caught if "args parameter" in str(w.message)]
    code, err = _error_of(["sweep", "--config", TOY, "--outt", "x"], capsys, console_script=True)
    assert err.endswith("See `ioi-superpose sweep --help`.\n")
    code, err = _error_of(["sweep", "--config", TOY, "--outt", "x"], capsys)  # the console-script names are per call
    assert err.endswith("See `python -m ioi_superpose.sweep --help`.\n")


def test_a_mistyped_command_of_the_console_script_is_one_line(capsys):
    code, err = _error_of(["trian"], capsys, console_script=True)
    assert code == 1 and err.count("\n") == 1 and "unknown command 'trian' (did you mean train?)" in err


@pytest.mark.parametrize("message, expected", [
    ('Parser key "trainer.max_steps":\n  Expected a <class \'int\'>. Got value: abc',
     "--trainer.max_steps abc: expected a value of type int"),
    ('Parser key "data":\n  Errors:\n    - Problem with given class_path \'x.Y\':\n        Parser key "seed":\n'
     "          Expected a <class 'int'>. Got value: q", "--data.seed q: expected a value of type int"),
    ("argument --seed: invalid int value: 'x'", "--seed: invalid int value: 'x'"),
    ("unrecognized arguments: stray", "unexpected argument 'stray'"),
])  # fmt: skip
def test_describe_names_the_flag(message, expected):
    assert describe(message) == expected

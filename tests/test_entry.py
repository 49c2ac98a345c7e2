"""One console script, one error wrapper: every entry point answers --help, a user's error is one line and
exit 1, anything else keeps its traceback; the report loads no Lightning, TransformerLens or torch."""

from __future__ import annotations

import subprocess
import sys

import pytest
import tomllib

from ioi_superpose.cli.entry import COMMANDS, main
from ioi_superpose.errors import ConfigError, user_facing_main
from tests.helpers import REPO


def test_the_console_script_is_the_dispatcher():
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"ioi-superpose": "ioi_superpose.cli.entry:main"}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_answers_help_without_running(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out.lower()


def test_the_dispatcher_lists_its_commands_and_refuses_an_unknown_one(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(f"  {command} " in out for command in COMMANDS)
    with pytest.raises(SystemExit) as exit_info:
        main(["trian"])
    assert exit_info.value.code == 1
    assert "unknown command 'trian'" in capsys.readouterr().err


def test_the_wrapper_reports_user_errors_even_when_wrapped_and_lets_bugs_through(capsys):
    @user_facing_main
    def fails(error: Exception) -> None:
        raise error

    with pytest.raises(SystemExit) as exit_info:
        fails(ConfigError("--model.l1 must be >= 0"))
    assert exit_info.value.code == 1 and capsys.readouterr().err == "error: --model.l1 must be >= 0\n"
    try:  # as jsonargparse wraps what a class raises while it instantiates
        raise ConfigError("--data.n_train must be > 0")
    except ConfigError as cause:
        wrapped = ValueError("Does not validate against any of the Union subtypes")
        wrapped.__cause__ = cause
    with pytest.raises(SystemExit):
        fails(wrapped)
    assert capsys.readouterr().err == "error: --data.n_train must be > 0\n"
    with pytest.raises(ZeroDivisionError):  # a bug is not a user's error: its traceback stays
        fails(ZeroDivisionError("bug"))


def test_the_console_script_runs_a_command_as_python_m_does(tmp_path):
    """`ioi-superpose report` and `python -m ioi_superpose.report` give the same error and exit status."""
    commands = [[sys.executable, "-m", "ioi_superpose.cli.entry", "report"], [sys.executable, "-m", "ioi_superpose.report"]]
    results = [subprocess.run([*c, str(tmp_path), "--out", str(tmp_path / "r")], capture_output=True, text=True,
                              cwd=REPO) for c in commands]  # fmt: skip
    assert [r.returncode for r in results] == [1, 1]
    assert results[0].stderr == results[1].stderr and "neither a summary.json" in results[0].stderr


def test_the_report_loads_no_lightning_transformer_lens_or_torch():
    code = "import sys, ioi_superpose.results.report; print(sorted({'lightning', 'transformer_lens', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert out.strip() == "[]"

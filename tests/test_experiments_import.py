"""Every script in experiments/ imports: a module moved in the package breaks a script that no test runs
(`bench_pruning_scale.py` imported the removed `ioi_superpose.interventions` after the layout change)."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from tests.helpers import REPO

SCRIPTS = sorted((REPO / "experiments").glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_the_script_imports(script, monkeypatch):
    monkeypatch.syspath_prepend(str(script.parent))  # as `python experiments/X.py` runs: siblings importable
    spec = importlib.util.spec_from_file_location(f"experiments_{script.stem}", script)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up while defined
    spec.loader.exec_module(module)  # each script runs only under `__main__`: this executes its imports
    assert callable(getattr(module, "main", None)), f"{script.name} has no main()"

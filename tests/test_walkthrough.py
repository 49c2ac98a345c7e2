"""experiments/walkthrough.ipynb runs from top to bottom on the shipped toy model, offline, as Jupyter runs it.

`jupyter execute experiments/walkthrough.ipynb` from the repository root and `jupyter execute walkthrough.ipynb`
from `experiments/` (Jupyter gives the kernel the notebook's directory as its working directory; the notebook finds
the shipped checkpoint beside the package, `models.shipped_checkpoint`). The environment has HF_HUB_OFFLINE=1 and
this checkout first on PYTHONPATH. The notebook writes its key numbers to the JSON file named by the
WALKTHROUGH_OUT environment variable; the test checks them (they are what the markdown describes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tests.helpers import REPO as ROOT

NOTEBOOK = ROOT / "experiments" / "walkthrough.ipynb"


def jupyter() -> list[str]:
    """The `jupyter` command of this environment (beside its python; nbclient provides `jupyter execute`)."""
    script = Path(sys.executable).with_name("jupyter")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "jupyter"]


def test_notebook_is_committed_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "strip outputs before committing"


@pytest.mark.parametrize("cwd, notebook", [(ROOT, "experiments/walkthrough.ipynb"), (ROOT / "experiments", "walkthrough.ipynb")],
                         ids=["from the repository root", "from experiments/"])  # fmt: skip
def test_jupyter_execute_runs_the_walkthrough_and_it_finds_the_layer_0_cut(cwd, notebook, tmp_path):
    summary_path, executed = tmp_path / "walkthrough.json", tmp_path / "executed.ipynb"
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "WALKTHROUGH_OUT": str(summary_path), "OMP_NUM_THREADS": "1",
                   "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}  # fmt: skip
    result = subprocess.run([*jupyter(), "execute", notebook, f"--output={executed}"], cwd=cwd, env=environment,
                            capture_output=True, text=True, timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]  # a failing cell: its traceback is in stderr

    notebook_run = nbformat.read(executed, as_version=4)
    errors = [o for c in notebook_run.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors == []
    images = sum("image/png" in o.get("data", {}) for c in notebook_run.cells if c.cell_type == "code" for o in c.outputs)
    assert images >= 10  # the figures render inline

    summary = json.loads(summary_path.read_text())
    assert summary["package"] == str((ROOT / "ioi_superpose").resolve())  # the kernel imported this checkout
    assert summary["clean_logit_diff"] > 5 and summary["corrupted_logit_diff"] < -5
    assert summary["learned_recovery"] >= 0.9
    assert summary["learned_l0"] <= 4
    assert {head["layer"] for head in summary["learned_top_heads"]} == {0}  # the learned α finds the layer-0 cut
    assert summary["whole_layer_recovery"][0] >= 0.99
    assert summary["learned_noising_recovery"] <= 0.1
    # Causal scrubbing (section 8): the learned layer-0 set alone is a cut (layer 1 resampled: little is left); with
    # layer 1 reading the names every head's output is a function of the names (flat 1), not every path (treeified).
    scrubbed = summary["scrubbed"]
    assert scrubbed["learned heads read the names"]["flat"] < 0.3
    assert scrubbed["+ later heads read the names"]["flat"] >= 0.95
    assert scrubbed["+ later heads read the names"]["treeified"] < scrubbed["+ later heads read the names"]["flat"] - 0.2
    assert scrubbed["+ later heads read the position"]["flat"] < 0.3
    # Section 9: the shipped IOI pairs given as a file (the `file` task) learn the layer-0 cut too.
    assert summary["own_task_recovery"] >= 0.9
    assert {head["layer"] for head in summary["own_task_top_heads"]} == {0}

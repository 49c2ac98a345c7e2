"""experiments/walkthrough.ipynb runs from top to bottom on the shipped toy model, offline.

The notebook is executed with nbclient in a fresh `python3` kernel whose working directory is the repo
root (so `checkpoints/toy_ioi.pt` resolves) and whose environment has HF_HUB_OFFLINE=1 and this
checkout first on PYTHONPATH. The notebook writes its key numbers to the JSON file named by the
WALKTHROUGH_OUT environment variable; the test checks them (they are what the markdown describes).
About 40 s on our 2-core CPU when it is otherwise idle.
"""

from __future__ import annotations

import json
import os

import nbclient
import nbformat

from tests.helpers import REPO as ROOT

NOTEBOOK = ROOT / "experiments" / "walkthrough.ipynb"


def test_notebook_is_committed_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "strip outputs before committing"


def test_walkthrough_notebook_runs_and_finds_the_layer_0_cut(tmp_path, monkeypatch):
    summary_path = tmp_path / "walkthrough.json"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("WALKTHROUGH_OUT", str(summary_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if any cell fails

    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors == []
    images = sum("image/png" in o.get("data", {}) for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
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

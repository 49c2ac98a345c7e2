"""checkpoints/README.md's toy-IOI cut numbers are what exhaustive search measures on the main job's 256
validation prompts (experiments/toy_ioi_minimal_sets.py)."""

from __future__ import annotations

import re
from pathlib import Path

import torch
import yaml

from ioi_superpose.data.datamodule import IOIDataModule
from ioi_superpose.engine.runs import recovery_of
from ioi_superpose.models import load_frozen_model

REPO = Path(__file__).resolve().parents[1]


def test_the_layer_cuts_in_the_checkpoint_readme_are_measured():
    config = yaml.safe_load((REPO / "experiments" / "toy_ioi.yaml").read_text())
    model_name = str(REPO / config["model"]["model_name"])
    datamodule = IOIDataModule(model_name=model_name, **config["data"])
    datamodule.setup("fit")
    val = datamodule.splits["val"].trimmed()
    layers = torch.zeros(2, 2, 4)
    layers[0, 0], layers[1, 1] = 1.0, 1.0  # all of layer 0; all of layer 1
    measured = recovery_of(load_frozen_model(model_name), val, layers, "denoising").tolist()
    text = (REPO / "checkpoints" / "README.md").read_text()
    stated = re.search(r"all positions is a cut \((\d\.\d+)\), and so is all of layer 1 \((\d\.\d+)\)", text)
    assert stated is not None
    assert [float(v) for v in stated.groups()] == [round(v, 3) for v in measured]

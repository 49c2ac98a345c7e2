"""Toy IOI, the reference for `--model.combination mixing --model.mixing_target 1`: scalar α restricted to
layer 1 (denoising), on the main job's sets (experiments/toy_ioi.yaml's data): α = 1 on all four layer-1
heads, and the recovery of every subset of layer 1's heads on the validation prompts.

    python experiments/toy_ioi_layer1.py
"""

from __future__ import annotations

import itertools

import torch
import yaml

from ioi_superpose.data.datamodule import IOIDataModule
from ioi_superpose.engine.runs import recovery_of
from ioi_superpose.models import load_frozen_model


def main() -> None:
    torch.set_num_threads(1)
    config = yaml.safe_load(open("experiments/toy_ioi.yaml"))
    model_name = config["model"]["model_name"]
    datamodule = IOIDataModule(model_name=model_name, **config["data"])
    datamodule.setup("fit")  # every split at once
    model = load_frozen_model(model_name)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    alpha = torch.zeros(n_layers, n_heads)
    alpha[1] = 1.0
    for name in ["val", *datamodule.test_set_names]:
        print(f"α = 1 on layer 1, {name}: recovery {float(recovery_of(model, datamodule.splits[name], alpha)):.3f}")
    subsets = [s for k in range(1, n_heads + 1) for s in itertools.combinations(range(n_heads), k)]
    alphas = torch.zeros(len(subsets), n_layers, n_heads)
    for row, subset in enumerate(subsets):
        alphas[row, 1, list(subset)] = 1.0
    recoveries = recovery_of(model, datamodule.splits["val"], alphas)
    for subset, value in sorted(zip(subsets, recoveries.tolist()), key=lambda pair: (len(pair[0]), -pair[1])):
        print(f"layer-1 subset {'+'.join(f'1.{h}' for h in subset)}: val recovery {value:.3f}")


if __name__ == "__main__":
    main()

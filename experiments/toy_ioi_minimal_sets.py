"""Toy IOI, honestly: every smallest head set reaching 0.9 recovery (denoising, all 256 subsets of the
8 heads of checkpoints/toy_ioi.pt) on the validation prompts of the main job (experiments/toy_ioi.yaml).

    python experiments/toy_ioi_minimal_sets.py
"""

from __future__ import annotations

import torch
import yaml

from ioi_superpose.analyses.exhaustive import search_subsets
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.data.datamodule import IOIDataModule
from ioi_superpose.models import load_frozen_model


def main() -> None:
    torch.set_num_threads(1)
    config = yaml.safe_load(open("experiments/toy_ioi.yaml"))
    data = {k: v for k, v in config["data"].items()}
    model_name = config["model"]["model_name"]
    datamodule = IOIDataModule(model_name=model_name, **data)
    datamodule.setup("fit")
    val = datamodule.splits["val"].trimmed()
    prompts = ContrastBatch.from_tokens(val.clean_tokens, val.corrupted_tokens, val.answer_tokens, val.end_pos,
                                        name="toy_ioi_val")  # fmt: skip
    model = load_frozen_model(model_name)
    for threshold in (0.9,):
        result = search_subsets(model, prompts, "denoising", threshold)
        print(f"threshold {threshold}: smallest size {result.min_size}; minimal sets:")
        for s in result.minimal_sets:
            name = "+".join(f"{l}.{h}" for l, h in s)
            print(f"  {name}: {result.subset_effect[name]:.3f}")
        print("single heads:", result.single_head_effect)
        print(
            "layer 0 all:",
            result.subset_effect["0.0+0.1+0.2+0.3"],
            "layer 1 all:",
            result.subset_effect["1.0+1.1+1.2+1.3"],
        )


if __name__ == "__main__":
    main()

"""Sufficient against necessary heads, by exhaustive search over every head subset, on the prompts of a
main-job config (default: the redundant toy model's, experiments/toy_ioi_redundant.yaml).

    python experiments/toy_ioi_redundancy.py                       # validation split (choose settings here)
    python experiments/toy_ioi_redundancy.py --split in_distribution   # the test set: report these
    python experiments/toy_ioi_redundancy.py --config experiments/toy_ioi.yaml   # the model without backups

Denoising (patch clean z into the corrupted run): the smallest sets reaching recovery ≥ 0.9 are the
minimal *sufficient* sets. Noising (patch corrupted z into the clean run): a set's effect is 1 − recovery,
how much of the behaviour removing it destroys; the smallest sets whose effect reaches 0.5 / 0.9 are the
minimal *necessary* sets. With redundant heads the two disagree: one head (or a few) already suffices,
while no single head, or only all of the redundant heads together, is necessary.
"""

from __future__ import annotations

import argparse

import torch
import yaml

from ioi_superpose.analyses.exhaustive import SubsetSearch, search_subsets
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.data.datamodule import IOIDataModule
from ioi_superpose.models import load_frozen_model


def _named(search: SubsetSearch) -> list[str]:
    return ["+".join(f"{layer}.{head}" for layer, head in heads) for heads in search.minimal_sets]


def _rows(values: list[list[float]]) -> str:
    return "; ".join(f"layer {layer}: " + " ".join(f"{v:.2f}" for v in row) for layer, row in enumerate(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="experiments/toy_ioi_redundant.yaml")
    parser.add_argument("--split", default="val", choices=["val", "in_distribution"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = yaml.safe_load(open(args.config))
    model_name = config["model"]["model_name"]
    datamodule = IOIDataModule(model_name=model_name, **config["data"])
    datamodule.setup("fit")
    split = datamodule.splits[args.split].trimmed()
    prompts = ContrastBatch.from_tokens(
        split.clean_tokens, split.corrupted_tokens, split.answer_tokens, split.end_pos, name=f"{model_name}:{args.split}"
    )
    model = load_frozen_model(model_name)
    print(f"{model_name}, {len(split)} {args.split} prompts (data of {args.config})")
    sufficient = search_subsets(model, prompts, "denoising", 0.9)
    print(f"single heads, denoising recovery:  {_rows(sufficient.single_head_effect)}")
    print(f"minimal sufficient sets (denoising recovery >= 0.9), size {sufficient.min_size}:")
    for name in _named(sufficient):
        print(f"  {name}: {sufficient.subset_effect[name]:.3f}")
    for threshold in (0.5, 0.9):
        necessary = search_subsets(model, prompts, "noising", threshold)
        if threshold == 0.5:
            print(f"single heads, noising effect (1 - recovery): {_rows(necessary.single_head_effect)}")
        print(f"minimal necessary sets (noising effect >= {threshold}), size {necessary.min_size}:")
        for name in _named(necessary):
            print(f"  {name}: {necessary.subset_effect[name]:.3f}")
    layers = ["+".join(f"{layer}.{head}" for head in range(model.cfg.n_heads)) for layer in range(model.cfg.n_layers)]
    for layer, name in enumerate(layers):
        print(f"all of layer {layer}: denoising recovery {sufficient.subset_effect[name]:.3f}, "
              f"noising effect {necessary.subset_effect[name]:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()

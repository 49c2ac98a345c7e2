"""Pilot for the GPT-2-shaped models trained on the task mixture (docs/trained_models.md): how many training
tokens per second one torch thread runs for each candidate size, so one seed trains in about an hour.

    python experiments/trained_models_pilot.py [--steps 20]

Times `--steps` optimiser steps (after 3 warm-up steps) of `ToyModelTraining` on `TaskMixtureDataModule`
batches, one thread; prints, per size, the process's CPU seconds per step (what one core spends, which a shared
machine's load does not inflate much) and the wall-clock rate. "steps per CPU hour" is what decides the size.
"""

from __future__ import annotations

import argparse
import time

import torch

from ioi_superpose.toy.task_mixture import TaskMixtureDataModule
from ioi_superpose.toy.training import ToyModelTraining

SIZES = {  # name: (n_layers, n_heads, d_model, d_head, d_mlp)
    "12x12 d256": (12, 12, 256, 16, 1024),
    "12x12 d128": (12, 12, 128, 16, 512),
    "12x12 d96 (d_head 8)": (12, 12, 96, 8, 384),
    "12x12 d64 (d_head 8)": (12, 12, 64, 8, 256),
    "8x8 d128": (8, 8, 128, 16, 512),
    "6x8 d128": (6, 8, 128, 16, 512),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--sizes", nargs="*", default=list(SIZES), help="which of the sizes to time")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = TaskMixtureDataModule(batch_size=args.batch_size)
    batches = [data.token_batch(args.batch_size, seed=i) for i in range(args.steps + 3)]
    real = sum(int((b["tokens"] != data.tokenizer.pad_token_id).sum()) for b in batches[3:])
    for name in args.sizes:
        n_layers, n_heads, d_model, d_head, d_mlp = SIZES[name]
        module = ToyModelTraining(n_layers=n_layers, n_heads=n_heads, d_model=d_model, d_head=d_head,
                                  d_vocab=data.d_vocab, n_ctx=data.n_ctx, layer_norm=True, d_mlp=d_mlp)  # fmt: skip
        optimiser = module.configure_optimizers()
        for index, batch in enumerate(batches):
            if index == 3:
                start, cpu_start = time.perf_counter(), time.process_time()
            optimiser.zero_grad()
            loss = torch.nn.functional.cross_entropy(
                module(batch["tokens"]).flatten(0, 1), batch["labels"].flatten(), ignore_index=-100
            )
            loss.backward()
            optimiser.step()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        params = sum(p.numel() for p in module.model.parameters())
        print(f"{name:22s} {params / 1e6:5.2f} M params | CPU {cpu / args.steps:5.2f} s/step, "
              f"{3600 * args.steps / cpu:6.0f} steps per CPU hour, {real / cpu:6.0f} real tokens per CPU s | "
              f"wall {seconds / args.steps:5.2f} s/step", flush=True)


if __name__ == "__main__":
    main()

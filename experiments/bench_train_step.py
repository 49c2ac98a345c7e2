"""Cost of one training step of the learned combination, relative to one plain no-grad forward.

GPT-2-small shapes with random weights (no download needed), 64 prompts × 16 tokens by default. Both
are measured in the same run, on the same machine, so the ratio is meaningful even on a noisy CPU:

    python experiments/bench_train_step.py            # goals on our 2-core CPU: ≤ 1.2 cached, ≤ 1.9 recomputed
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from bench_patching import gpt2_small_random  # the same GPT-2-small-shaped model as that benchmark

from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.system import HeadSuperposition


def timed(step, repeats: int, device: str) -> float:
    """Median seconds of `step()` over `repeats` runs, after one warm-up."""
    step()
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = gpt2_small_random(args.device)
    vocab = model.cfg.d_vocab
    clean = torch.randint(0, vocab, (args.prompts, args.seq_len), device=args.device)
    corrupted = torch.randint(0, vocab, (args.prompts, args.seq_len), device=args.device)
    answers = torch.randint(0, vocab, (args.prompts, 2), device=args.device)
    batch = ContrastBatch.from_tokens(clean, corrupted, answers).to(args.device)

    def plain_forward() -> None:
        with torch.no_grad():
            model(corrupted)

    results = {"plain no-grad forward": timed(plain_forward, args.repeats, args.device)}
    for cached in (True, False):
        system = HeadSuperposition(model_name="bench", preloaded_model=model, cache_source_activations=cached)
        system.to(args.device).train()
        optimizer = torch.optim.Adam(system.combination.parameters(), lr=0.05)

        def train_step() -> None:
            loss = system.loss_terms(batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            system.combination.project_()

        label = "train step, source cached" if cached else "train step, source recomputed"
        results[label] = timed(train_step, args.repeats, args.device)

    baseline = results["plain no-grad forward"]
    print(f"device {args.device}, {args.prompts} prompts x {args.seq_len} tokens, GPT-2-small shapes, fp32")
    for label, seconds in results.items():
        print(f"  {label:<32} {seconds * 1000:8.1f} ms   ratio {seconds / baseline:5.2f}")


if __name__ == "__main__":
    main()

"""Cost of one training step of the learned combination, relative to one plain no-grad forward.

GPT-2-small shapes with random weights (no download needed), 64 prompts × 16 tokens by default. The
step is `HeadSuperposition`'s own (reference rows, patched forward with α, logits at END only,
backward through α, Adam, projection); the baseline is TransformerLens's plain no-grad forward (full
logits). Step variants are measured round-robin (the order rotates every round), each call paired
with a plain forward right before or after it (alternately), and each ratio is computed within its
pair, so load that changes during the run moves numerator and denominator together. Printed: median
and interquartile range (and min–max) of the per-pair ratios. On a shared machine, `--threads 1`
is steadier.

Variants: the source activations cached (one patched forward + backward per step) or recomputed (the
reference runs too), each on the engine's default runner (`fast_forward`, chosen automatically) and,
for comparison, through TransformerLens hooks (`runner="hooks"`, the engine before the fast runner).

    python experiments/bench_train_step.py [--repeats 10]   # goals on our 2-core CPU: ≤ 1.2 cached, ≤ 1.9 recomputed
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import time
from collections.abc import Callable
from unittest import mock

import torch
from bench_patching import gpt2_small_random  # the same GPT-2-small-shaped model as that benchmark

from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.engine import runs
from ioi_superpose.training import system as system_module
from ioi_superpose.training.system import HeadSuperposition


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def seconds(fn: Callable[[], None], device: str) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def runner_patch(runner: str) -> contextlib.AbstractContextManager:
    """HeadSuperposition always takes the engine's default runner ("auto"); "hooks" is patched in."""
    if runner == "auto":
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    for name in ("patched_end_logits", "reference_runs"):
        stack.enter_context(
            mock.patch.object(system_module, name, functools.partial(getattr(runs, name), runner=runner))
        )
    return stack


def quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, median, q3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=10, help="rounds; each times every variant once")
    parser.add_argument("--runners", nargs="+", default=["auto", "hooks"], choices=["auto", "fast", "hooks"])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

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

    def train_step(system: HeadSuperposition, optimizer: torch.optim.Optimizer, runner: str) -> None:
        with runner_patch(runner):
            reference = system.reference(batch, cached_rows=True)
            loss = system.loss_terms(batch, reference)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        system.combination.project_()

    variants: dict[str, Callable[[], None]] = {"plain no-grad forward": plain_forward}
    for runner in args.runners:
        for cached in (True, False):
            system = HeadSuperposition(model_name="bench", preloaded_model=model, cache_source_activations=cached)
            system.to(args.device).train()
            optimizer = torch.optim.Adam(system.combination.parameters(), lr=0.05)
            label = f"step, source {'cached' if cached else 'recomputed'}, runner {runner}"
            variants[label] = functools.partial(train_step, system, optimizer, runner)

    for fn in variants.values():  # warm-up: allocator, kernels, the reference cache
        fn()
    steps = [label for label in variants if label != "plain no-grad forward"]
    plain: dict[str, list[float]] = {label: [] for label in steps}
    step: dict[str, list[float]] = {label: [] for label in steps}
    for round_ in range(args.repeats):
        shift = round_ % len(steps)
        for i, label in enumerate(steps[shift:] + steps[:shift]):
            # Each step is paired with a plain forward right next to it (before or after, alternately).
            if (round_ + i) % 2 == 0:
                plain[label].append(seconds(plain_forward, args.device))
                step[label].append(seconds(variants[label], args.device))
            else:
                step[label].append(seconds(variants[label], args.device))
                plain[label].append(seconds(plain_forward, args.device))

    all_plain = [t for values in plain.values() for t in values]
    print(
        f"device {args.device}, {args.prompts} prompts x {args.seq_len} tokens, GPT-2-small shapes, fp32, "
        f"{torch.get_num_threads()} threads, {args.repeats} interleaved rounds"
    )
    print(f"  {'plain no-grad forward':<44} median {statistics.median(all_plain) * 1000:7.1f} ms")
    for label in steps:
        ratios = [t / b for t, b in zip(step[label], plain[label])]
        q1, median, q3 = quartiles(ratios)
        print(
            f"  {label:<44} median {statistics.median(step[label]) * 1000:7.1f} ms   ratio to the adjacent plain "
            f"forward: median {median:4.2f}  IQR {q1:4.2f}–{q3:4.2f}  min–max {min(ratios):4.2f}–{max(ratios):4.2f}"
        )


if __name__ == "__main__":
    main()

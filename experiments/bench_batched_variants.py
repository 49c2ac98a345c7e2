"""Time per variant of training K combinations in one batched forward, against K separate single runs.

A training step of K members (`HeadSuperposition.batched`: one patched forward of
K × batch rows, the summed loss, one backward, Adam with a group per member, projection) against K
steps of K single `HeadSuperposition`s (each its own patched forward, backward, Adam, projection), for
K = 1, 2, 4, 8, on the toy IOI model (checkpoints/toy_ioi.pt, the main job's batch of 64 prompts) and
on a small random GPT-2-shaped model (64 prompts × 16 tokens; `--gpt2 small` for GPT-2 small's shapes). Source activations are cached (the
main job's default), the members differ in λ and init, and the scalar family takes the vectorised
path unless `--generic` (each member's own forward on its slice).

Interleaving as in `bench_train_step.py`: every round times each K once, in a rotating order, and each
batched step is paired with its K single steps right before or after it (alternately); the ratio
(batched time / K single-steps time = time per variant batched / time per variant single) is taken
within each pair, so load that changes during the run moves both. Printed: median and IQR of the
per-pair ratios and the median time per variant. On a shared machine, `--threads 1` is steadier.

    python experiments/bench_batched_variants.py --threads 1 [--repeats 10] [--models toy gpt2]
"""

from __future__ import annotations

import argparse
import functools
import statistics
from collections.abc import Callable
from pathlib import Path

import torch
from bench_patching import gpt2_small_random  # the same GPT-2-small-shaped model as that benchmark
from bench_train_step import quartiles, seconds

from ioi_superpose.data import ioi_prompts
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.models import HookedTransformer, HookedTransformerConfig, freeze, load_frozen_model
from ioi_superpose.training.system import HeadSuperposition

TOY = Path(__file__).resolve().parents[1] / "checkpoints" / "toy_ioi.pt"


def gpt2_small_shaped(device: str) -> HookedTransformer:
    """A narrower random GPT-2: its block types, activation and vocabulary, 4 layers of 8 heads, d_model 256."""
    cfg = HookedTransformerConfig(
        n_layers=4, n_heads=8, d_model=256, d_head=32, d_mlp=1024, d_vocab=50257, n_ctx=1024,
        act_fn="gelu_new", normalization_type="LN", device=device, seed=0,
    )  # fmt: skip
    return freeze(HookedTransformer(cfg))


def members(model: HookedTransformer, k: int, family: str, device: str) -> list[HeadSuperposition]:
    """K members that differ in λ and init, as a sweep would batch them."""
    return [
        HeadSuperposition(model_name="bench", preloaded_model=model, combination=family,
                          l1=1e-3 * (1 + i), init=1.0 - 0.05 * i).to(device).train()
        for i in range(k)
    ]  # fmt: skip


def single_steps(
    systems: list[HeadSuperposition], optimizers: list[torch.optim.Optimizer], batch: ContrastBatch
) -> None:
    """One training step of each single run, one after another (what K separate runs do)."""
    for system, optimizer in zip(systems, optimizers):
        loss = system.loss_terms(batch, system.reference(batch, cached_rows=True))["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        system.combination.project_()


def batched_step(batched: HeadSuperposition, optimizer: torch.optim.Optimizer, batch: ContrastBatch) -> None:
    """One training step of all K members in one folded forward (what `HeadSuperposition.batched` trains)."""
    _, terms = batched.member_terms(batch)
    sum(member["loss"] for member in terms).backward()
    optimizer.step()
    optimizer.zero_grad()
    for system in batched.members:
        system.combination.project_()


def bench_model(name: str, model: HookedTransformer, batch: ContrastBatch, args: argparse.Namespace) -> None:
    pairs: dict[int, tuple[Callable[[], None], Callable[[], None]]] = {}
    for k in args.ks:
        singles = members(model, k, args.family, args.device)
        optimizers = [torch.optim.Adam(s.combination.parameters(), lr=s.hparams.lr) for s in singles]
        batched = HeadSuperposition.batched(
            members(model, k, args.family, args.device), vectorise=not args.generic or None
        )
        pairs[k] = (
            functools.partial(batched_step, batched, batched.configure_optimizers(), batch),
            functools.partial(single_steps, singles, optimizers, batch),
        )
    for batched_fn, single_fn in pairs.values():  # warm-up: allocator, kernels, the reference caches
        batched_fn()
        single_fn()
    batched_times: dict[int, list[float]] = {k: [] for k in args.ks}
    single_times: dict[int, list[float]] = {k: [] for k in args.ks}
    for round_ in range(args.repeats):
        shift = round_ % len(args.ks)
        for i, k in enumerate(args.ks[shift:] + args.ks[:shift]):
            batched_fn, single_fn = pairs[k]
            if (round_ + i) % 2 == 0:
                batched_times[k].append(seconds(batched_fn, args.device))
                single_times[k].append(seconds(single_fn, args.device))
            else:
                single_times[k].append(seconds(single_fn, args.device))
                batched_times[k].append(seconds(batched_fn, args.device))
    path = "generic (each member's forward on its slice)" if args.generic else "default (vectorised for scalar)"
    print(f"\n{name}: {len(batch)} prompts x {batch.clean_tokens.shape[1]} tokens, family {args.family}, "
          f"stacked path {path}, device {args.device}, {torch.get_num_threads()} threads, {args.repeats} rounds")  # fmt: skip
    for k in args.ks:
        ratios = [b / s for b, s in zip(batched_times[k], single_times[k])]
        q1, median, q3 = quartiles(ratios)
        per_batched = statistics.median(batched_times[k]) / k * 1000
        per_single = statistics.median(single_times[k]) / k * 1000
        print(f"  K = {k}: per variant {per_batched:8.2f} ms batched, {per_single:8.2f} ms single   "
              f"ratio batched/single: median {median:4.2f}  IQR {q1:4.2f}–{q3:4.2f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["toy", "gpt2"], choices=["toy", "gpt2"])
    parser.add_argument(
        "--gpt2", default="narrow", choices=["narrow", "small"],
        help="the random GPT-2-shaped model: GPT-2 small's shapes, or `narrow` (4 layers x 8 heads, d_model 256, "
        "GPT-2's vocabulary; the default: GPT-2 small at K = 8 took over 10 min on our busy 2-core CPU)",
    )  # fmt: skip
    parser.add_argument("--ks", nargs="+", type=int, default=[1, 2, 4, 8])
    parser.add_argument("--prompts", type=int, default=64, help="batch size (the main job's: 64)")
    parser.add_argument("--seq-len", type=int, default=16, help="GPT-2-shaped model only (toy prompts are 16 tokens)")
    parser.add_argument("--repeats", type=int, default=10, help="rounds; each times every K once")
    parser.add_argument("--family", default="scalar", choices=["scalar", "per_position", "hard_concrete"])
    parser.add_argument("--generic", action="store_true", help="scalar without the vectorised path")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if "toy" in args.models:
        model = load_frozen_model(str(TOY)).to(args.device)
        prompts = ioi_prompts(str(TOY), n=args.prompts, corruption="name_swap", seed=0)
        batch = ContrastBatch.from_tokens(prompts.clean_tokens, prompts.corrupted_tokens, prompts.answer_tokens)
        bench_model("toy IOI (checkpoints/toy_ioi.pt)", model, batch.to(args.device), args)
    if "gpt2" in args.models:
        model = gpt2_small_random(args.device) if args.gpt2 == "small" else gpt2_small_shaped(args.device)
        vocab = model.cfg.d_vocab
        tokens = [torch.randint(0, vocab, (args.prompts, args.seq_len)) for _ in range(2)]
        batch = ContrastBatch.from_tokens(*tokens, torch.randint(0, vocab, (args.prompts, 2)))
        bench_model(f"random GPT-2-shaped model ({args.gpt2}: {model.cfg.n_layers} layers x {model.cfg.n_heads} heads, "
                    f"d_model {model.cfg.d_model}, vocab {model.cfg.d_vocab})", model, batch.to(args.device), args)  # fmt: skip


if __name__ == "__main__":
    main()

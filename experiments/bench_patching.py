"""Benchmark: our head-z sweep vs TransformerLens's `get_act_patch_attn_head_out_all_pos`.

GPT-2-small shapes with random weights (no download needed). Prints max |difference| and the speed
ratio (a) with a ContrastMetric (two answer logits at END only) and (b) with a generic metric callable.

    python experiments/bench_patching.py [--device cuda] [--prompts 8] [--seq-len 16] [--repeats 3] [--threads 1]

Both sides run with the same torch thread count (printed; `--threads 1` is steadier on a shared machine).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch import Tensor

# The reference implementation we compare against (TransformerLens is otherwise used only inside
# ioi_superpose.models).
from transformer_lens import patching as tl_patching

from ioi_superpose.baselines import patching
from ioi_superpose.engine.metric import ContrastMetric
from ioi_superpose.models import HookedTransformer, HookedTransformerConfig, freeze


def gpt2_small_random(device: str) -> HookedTransformer:
    cfg = HookedTransformerConfig(
        n_layers=12, n_heads=12, d_model=768, d_head=64, d_mlp=3072, d_vocab=50257, n_ctx=1024,
        act_fn="gelu_new", normalization_type="LN", device=device, seed=0,
    )  # fmt: skip
    return freeze(HookedTransformer(cfg))


def timed(fn: Callable[[], Tensor], device: str, repeats: int) -> tuple[Tensor, float]:
    """Result and the best wall time of `repeats` runs (synchronised on CUDA)."""
    best = float("inf")
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return result, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="repeats of ours (TransformerLens runs once)")
    parser.add_argument("--tl-repeats", type=int, default=1)
    parser.add_argument("--max-batch", type=int, default=patching.DEFAULT_MAX_ROWS)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads for both sides (default: torch's own, one per core)")  # fmt: skip
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = gpt2_small_random(args.device)
    vocab = model.cfg.d_vocab
    clean = torch.randint(0, vocab, (args.prompts, args.seq_len), device=args.device)
    corrupted = clean.clone()
    corrupted[:, args.seq_len // 2] = torch.randint(0, vocab, (args.prompts,), device=args.device)
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(clean)
    end = torch.full((args.prompts,), args.seq_len - 1, device=args.device)
    metrics: dict[str, Callable[[Tensor], Tensor]] = {
        "ContrastMetric": ContrastMetric(torch.randint(0, vocab, (args.prompts, 2), device=args.device), end),
        "generic lambda": lambda logits: (logits[:, -1, 5] - logits[:, -1, 7]).mean(),
    }
    print(f"device={args.device} prompts={args.prompts} seq_len={args.seq_len} max_batch={args.max_batch} "
          f"threads={torch.get_num_threads()}")
    for label, metric in metrics.items():
        ours_fn = lambda: patching.get_act_patch_attn_head_out_all_pos(  # noqa: E731
            model, corrupted, clean_cache, metric, max_batch=args.max_batch
        )
        tl_fn = lambda: tl_patching.get_act_patch_attn_head_out_all_pos(model, corrupted, clean_cache, metric)  # noqa: E731
        ours_fn()  # warm-up (allocator, kernels)
        ours, t_ours = timed(ours_fn, args.device, args.repeats)
        with torch.no_grad():
            ref, t_tl = timed(tl_fn, args.device, args.tl_repeats)
        diff = (ours - ref).abs().max().item()
        print(
            f"[{label}] max|ours - TL| = {diff:.2e} (effects span {ref.min().item():.3f}..{ref.max().item():.3f}); "
            f"TL {t_tl:.2f} s, ours {t_ours:.2f} s, speed-up {t_tl / t_ours:.1f}x"
        )


if __name__ == "__main__":
    main()

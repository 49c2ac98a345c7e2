"""GPU benchmark: training throughput of the learned combination, and the head-patching sweep vs TransformerLens.

GPU FIGURES ARE NOT MEASURED YET: no GPU was available when this script was written; it was only run
on CPU with `--device cpu --small` (tiny shapes) to check that it works. Goals on one H100/H200:
≥ 25,000 prompts/s with bf16 autocast, head patching ≥ 50× TransformerLens.

Prints, all measured in the same run on the same device (GPT-2-small shapes, random weights, 16-token
prompts; `--small`: a 2-layer, 4-head, d_model 64 model with a 1,000-token vocabulary):

1. training throughput (prompts/s) of one learned combination: `HeadSuperposition`'s own step
   (cached source activations, patched forward on the engine's default runner, logits at END only,
   backward through α, Adam, projection), in fp32 and under bf16 autocast;
2. the same with 16 combinations trained at once: a learned [K=16, layer, head] parameter (the
   `BatchedHeadCombination` below, a `Combination` with K variants) whose variants are folded into
   one forward by `runs.patched_end_logits`; throughput counted in prompt-variants/s (K × prompts
   per step) and in prompts/s;
3. the head-patching sweep `ioi_superpose.baselines.patching.get_act_patch_attn_head_out_all_pos` against
   TransformerLens's own on 8 × 16 tokens with the IOI logit-difference metric (`ContrastMetric`),
   as a speed ratio, with the largest difference between the two.

    python experiments/bench_gpu.py                      # on the GPU
    python experiments/bench_gpu.py --device cpu --small # a quick check that it runs
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

# The reference implementation we compare against (TransformerLens is otherwise used only inside
# ioi_superpose.models).
from transformer_lens import patching as tl_patching

from ioi_superpose.baselines import patching
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.engine.metric import ContrastMetric
from ioi_superpose.engine.patch import Combination, mix
from ioi_superpose.engine.runs import BaseRun, patched_end_logits, reference_runs
from ioi_superpose.models import HookedTransformer, HookedTransformerConfig, freeze
from ioi_superpose.training.system import HeadSuperposition


class BatchedHeadCombination(Combination):
    """K learnable combinations α[k, layer, head], trained at once as K variants of one folded forward."""

    def __init__(self, variants: int, n_layers: int, n_heads: int, init: float = 1.0) -> None:
        super().__init__()
        self.coefficients = nn.Parameter(torch.full((variants, n_layers, n_heads), init))

    @property
    def n_variants(self) -> int:
        return self.coefficients.shape[0]

    def forward(self, layer: int, z_base: Tensor, z_source: Tensor) -> Tensor:
        return mix(z_base, z_source, self.coefficients[:, layer])


def model_for(device: str, small: bool) -> HookedTransformer:
    shapes = (
        dict(n_layers=2, n_heads=4, d_model=64, d_head=16, d_mlp=256, d_vocab=1000)
        if small
        else dict(n_layers=12, n_heads=12, d_model=768, d_head=64, d_mlp=3072, d_vocab=50257)
    )
    cfg = HookedTransformerConfig(
        **shapes, n_ctx=1024, act_fn="gelu_new", normalization_type="LN", device=device, seed=0
    )
    return freeze(HookedTransformer(cfg))


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def median_seconds(fn: Callable[[], object], device: str, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def random_batch(model: HookedTransformer, prompts: int, seq_len: int, device: str) -> ContrastBatch:
    vocab = model.cfg.d_vocab
    clean = torch.randint(0, vocab, (prompts, seq_len), device=device)
    corrupted = torch.randint(0, vocab, (prompts, seq_len), device=device)
    corrupted[:, -1] = clean[:, -1]
    answers = torch.randint(0, vocab, (prompts, 2), device=device)
    return ContrastBatch.from_tokens(clean, corrupted, answers).to(device)


def autocast(device: str, bf16: bool) -> contextlib.AbstractContextManager:
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    return torch.autocast(device_type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def one_combination_step(model: HookedTransformer, batch: ContrastBatch, device: str, bf16: bool) -> Callable[[], None]:
    system = HeadSuperposition(model_name="bench", preloaded_model=model, cache_source_activations=True)
    system.to(device).train()
    optimizer = torch.optim.Adam(system.combination.parameters(), lr=0.05)

    def step() -> None:
        with autocast(device, bf16):
            reference = system.reference(batch, cached_rows=True)
            loss = system.loss_terms(batch, reference)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        system.combination.project_()

    return step


def batched_combinations_step(
    model: HookedTransformer, batch: ContrastBatch, device: str, bf16: bool, variants: int
) -> Callable[[], None]:
    combination = BatchedHeadCombination(variants, model.cfg.n_layers, model.cfg.n_heads).to(device)
    optimizer = torch.optim.Adam(combination.parameters(), lr=0.05)
    reference = reference_runs(
        model, batch.clean_tokens, batch.corrupted_tokens, batch.end_pos, batch.answer_tokens, "denoising"
    )  # cached source activations, as HeadSuperposition keeps them
    base_tokens = batch.corrupted_tokens

    def step() -> None:
        with autocast(device, bf16):
            base = BaseRun.prepare(model, base_tokens, prefixes=False)
            logits = patched_end_logits(
                base, reference.source_z, combination, batch.end_pos, batch.answer_tokens,
                max_rows=variants * len(batch),
            )  # fmt: skip  # [K, batch, 2]
            loss = (1 - reference.effect(logits)).pow(2).sum() + 1e-3 * combination.coefficients.abs().sum()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        with torch.no_grad():
            combination.coefficients.clamp_(0.0, 1.0)

    return step


def head_patching(model: HookedTransformer, device: str, prompts: int, seq_len: int, repeats: int) -> str:
    batch = random_batch(model, prompts, seq_len, device)
    metric = ContrastMetric(batch.answer_tokens, batch.end_pos)
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(batch.clean_tokens)
    rows = model.cfg.n_heads * prompts  # one forward per layer: all its heads folded

    def ours() -> Tensor:
        return patching.get_act_patch_attn_head_out_all_pos(
            model, batch.corrupted_tokens, clean_cache, metric, max_batch=rows
        )

    def theirs() -> Tensor:
        with torch.no_grad():
            return tl_patching.get_act_patch_attn_head_out_all_pos(model, batch.corrupted_tokens, clean_cache, metric)

    t_ours = median_seconds(ours, device, repeats)
    t_tl = median_seconds(theirs, device, max(1, repeats // 3), warmup=1)
    diff = (ours() - theirs()).abs().max().item()
    return (
        f"head patching {prompts} x {seq_len} ({model.cfg.n_layers * model.cfg.n_heads} heads, ContrastMetric): "
        f"TransformerLens {t_tl * 1000:.1f} ms, ours {t_ours * 1000:.1f} ms, speed-up {t_tl / t_ours:.1f}x "
        f"(max |ours - TL| = {diff:.1e})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--small", action="store_true", help="tiny shapes (a quick check that the script runs)")
    parser.add_argument(
        "--prompts", type=int, default=None, help="prompts per training step (default 1024; --small 32)"
    )
    parser.add_argument("--seq-len", type=int, default=16)
    parser.add_argument("--variants", type=int, default=16, help="K combinations trained at once")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--patching-prompts", type=int, default=8)
    args = parser.parse_args()
    prompts = args.prompts or (32 if args.small else 1024)

    torch.manual_seed(0)
    model = model_for(args.device, args.small)
    batch = random_batch(model, prompts, args.seq_len, args.device)
    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    shapes = "tiny shapes (--small)" if args.small else "GPT-2-small shapes"
    print(
        f"device {args.device} ({name}), {shapes}, random weights, {args.seq_len}-token prompts, "
        f"torch {torch.__version__}"
    )
    for bf16 in (False, True):
        precision = "bf16 autocast" if bf16 else "fp32"
        seconds = median_seconds(one_combination_step(model, batch, args.device, bf16), args.device, args.repeats)
        print(f"  train, 1 combination,   {precision:<13} batch {prompts:5d}: {prompts / seconds:10.0f} prompts/s")
        step = batched_combinations_step(model, batch, args.device, bf16, args.variants)
        seconds = median_seconds(step, args.device, args.repeats)
        print(
            f"  train, {args.variants} combinations ([K, layer, head] parameter, one folded forward), {precision}, "
            f"batch {prompts}: {args.variants * prompts / seconds:10.0f} prompt-variants/s "
            f"({prompts / seconds:.0f} prompts/s)"
        )
    print("  " + head_patching(model, args.device, args.patching_prompts, args.seq_len, args.repeats))


if __name__ == "__main__":
    main()

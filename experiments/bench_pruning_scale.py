"""Benchmark: the minimal-set step at GPT-2 scale, against one single-head activation-patching sweep.

0. One case of the 144-head planted suite (`groundtruth.planted_gpt2`, `--case`, default `and`; its prompts
   are 8 tokens, the suite model's n_ctx): a single-head activation-patching sweep (144 variants), then
   learn + prune end to end (`api.learn_combination(..., prune_target=--suite-target)`), then the step from
   all 144 heads at α = 1: wall times, patched rows, their ratios to the sweep, the kept sets against the
   suite's promised minimal sets, and the issue's goals (learn + prune ≤ 180 s; prune rows ≤ 5 × sweep rows).
1. A GPT-2-shaped random model (12 layers × 12 heads, d_model 192, d_head 16, MLPs, LayerNorm; no download),
   random prompts (clean, and corrupted at a few positions before END; answers = the clean and corrupted
   runs' top tokens at END). The minimal-set step from all 144 heads at α = 1 (`pruning.minimal_set`) vs
   a single-head sweep (144 one-hot variants through `runs.patched_end_logits`), each with its own
   reference runs: wall time and patched rows (prompts × variants), and their ratios. Then (with
   `--learn-steps` > 0) `api.learn_combination(..., prune_target=target)` end to end: learn + prune wall time.
2. The S = 8 toy case (`checkpoints/toy_ioi.pt`, all 8 heads at α = 1, target 0.9, the first 256 training
   prompts of `experiments/toy_ioi.yaml`'s data, in batches of 64 as `prune_prompts` reads them): the step
   here vs the step before block pruning (greedy best-first elimination, loaded from git revision
   `--old-rev`): rows, wall time, kept set.

    python experiments/bench_pruning_scale.py [--prompts 32] [--tokens 16] [--target 0.8] [--rest free]
        [--learn-steps 100] [--l1 0.01] [--old-rev ad19a75] [--skip-toy] [--threads 1]
        [--case and] [--suite-target 0.9] [--skip-random]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import torch

import ioi_superpose.combinations
import ioi_superpose.engine.runs
from ioi_superpose.analyses.exhaustive import search_head_subsets
from ioi_superpose.analyses.pruning import minimal_set
from ioi_superpose.combinations import ScalarCombination
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.data.datamodule import IOIDataModule
from ioi_superpose.engine.patch import HeadWeights
from ioi_superpose.engine.rest import run_tokens, with_rest
from ioi_superpose.engine.runs import BaseRun, end_logits, patched_end_logits, reference_runs
from ioi_superpose.engine.vocabulary import base_and_source
from ioi_superpose.groundtruth.planted_gpt2 import gpt2_cases
from ioi_superpose.models import HookedTransformer, HookedTransformerConfig, freeze, load_frozen_model

ROOT = Path(__file__).resolve().parents[1]


def gpt2_shaped(seed: int = 0) -> HookedTransformer:
    cfg = HookedTransformerConfig(
        n_layers=12, n_heads=12, d_model=192, d_head=16, d_mlp=768, d_vocab=1000, n_ctx=64,
        act_fn="gelu_new", normalization_type="LN", seed=seed,
    )  # fmt: skip
    return freeze(HookedTransformer(cfg))


def random_prompts(model: HookedTransformer, n: int, length: int, changed: int = 3, seed: int = 0) -> ContrastBatch:
    """Random clean tokens; corrupted = clean with `changed` positions before END redrawn; answers = the
    clean and the corrupted runs' top tokens at END (so the logit difference flips sign between them)."""
    generator = torch.Generator().manual_seed(seed)
    clean = torch.randint(0, model.cfg.d_vocab, (n, length), generator=generator)
    corrupted = clean.clone()
    for row in range(n):
        positions = torch.randperm(length - 1, generator=generator)[:changed]
        corrupted[row, positions] = torch.randint(0, model.cfg.d_vocab, (changed,), generator=generator)
    ends = torch.full((n,), length - 1)
    top_clean = end_logits(model, clean, ends).argmax(-1)
    top_corrupted = end_logits(model, corrupted, ends).argmax(-1)
    same = top_clean == top_corrupted  # then the clean run's second choice is the incorrect answer
    second = end_logits(model, clean, ends).topk(2, -1).indices[:, 1]
    answers = torch.stack([top_clean, torch.where(same, second, top_corrupted)], -1)
    return ContrastBatch.from_tokens(clean, corrupted, answers)


@torch.no_grad()
def sweep(model: HookedTransformer, prompts: ContrastBatch, direction: str, rest: str) -> tuple[int, float]:
    """One single-head activation-patching sweep (reference runs included): rows and wall seconds."""
    start = time.perf_counter()
    reference = reference_runs(model, prompts.clean_tokens, prompts.corrupted_tokens, prompts.end_pos,
                               prompts.answer_tokens, direction, rest=rest)  # fmt: skip
    base_tokens, source_tokens = base_and_source(prompts.clean_tokens, prompts.corrupted_tokens, direction)
    run = BaseRun.prepare(model, run_tokens(base_tokens, source_tokens, rest))
    variants = with_rest(HeadWeights.single_heads(model.cfg.n_layers, model.cfg.n_heads), rest)
    patched_end_logits(run, reference.source_z, variants, prompts.end_pos, prompts.answer_tokens)
    return variants.n_variants * len(prompts), time.perf_counter() - start


def prune_all_heads(model: HookedTransformer, batches: list[ContrastBatch], target: float, rest: str, step=minimal_set):
    combination = ScalarCombination(model.cfg.n_layers, model.cfg.n_heads, init=1.0)
    if step is not minimal_set:
        # The old step enters `family.using_roles(roles)` around its runs (a context manager the layout removed:
        # roles are now passed to the run). The scalar family has no roles, so the context does nothing.
        combination.using_roles = lambda roles: contextlib.nullcontext()
    start = time.perf_counter()
    result = step(model, batches, "denoising", combination, target, 0.05, **({"rest": rest} if rest != "free" else {}))
    return result, time.perf_counter() - start


def old_pruning(rev: str):
    """`ioi_superpose/pruning.py` at git revision `rev`, as a module, with its rows counted."""
    source = subprocess.run(["git", "show", f"{rev}:ioi_superpose/pruning.py"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout  # fmt: skip
    spec = importlib.util.spec_from_loader("old_pruning", loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_pruning"] = module  # dataclasses look their module up there
    # The layout moved the modules it imports (issue 17); every name it takes from them is still there.
    moved = {"ioi_superpose.interventions": ioi_superpose.combinations, "ioi_superpose.runs": ioi_superpose.engine.runs}
    saved = {name: sys.modules.get(name) for name in moved}
    sys.modules.update(moved)
    try:
        exec(compile(source, f"{rev}:ioi_superpose/pruning.py", "exec"), module.__dict__)
    finally:
        for name, old in saved.items():
            if old is None:
                del sys.modules[name]
            else:
                sys.modules[name] = old
    counted = {"rows": 0}
    inner = module.mask_effects

    def mask_effects(model, batches, direction, family, masks, max_rows=128):
        counted["rows"] += masks.shape[0] * sum(len(batch) for batch in batches)
        return inner(model, batches, direction, family, masks, max_rows)

    module.mask_effects = mask_effects
    return module, counted


def toy_case(old_rev: str) -> None:
    model = load_frozen_model(str(ROOT / "checkpoints" / "toy_ioi.pt"))
    data = IOIDataModule(model_name=str(ROOT / "checkpoints" / "toy_ioi.pt"), corruption="name_swap", n_train=1024,
                         n_val=256, n_test=256, batch_size=64, held_out_name_fraction=0.2, seed=0)  # fmt: skip
    data.setup("fit")
    prompts = data.splits["train"][:256]
    batches = [prompts[start : start + 64].trimmed() for start in range(0, 256, 64)]
    new, new_s = prune_all_heads(model, batches, 0.9, "free")
    old_module, counted = old_pruning(old_rev)
    old, old_s = prune_all_heads(model, batches, 0.9, "free", step=old_module.minimal_set)
    print("\nS = 8 toy case (toy_ioi.pt, 256 prompts, target 0.9, denoising, from all heads at α = 1):")
    print(f"  old (greedy best-first, {old_rev}): rows {counted['rows']:>6}  time {old_s:6.2f} s  "
          f"kept {old.support}  effect {old.effect:.4f}")  # fmt: skip
    print(f"  new (blocks + back-off + 1-min):   rows {new.rows:>6}  time {new_s:6.2f} s  "
          f"kept {new.support}  effect {new.effect:.4f}  ({new.evaluations} variants)")  # fmt: skip


def suite_case(name: str, n_prompts: int, target: float, rest: str, steps: int, l1: float) -> None:
    """Learn + prune on one 144-head suite case, against one single-head sweep on the same prompts."""
    case = next((c for c in gpt2_cases() if c.name == name), None)
    if case is None:
        raise SystemExit(f"--case {name!r}: not a case of the 144-head suite ({[c.name for c in gpt2_cases()]})")
    model, prompts = case.model, case.prompts(n_prompts, seed=0)
    batch = ContrastBatch.from_tokens(prompts.clean_tokens, prompts.corrupted_tokens, prompts.answer_tokens)
    # The truth in this notion: exhaustive search over the case's planted heads (the suite promises the cut's sets
    # only; as circuits, e.g. `composition` needs both of its heads).
    search = search_head_subsets(model, prompts, case.heads, "denoising", target, rest=rest)
    promised = {frozenset(map(tuple, m)) for m in search.minimal_sets}
    sweep_rows, sweep_s = sweep(model, batch, "denoising", rest)
    from ioi_superpose.api import learn_combination

    start = time.perf_counter()
    learned = learn_combination(model, prompts.clean_tokens, prompts.corrupted_tokens, prompts.answer_tokens,
                                steps=steps, l1=l1, prune_target=target, rest=rest)  # fmt: skip
    total = time.perf_counter() - start
    prune = learned.prune
    kept = frozenset(tuple(u[:2]) for u in prune["support"])
    control, control_s = prune_all_heads(model, [batch], target, rest)
    print(f"144-head planted suite, case `{name}` (12 × 12 heads, d_model 128, MLPs, LN), {n_prompts} prompts × "
          f"{prompts.clean_tokens.shape[1]} tokens (the suite's n_ctx), denoising, rest={rest}, target {target}, "
          f"{torch.get_num_threads()} thread(s); minimal sets (exhaustive over the planted heads, this notion) "
          f"{sorted(map(sorted, promised))}")  # fmt: skip
    print(f"  sweep: rows {sweep_rows:>7}  time {sweep_s:7.2f} s   (144 single-head variants, reference runs included)")
    print(f"  learn ({steps} steps, l1 {l1}) + prune, api.learn_combination: {total:.2f} s; learned support "
          f"{prune['start_l0']} heads (effect {prune['start_effect']}) -> kept {sorted(kept)} (effect "
          f"{prune['effect']}, reached {prune['reached']}, a minimal set: {kept in promised}); prune rows "
          f"{prune['rows']}")  # fmt: skip
    print(f"  ratio learn + prune: prune rows / sweep rows {prune['rows'] / sweep_rows:.2f}; learn + prune time / "
          f"sweep time {total / sweep_s:.1f}")  # fmt: skip
    print(f"  step from all 144 heads at α = 1 (no learning): kept {sorted(control.support)} (effect "
          f"{control.effect:.4f}), rows {control.rows} ({control.rows / sweep_rows:.2f} × sweep), time "
          f"{control_s:.2f} s ({control_s / sweep_s:.2f} × sweep)")  # fmt: skip
    print(f"  goals: learn + prune ≤ 180 s: {'met' if total <= 180 else 'MISSED'} ({total:.1f} s); prune rows ≤ 5 × "
          f"sweep rows: {'met' if prune['rows'] <= 5 * sweep_rows else 'MISSED'} "
          f"({prune['rows']} ≤ {5 * sweep_rows}); learn + prune returned a minimal set: "
          f"{'yes' if kept in promised else 'NO'}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--target", type=float, default=0.8)
    parser.add_argument("--rest", choices=["free", "frozen"], default="free")
    parser.add_argument(
        "--old-rev", default="ad19a75", help="git revision of the greedy step to compare on the toy case"
    )
    parser.add_argument("--skip-toy", action="store_true")
    parser.add_argument("--learn-steps", type=int, default=100, help="0: skip the learn + prune run")
    parser.add_argument("--l1", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--case", default="and", help="the 144-head suite case of part 0")
    parser.add_argument("--suite-target", type=float, default=0.9, help="part 0's prune target")
    parser.add_argument("--skip-random", action="store_true", help="skip part 1 (the random GPT-2-shaped model)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    suite_case(args.case, args.prompts, args.suite_target, args.rest, max(args.learn_steps, 1), args.l1)
    if args.skip_random:
        if not args.skip_toy:
            toy_case(args.old_rev)
        return

    model = gpt2_shaped()
    prompts = random_prompts(model, args.prompts, args.tokens)
    sweep_rows, sweep_s = sweep(model, prompts, "denoising", args.rest)
    result, prune_s = prune_all_heads(model, [prompts], args.target, args.rest)
    print(f"GPT-2-shaped random model (12 × 12 heads, d_model 192, MLPs, LN), {args.prompts} prompts × "
          f"{args.tokens} tokens, denoising, rest={args.rest}, {torch.get_num_threads()} thread(s)")  # fmt: skip
    print(f"  minimal-set step from 144 heads at α = 1, target {args.target}: start effect {result.start_effect:.4f}, "
          f"kept {len(result.support)} heads (effect {result.effect:.4f}, reached {result.reached}), "
          f"{result.evaluations} variants")  # fmt: skip
    print(f"  prune: rows {result.rows:>7}  time {prune_s:7.2f} s")
    print(f"  sweep: rows {sweep_rows:>7}  time {sweep_s:7.2f} s   (144 single-head variants)")
    print(f"  ratio prune / sweep: rows {result.rows / sweep_rows:.2f}  time {prune_s / sweep_s:.2f}")
    if args.learn_steps > 0:
        from ioi_superpose.api import learn_combination

        start = time.perf_counter()
        learned = learn_combination(
            model,
            prompts.clean_tokens,
            prompts.corrupted_tokens,
            prompts.answer_tokens,
            steps=args.learn_steps,
            l1=args.l1,
            prune_target=args.target,
            rest=args.rest,
        )
        total = time.perf_counter() - start
        prune = learned.prune
        print(f"  learn ({args.learn_steps} steps, l1 {args.l1}) + prune, api.learn_combination: {total:.2f} s; "
              f"learned support {prune['start_l0']} heads (effect {prune['start_effect']}) -> kept {prune['l0']} "
              f"heads (effect {prune['effect']}, reached {prune['reached']}), prune rows {prune['rows']} "
              f"({prune['rows'] / sweep_rows:.2f} × sweep)")  # fmt: skip
    if not args.skip_toy:
        toy_case(args.old_rev)
    sys.stdout.flush()


if __name__ == "__main__":
    main()

"""Verify the GPT-2-scale planted suite (`ioi_superpose.groundtruth.planted_gpt2`) and print its figures.

For every case, both directions (denoising, noising), recovery threshold 0.9:

1. the fast runner agrees with TransformerLens on the model (`fast_forward.disagreement`);
2. patching ALL of the case's distractors at once (every head outside its planted heads: the random
   heads and the other features' planted heads): |effect| must be < 0.01;
3. exhaustive search over the case's planted heads only (2^|planted| subsets, distractors recompute) must
   give the promised minimal sets;
4. adding each single distractor to each minimal set: |effect(set + d) − effect(set)| must be < 0.01;
5. the engine's effects equal a hooks-only TransformerLens computation on a few subsets (`--hooks-check`).

    python experiments/planted_gpt2_verify.py [--prompts 32] [--seed 0] [--prompt-seed 7]

Exits non-zero when any check fails.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from ioi_superpose.analyses.exhaustive import search_head_subsets, subset_effects
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.engine.fast_forward import disagreement
from ioi_superpose.groundtruth.planted_gpt2 import SuiteCase, case_mask, gpt2_cases

TOLERANCE = 0.01
THRESHOLD = 0.9


def as_sets(sets) -> set[frozenset]:  # noqa: ANN001
    return {frozenset(tuple(h) for h in s) for s in sets}


def hooks_only_effect(model, prompts: ContrastBatch, subset, direction: str) -> float:  # noqa: ANN001
    """One subset's normalised effect with TransformerLens's own forward and a hook_z replacement."""
    base, source = (
        (prompts.corrupted_tokens, prompts.clean_tokens) if direction == "denoising"
        else (prompts.clean_tokens, prompts.corrupted_tokens)
    )  # fmt: skip
    rows, ends, answers = torch.arange(len(base)), prompts.end_pos, prompts.answer_tokens

    def logit_diff(logits: torch.Tensor) -> float:
        at_end = logits[rows, ends]
        return float((at_end.gather(1, answers[:, :1]) - at_end.gather(1, answers[:, 1:])).mean())

    with torch.no_grad():
        source_logits, cache = model.run_with_cache(source)

        def patch(z, hook):  # noqa: ANN001, ANN202
            layer = int(hook.name.split(".")[1])
            for patched_layer, head in subset:
                if patched_layer == layer:
                    z[:, :, head] = cache[hook.name][:, :, head]
            return z

        hooks = [(f"blocks.{layer}.attn.hook_z", patch) for layer in range(model.cfg.n_layers)]
        patched = logit_diff(model.run_with_hooks(base, fwd_hooks=hooks))
        base_ld, source_ld = logit_diff(model(base)), logit_diff(source_logits)
    return (patched - base_ld) / (source_ld - base_ld)


def verify_case(case: SuiteCase, prompts: ContrastBatch, hooks_check: bool) -> tuple[list[str], dict]:
    failures, figures = [], {}
    for direction in ("denoising", "noising"):
        promised = case.denoising_minimal if direction == "denoising" else case.noising_minimal
        all_distractors = case_mask(case.distractors)[None]
        distractor_effect = float(subset_effects(case.model, prompts, all_distractors, direction)[0])
        search = search_head_subsets(case.model, prompts, case.heads, direction, THRESHOLD)
        found = as_sets(search.minimal_sets)
        # each minimal set with each single distractor added, one batch per minimal set
        additions = []
        for minimal in search.minimal_sets:
            masks = torch.stack([case_mask(minimal)] + [case_mask([*minimal, d]) for d in case.distractors])
            effects = subset_effects(case.model, prompts, masks, direction)
            additions.append(float((effects[1:] - effects[0]).abs().max()))
        largest_addition = max(additions, default=float("nan"))
        figures[direction] = dict(
            all_distractors=distractor_effect, minimal=sorted(sorted(s) for s in found),
            min_effect=min((search.subset_effect["+".join(f"{lh[0]}.{lh[1]}" for lh in sorted(s))] for s in found),
                           default=float("nan")),
            max_single_addition=largest_addition, subset_effect=search.subset_effect,
        )  # fmt: skip
        if abs(distractor_effect) >= TOLERANCE:
            failures.append(f"{case.name} {direction}: all distractors move recovery by {distractor_effect:.4f}")
        if found != as_sets(promised):
            failures.append(f"{case.name} {direction}: minimal sets {sorted(map(sorted, found))}, promised {promised}")
        if not largest_addition < TOLERANCE:
            failures.append(
                f"{case.name} {direction}: a single distractor moves a minimal set by {largest_addition:.4f}"
            )
        if hooks_check:  # the empty set, each minimal set, and all planted heads
            for subset in [(), *map(tuple, search.minimal_sets), case.heads]:
                name = "+".join(f"{layer}.{head}" for layer, head in sorted(subset)) or "none"
                reference = hooks_only_effect(case.model, prompts, subset, direction)
                if abs(reference - search.subset_effect[name]) > 1e-4:
                    failures.append(f"{case.name} {direction} {name}: engine {search.subset_effect[name]:.5f}, "
                                    f"hooks-only {reference:.5f}")  # fmt: skip
    return failures, figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0, help="model seed")
    parser.add_argument("--prompt-seed", type=int, default=7)
    parser.add_argument("--no-hooks-check", dest="hooks_check", action="store_false")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    start = time.perf_counter()
    cases = gpt2_cases(args.seed)
    built = time.perf_counter() - start
    failures = []
    models = {id(case.model): case.model for case in cases}  # the circuits' model and the trap's
    for model in models.values():
        planted = {head for case in cases if case.model is model for head in case.heads}
        n_random = model.cfg.n_layers * model.cfg.n_heads - len(planted)
        names = ", ".join(case.name for case in cases if case.model is model)
        print(f"model ({names}): {model.cfg.n_layers} layers × {model.cfg.n_heads} heads, d_model "
              f"{model.cfg.d_model}, d_mlp {model.cfg.d_mlp}, n_ctx {model.cfg.n_ctx}; {n_random} random distractor "
              f"heads")  # fmt: skip
        reason = disagreement(model)
        print(f"fast runner vs TransformerLens: {'agree (1e-4)' if reason is None else reason}")
        failures += [] if reason is None else [f"disagreement: {reason}"]
    print(f"{len(models)} models built in {built:.2f} s")
    worst_distractors, worst_addition = 0.0, 0.0
    for case in cases:
        t0 = time.perf_counter()
        case_failures, figures = verify_case(case, case.prompts(args.prompts, args.prompt_seed), args.hooks_check)
        failures += case_failures
        for direction, f in figures.items():
            worst_distractors = max(worst_distractors, abs(f["all_distractors"]))
            worst_addition = max(worst_addition, f["max_single_addition"])
            minimal = " or ".join("{" + ", ".join(f"{lh[0]}.{lh[1]}" for lh in s) + "}" for s in f["minimal"])
            print(f"{case.name:17s} {direction:9s} minimal {minimal:28s} (effect ≥ {f['min_effect']:.3f}) "
                  f"all {len(case.distractors)} distractors {f['all_distractors']:+.2e}  "
                  f"max single-distractor addition {f['max_single_addition']:.2e}")  # fmt: skip
            print(f"{'':27s} planted subsets: " + ", ".join(f"{k} {v:.3f}" for k, v in f["subset_effect"].items()))
        print(f"{'':27s} ({time.perf_counter() - t0:.1f} s)")
    print(f"max |all-distractor effect| {worst_distractors:.2e}; max single-distractor addition {worst_addition:.2e}; "
          f"total {time.perf_counter() - start:.1f} s")  # fmt: skip
    for failure in failures:
        print("FAIL", failure)
    print("all checks passed" if not failures else f"{len(failures)} checks failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

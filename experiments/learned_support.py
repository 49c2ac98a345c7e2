"""Does the learned head combination select exactly the heads that implement each toy feature?

For both shipped superposition checkpoints and every feature: the ground-truth support (smallest head
subset reaching --threshold recovery, exhaustive patching) next to the learned support (|α| >
--l0-threshold after `learn_combination` on the same prompts), with micro-averaged precision/recall
per model and overall. Goal: 1.0 / 1.0.

    python experiments/learned_support.py [--prompts 128] [--l1 1e-3] [--output runs/learned_support.json]
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from pathlib import Path

import torch

from ioi_superpose.files import write_json
from ioi_superpose.groundtruth.support_scoring import (
    DEFAULT_LEARN_KWARGS,
    SupportComparison,
    compare_supports,
    micro_precision_recall,
)
from ioi_superpose.models.toy import load_toy_checkpoint
from ioi_superpose.toy.skip_trigrams import SkipTrigramTask

CHECKPOINT_DIR = Path(__file__).resolve().parents[1] / "checkpoints"
CHECKPOINTS = {
    "single": CHECKPOINT_DIR / "toy_superposition_single.pt",
    "conjunction": CHECKPOINT_DIR / "toy_superposition_conjunction.pt",
}


def heads(pairs: list[tuple[int, int]]) -> str:
    return "{" + ", ".join(f"{layer}.{head}" for layer, head in pairs) + "}"


def fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def print_table(name: str, comparison: SupportComparison, seconds: float) -> None:
    print(f"\n== {name}  ({seconds:.1f} s)")
    print(
        f"{'feature':<11} {'truth':<12} {'truth rec':>9}  {'learned':<12} {'alpha':<22} "
        f"{'rec':>6} {'P':>5} {'R':>5} exact"
    )
    for r in comparison.records:
        alpha = " ".join(f"{v:.3f}" for row in r.alpha for v in row)
        print(
            f"{r.feature:<11} {heads(r.truth):<12} {r.truth_recovery:>9.3f}  {heads(r.learned):<12} {alpha:<22} "
            f"{r.learned_recovery:>6.3f} {fmt(r.precision):>5} {fmt(r.recall):>5} {'yes' if r.exact else 'NO'}"
        )
    print(
        f"micro precision {fmt(comparison.precision)}  recall {fmt(comparison.recall)}  "
        f"exact {comparison.n_exact}/{len(comparison.records)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=128, help="clean/corrupted prompts per feature")
    parser.add_argument("--seed", type=int, default=0, help="seed of the feature prompts")
    parser.add_argument("--threshold", type=float, default=0.9, help="ground-truth recovery threshold")
    parser.add_argument(
        "--objective", choices=["logit_diff", "kl", "maximize"], default=DEFAULT_LEARN_KWARGS["objective"]
    )
    parser.add_argument("--l1", type=float, default=DEFAULT_LEARN_KWARGS["l1"], help="L1 weight on α")
    parser.add_argument("--steps", type=int, default=DEFAULT_LEARN_KWARGS["steps"])
    parser.add_argument("--lr", type=float, default=DEFAULT_LEARN_KWARGS["lr"])
    parser.add_argument("--init", type=float, default=DEFAULT_LEARN_KWARGS["init"], help="initial α of every head")
    parser.add_argument(
        "--l0-threshold",
        type=float,
        default=DEFAULT_LEARN_KWARGS["l0_threshold"],
        help="a head is in the learned support when |α| exceeds this",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest for these toys)")
    parser.add_argument("--output", type=Path, default=Path("runs/learned_support.json"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # one "GPU available" per fit otherwise
    warnings.filterwarnings("ignore", message=".*val_dataloader.*")  # learn_combination fits without validation
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning's own deprecation notice
    learn_kwargs = dict(objective=args.objective, l1=args.l1, steps=args.steps, lr=args.lr, init=args.init,
                        l0_threshold=args.l0_threshold)  # fmt: skip
    start = time.perf_counter()
    results: dict[str, dict] = {}
    all_records = []
    for name, path in CHECKPOINTS.items():
        model_start = time.perf_counter()
        model, metadata = load_toy_checkpoint(path)
        task = SkipTrigramTask(**metadata["task_parameters"])
        comparison = compare_supports(model, task, None, args.prompts, args.seed, learn_kwargs, args.threshold)
        seconds = time.perf_counter() - model_start
        print_table(name, comparison, seconds)
        results[name] = {"checkpoint": str(path), "task": metadata["task"], "seconds": round(seconds, 2),
                         **comparison.to_dict()}  # fmt: skip
        all_records += comparison.records
    precision, recall = micro_precision_recall(all_records)
    n_exact = sum(r.exact for r in all_records)
    total = time.perf_counter() - start
    print(f"\noverall: precision {fmt(precision)}  recall {fmt(recall)}  exact {n_exact}/{len(all_records)}  "
          f"({total:.1f} s)")  # fmt: skip
    write_json(args.output, {
        "prompts": args.prompts, "seed": args.seed, "threshold": args.threshold,
        "models": results,
        "overall": {"precision": precision, "recall": recall, "n_exact": n_exact, "n_features": len(all_records)},
        "seconds": round(total, 2),
    })  # fmt: skip
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

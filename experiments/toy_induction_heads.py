"""Does the learned α find the induction circuit of the toy induction model? Writes
experiments/reports/toy_induction/report.md (and report.json).

    python experiments/toy_induction_heads.py      # a minute or two on a CPU; needs checkpoints/toy_induction.pt
                                                   # (python -m ioi_superpose.train_toy fit --config
                                                   #  experiments/toy_induction_model.yaml)

The known answer (Olsson et al. 2022): a previous-token head in layer 0 and an induction head in layer 1. On 128
prompts of the `induction` task (seed 0, its default corruption: the first half resampled but the trigger, so the
token before the answer's first occurrence is the same in both runs), for each notion — denoising cut, denoising
circuit (`rest=frozen`), noising with mean ablation — the script reports: the smallest head sets reaching effect 0.9
by exhaustive search over all 2^8 subsets (the ground truth of that notion), the learned `scalar` α after its
minimal-set step (`prune_target` 0.9), and exact activation patching's best heads; then every other baseline of the
scorer registry on the paired contrast, and the head-type table (`analyses/head_types.py`: TransformerLens's
detector scores on the clean prompts).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ioi_superpose.analyses.exhaustive import search_subsets
from ioi_superpose.analyses.head_types import detector_head_types
from ioi_superpose.api import learn_combination
from ioi_superpose.baselines.scorers import SCORERS, activation_patching
from ioi_superpose.models import load_frozen_model, load_tokenizer
from ioi_superpose.results.tables import head_types_table
from ioi_superpose.tasks import make_task

CHECKPOINT = "checkpoints/toy_induction.pt"
OUT = Path("experiments/reports/toy_induction")
NOTIONS: dict[str, dict[str, str]] = {
    "denoising cut": {"direction": "denoising", "rest": "free", "ablation": "corrupted"},
    "denoising circuit (rest frozen)": {"direction": "denoising", "rest": "frozen", "ablation": "corrupted"},
    "noising, mean ablation": {"direction": "noising", "rest": "free", "ablation": "mean"},
}


def top_heads(scores: torch.Tensor, k: int = 2) -> list[tuple[int, int]]:
    n_heads = scores.shape[1]
    return [divmod(int(i), n_heads) for i in scores.flatten().abs().argsort(descending=True)[:k]]


def main() -> None:
    torch.set_num_threads(1)
    model = load_frozen_model(CHECKPOINT)
    prompts = make_task("induction").splits(load_tokenizer(CHECKPOINT), {"train": 128}, seed=0)["train"].batch
    types = detector_head_types(model, prompts)
    previous_token = (0, int(types["previous_token"][0].argmax()))
    induction = (1, int(types["induction"][1].argmax()))
    known = {previous_token, induction}
    report: dict[str, Any] = {"previous_token_head": previous_token, "induction_head": induction, "notions": {}}
    for name, notion in NOTIONS.items():
        search = search_subsets(model, prompts, notion["direction"], 0.9, rest=notion["rest"],
                                ablation=notion["ablation"])  # fmt: skip
        learned = learn_combination(model, prompts.clean_tokens, prompts.corrupted_tokens, prompts.answer_tokens,
                                    end_positions=prompts.end_pos, steps=300, l1=3e-3, prune_target=0.9,
                                    **notion)  # fmt: skip
        patching = activation_patching(model, prompts, notion["direction"], rest=notion["rest"],
                                       ablation=notion["ablation"])  # fmt: skip
        report["notions"][name] = {
            "exhaustive_minimal_sets": [sorted(map(tuple, s)) for s in search.minimal_sets],
            "learned_recovery": round(learned.recovery, 3),
            "learned_l0_before_step": learned.prune["start_l0"] if learned.prune else None,
            "pruned_support": sorted(map(tuple, learned.prune["support"])) if learned.prune else None,
            "activation_patching_top2": top_heads(patching),
            "single_head_effect": search.single_head_effect,
        }  # fmt: skip
    report["baselines_top2"] = {
        name: top_heads(scorer.score(model, prompts, "denoising")) for name, scorer in SCORERS.items()
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "report.json").write_text(json.dumps(report, indent=1, default=list) + "\n")
    (OUT / "report.md").write_text(markdown(report, types, known))
    print((OUT / "report.md").read_text())


def markdown(report: dict[str, Any], types: dict[str, torch.Tensor], known: set[tuple[int, int]]) -> str:
    def heads(value: Any) -> str:
        return ", ".join(f"{layer}.{head}{' ★' if (layer, head) in known else ''}" for layer, head in value) or "—"

    lines = [
        "# The induction circuit of the toy induction model",
        "",
        f"Produced by `python experiments/toy_induction_heads.py` on {CHECKPOINT}: 128 `induction` prompts (seed 0, "
        "corruption `resample_first_half`). ★: the head-type table's previous-token head of layer 0 "
        f"({heads([report['previous_token_head']])}, largest previous-token score) and induction head of layer 1 "
        f"({heads([report['induction_head']])}, largest induction score).",
        "",
        "| notion | exhaustive: smallest sets with effect ≥ 0.9 | learned α: L0 before the minimal-set step | "
        "after it | its recovery | activation patching, top 2 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in report["notions"].items():
        minimal = "; ".join(heads(s) for s in row["exhaustive_minimal_sets"]) or "none reaches 0.9"
        lines.append(f"| {name} | {minimal} | {row['learned_l0_before_step']} | "
                     f"{heads(row['pruned_support'] or [])} | {row['learned_recovery']} | "
                     f"{heads(row['activation_patching_top2'])} |")  # fmt: skip
    lines += ["", "Baselines of the scorer registry on the paired contrast (denoising), their two best heads:", "",
              "| baseline | top 2 |", "| --- | --- |"]  # fmt: skip
    lines += [f"| {name} | {heads(top)} |" for name, top in report["baselines_top2"].items()]
    lines += ["", "Head types (clean prompts):", "", head_types_table(types, sorted(known)), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

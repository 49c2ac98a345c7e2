"""Causal scrubbing of the toy IOI model's learned head set under the natural hypotheses and their negations; writes
experiments/reports/toy_ioi_scrub/report.md (and scrub.json).

    python experiments/toy_ioi_scrub.py      # about ten minutes on one CPU thread

The learned set is the main job's (`python -m ioi_superpose.train fit --config experiments/toy_ioi.yaml`, run here
into a temporary directory; its support is read from summary.json). Hypotheses: the learned set reading the names
(io, s), the position (template_id, order: where the names stand), or one name; the learned set with layer 1 added,
layer 0 reading the names and layer 1 the position (the two-step reading of README's toy IOI paragraph), its
negation, and finer ones (layer 0 reading the names with the order or the template, layer 1 the names). Prompt sets (the IOI task's `val` set, seed 0, clean prompts): the main job's 256
validation prompts (the checkpoint's 79 training names: almost every (io, s) pair is a class of one, where the scrub
cannot test the claim), and 1024 prompts over 4 of those names (12 (io, s) classes of about 85 prompts).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ioi_superpose.analyses.scrubbing import Hypothesis, scrub
from ioi_superpose.data.name_split import checkpoint_name_split
from ioi_superpose.models import load_frozen_model, load_tokenizer
from ioi_superpose.tasks.ioi import IOITask

CHECKPOINT = "checkpoints/toy_ioi.pt"
OUT = Path("experiments/reports/toy_ioi_scrub")
DRAWS = 16
NAMES, POSITION = ("io", "s"), ("template_id", "order")
LAYER1 = [(1, head) for head in range(4)]


def learned_set() -> tuple[list[tuple[int, int]], dict]:
    """The main job's learned heads and its validation recovery (a fresh run in a temporary directory)."""
    with tempfile.TemporaryDirectory() as runs:
        command = [sys.executable, "-m", "ioi_superpose.train", "fit", "--config", "experiments/toy_ioi.yaml",
                   "--trainer.logger.init_args.save_dir", runs, "--trainer.enable_progress_bar", "false"]  # fmt: skip
        subprocess.run(command, check=True, capture_output=True, text=True)
        summary = json.loads(next(Path(runs).glob("*/version_*/summary.json")).read_text())
    heads = [(int(unit[0]), int(unit[1])) for unit in summary["support"]]
    return heads, {"l0": summary["l0"], "val_recovery": summary["recovery"]["val"]}


def hypotheses(learned: list[tuple[int, int]]) -> dict[str, tuple[str, dict]]:
    """name → (what it claims, the claims)."""

    def on(heads, features):
        return {head: features for head in heads}

    return {
        "learned: names": ("the learned heads read the names (natural)", on(learned, NAMES)),
        "learned: position": ("they read where the names stand instead (negation)", on(learned, POSITION)),
        "learned: io only": ("they read the IO name only", on(learned, ("io",))),
        "learned: s only": ("they read the S name only", on(learned, ("s",))),
        "learned names + layer 1 position": ("layer 0 reads the names, layer 1 the position (natural two-step)",
                                             {**on(learned, NAMES), **on(LAYER1, POSITION)}),
        "learned position + layer 1 names": ("the negation of both", {**on(learned, POSITION), **on(LAYER1, NAMES)}),
        "learned names + layer 1 names": ("layer 1 reads the names too", {**on(learned, NAMES), **on(LAYER1, NAMES)}),
        "learned + layer 1, names and position": ("every head reads names and position (finest)",
                                                  {**on(learned, NAMES + POSITION), **on(LAYER1, NAMES + POSITION)}),
        "learned names + order, layer 1 names": ("layer 0 reads the names and which comes first, layer 1 the names",
                                                 {**on(learned, (*NAMES, "order")), **on(LAYER1, NAMES)}),
        "learned names + template, layer 1 names": ("layer 0 reads the names and the template, layer 1 the names",
                                                    {**on(learned, (*NAMES, "template_id")), **on(LAYER1, NAMES)}),
    }  # fmt: skip


def main() -> None:
    torch.set_num_threads(1)
    started = time.time()
    learned, run = learned_set()
    model, encoder = load_frozen_model(CHECKPOINT), load_tokenizer(CHECKPOINT)
    held_out, train = checkpoint_name_split(CHECKPOINT, 0.2)
    sets = {
        f"val, {len(train)} names, 256 prompts": IOITask(name_split=(held_out, train)).prompts(encoder, "val", 256, 0),
        f"val, 4 names ({', '.join(train[:4])}), 1024 prompts": IOITask(name_split=(held_out, train[:4])).prompts(
            encoder, "val", 1024, 0
        ),
    }
    rows, records = [], []
    for set_name, prompts in sets.items():
        for name, (says, claims) in hypotheses(learned).items():
            scores = scrub(model, Hypothesis(claims), prompts, versions=("flat", "treeified"), draws=DRAWS, task="ioi")
            for version, score in scores.items():
                records.append({"set": set_name, "hypothesis": name, **score.to_dict()})
                lowest = min(score.mean_class_size.values())
                singleton = max(score.singleton_share.values())
                rows.append(
                    f"| {set_name} | {name} | {says} | {version} | {score.fraction:.3f} | [{score.interval[0]:.3f}, "
                    f"{score.interval[1]:.3f}] | {score.clean:.2f} / {score.resampled:.2f} / {score.scrubbed:.2f} | "
                    f"{lowest:.1f} | {singleton:.2f} |"
                )
            print(rows[-2], rows[-1], sep="\n", flush=True)
    heads = ", ".join(f"{l}.{h}" for l, h in learned)
    lines = [
        "# Causal scrubbing of the toy IOI model's learned heads",
        "",
        f"Generated by `python experiments/toy_ioi_scrub.py`. Learned set: the main job's ({heads}; L0 {run['l0']}, "
        f"val recovery {run['val_recovery']:.3f}, a fresh run). Fraction = (scrubbed − fully resampled) / (clean − "
        f"fully resampled) of the clean prompts' mean logit difference IO − S; {DRAWS} draws (seed 0), 95 % "
        "bootstrap interval over the draws. A head in the hypothesis takes its z from a prompt that agrees on its "
        "features (uniformly within the class, itself included); every other head from a random other prompt. Flat: "
        "each head's z from the unpatched run of its source; treeified: a layer-1 head of the hypothesis runs on its "
        "source with layer 0 drawn again relative to that prompt (docs/causal_scrubbing.md). Features: io, s (the "
        "names), template_id and order (ABBA/BABA; fixed by the template): position = template_id and order.",
        "",
        "Columns: clean / fully resampled / scrubbed mean logit difference; the smallest mean class size over the "
        "hypothesis's heads and the largest share of prompts alone in their class (their claim is not tested: the "
        "source is the prompt itself).",
        "",
        "| prompts | hypothesis | claims | version | fraction | 95 % interval | clean / resampled / scrubbed | "
        "mean class size (min) | alone in class (max) |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Wall time {time.time() - started:.0f} s (one thread; the machine was shared, so not a benchmark).",
        "",
    ]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "scrub.json").write_text(json.dumps({"learned": learned, "run": run, "scores": records}, indent=1))
    (OUT / "report.md").write_text("\n".join(lines))
    print(f"wrote {OUT / 'report.md'}")


if __name__ == "__main__":
    main()

"""Report on the GPT-2-shaped models trained on the task mixture (docs/trained_models.md):

    python experiments/trained_models_report.py

For each checkpoint (default: checkpoints/trained_task_mixture_seed{0,1}.pt):

- what it does on each task: accuracy (the correct answer set beats the incorrect one under the task's metric),
  top-1 accuracy, and the mean metric on clean and corrupted prompts, per set (in distribution and each
  off-distribution set), as measured at export (the checkpoint's JSON: 512 fresh prompts per set);
- how distributed each task's mechanism is: every head's single-head activation patching effect (z at all
  positions, the project's `baselines.patching.activation_patch`, under the task's own metric) on `--prompts`
  fresh in-distribution prompts, in both directions, as a share of the clean − corrupted gap; the number of heads
  above +1 % and below −1 %, the largest of each sign, and the sum over heads;
- its training curve (validation loss and each task's accuracy against the step), as a PNG beside the checkpoint.

Writes `--out`/report.json, report.md and effects_seed<k>.png (heatmaps of the denoising effects).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ioi_superpose.baselines.single_head import single_head_effects  # noqa: E402
from ioi_superpose.files import write_json  # noqa: E402
from ioi_superpose.models import load_frozen_model  # noqa: E402
from ioi_superpose.models.loading import load_toy_metadata  # noqa: E402
from ioi_superpose.toy.task_mixture import TaskMixtureDataModule  # noqa: E402

CHECKPOINTS = ("checkpoints/trained_task_mixture_seed0.pt", "checkpoints/trained_task_mixture_seed1.pt")
THRESHOLD = 0.01
"""A head counts when its single-head effect exceeds 1 % of the clean − corrupted gap."""


def effect_summary(effects: torch.Tensor) -> dict[str, Any]:
    flat = effects.flatten()
    n_heads = effects.shape[1]
    top, bottom = int(flat.argmax()), int(flat.argmin())
    return {
        "above_1pct": int((flat > THRESHOLD).sum()),
        "below_minus_1pct": int((flat < -THRESHOLD).sum()),
        "largest": [f"{top // n_heads}.{top % n_heads}", round(float(flat[top]), 4)],
        "most_negative": [f"{bottom // n_heads}.{bottom % n_heads}", round(float(flat[bottom]), 4)],
        "sum": round(float(flat.sum()), 4),
        "effects": [[round(float(v), 5) for v in row] for row in effects],
    }


def curve_figure(curve: list[dict[str, Any]], tasks: list[str], title: str, path: Path) -> None:
    steps = [point["step"] for point in curve]
    figure, (loss_axis, task_axis) = plt.subplots(1, 2, figsize=(11, 4))
    labels = {"train/loss": "train/loss (the step's batch)", "val/loss": "val/loss"}
    for key, label in labels.items():
        loss_axis.plot(steps, [point.get(key) for point in curve], label=label, marker=".")
    loss_axis.set(xlabel="step", ylabel="next-token loss", title=f"{title}: loss")
    loss_axis.legend()
    for task in tasks:
        task_axis.plot(steps, [point[task]["accuracy"] for point in curve], label=task, marker=".")
    task_axis.set(xlabel="step", ylabel="accuracy on 128 validation prompts", ylim=(0, 1.02),
                  title=f"{title}: correct set beats incorrect set")  # fmt: skip
    task_axis.axhline(0.5, color="grey", lw=0.5)
    task_axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def effects_figure(effects: dict[str, torch.Tensor], title: str, path: Path) -> None:
    figure, axes = plt.subplots(1, len(effects), figsize=(4 * len(effects), 4))
    for axis, (task, values) in zip(axes, effects.items()):
        bound = max(float(values.abs().max()), THRESHOLD)
        image = axis.imshow(values, cmap="RdBu", vmin=-bound, vmax=bound)
        axis.set(title=f"{task}", xlabel="head", ylabel="layer", xticks=range(values.shape[1]),
                 yticks=range(values.shape[0]))  # fmt: skip
        axis.tick_params(labelsize=7)
        figure.colorbar(image, ax=axis, shrink=0.8, label="effect (share of the gap)")
    figure.suptitle(f"{title}: single-head denoising effects (share of the clean − corrupted gap)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Models trained here at GPT-2's head count: what they do and how distributed it is",
        "",
        f"Written by `python experiments/trained_models_report.py` ({report['seconds']} s). Task scores: the "
        "checkpoint's export, 512 fresh prompts per set. Head effects: single-head activation patching of z at "
        f"all positions on {report['prompts']} fresh in-distribution prompts (seed {report['seed']}), under each "
        "task's metric, as a share of the clean − corrupted gap (0 = the base run, 1 = the source run).",
        "",
        "## Task scores (in distribution)",
        "",
        "| model | task | metric | accuracy | top-1 | clean | corrupted |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, model in report["models"].items():
        for task, scores in model["tasks"].items():
            s, metric = scores["in_distribution"], scores["metric"]
            lines.append(f"| {name} | {task} | {metric} | {s['accuracy']:.3f} | {s['top1_accuracy']:.3f} | "
                         f"{s[f'clean_{metric}']:.3f} | {s[f'corrupted_{metric}']:.3f} |")  # fmt: skip
    lines += ["", "## Off-distribution sets (accuracy; clean metric)", "",
              "| model | task | set | accuracy | clean metric |", "| --- | --- | --- | --- | --- |"]  # fmt: skip
    for name, model in report["models"].items():
        for task, scores in model["tasks"].items():
            for set_name, s in scores.items():
                if set_name in ("metric", "in_distribution"):
                    continue
                lines.append(f"| {name} | {task} | {set_name} | {s['accuracy']:.3f} | "
                             f"{s['clean_' + scores['metric']]:.3f} |")  # fmt: skip
    lines += [
        "", "## How many heads carry each task (single-head effect beyond ±1 % of the gap, of 144 heads)", "",
        "| model | task | direction | heads > +1 % | heads < −1 % | largest | most negative | sum of effects |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]  # fmt: skip
    for name, model in report["models"].items():
        for task, directions in model["effects"].items():
            for direction, s in directions.items():
                lines.append(f"| {name} | {task} | {direction} | {s['above_1pct']} | {s['below_minus_1pct']} | "
                             f"{s['largest'][0]} ({s['largest'][1]:+.3f}) | {s['most_negative'][0]} "
                             f"({s['most_negative'][1]:+.3f}) | {s['sum']:+.3f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", nargs="+", default=list(CHECKPOINTS))
    parser.add_argument("--prompts", type=int, default=128, help="in-distribution prompts per task for the effects")
    parser.add_argument("--seed", type=int, default=20_000)
    parser.add_argument("--out", default="experiments/reports/trained_models")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"prompts": args.prompts, "seed": args.seed, "models": {}}
    for path in map(Path, args.checkpoints):
        model, metadata = load_frozen_model(str(path)), load_toy_metadata(path)
        data = TaskMixtureDataModule(**{k: v for k, v in metadata["task_parameters"].items() if not k.startswith("_")})
        if data.tokenizer.to_dict() != metadata["tokenizer"]:
            raise SystemExit(f"{path}: its stored tokenizer is not the task mixture's; retrain it with this code.")
        name = path.stem
        entry: dict[str, Any] = {"tasks": metadata["metrics"]["tasks"], "effects": {}}
        denoising = {}
        for task_name, task in data.tasks.items():
            prompts = data.task_prompts(task_name, "in_distribution", args.prompts, args.seed)
            entry["effects"][task_name] = {}
            for direction in ("denoising", "noising"):
                effects = single_head_effects(model, prompts.batch, task.metric, direction).cpu()
                entry["effects"][task_name][direction] = effect_summary(effects)
                if direction == "denoising":
                    denoising[task_name] = effects
            print(f"{name} {task_name}: " + ", ".join(
                f"{d} +{s['above_1pct']}/-{s['below_minus_1pct']}" for d, s in entry["effects"][task_name].items()
            ), flush=True)  # fmt: skip
        curve = metadata["metrics"].get("curve") or []
        if curve:
            curve_figure(curve, list(data.tasks), name, path.with_name(f"{name}_curve.png"))
        effects_figure(denoising, name, out / f"effects_{name}.png")
        report["models"][name] = entry
    report["seconds"] = round(time.perf_counter() - started, 1)
    write_json(out / "report.json", report)
    (out / "report.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()

"""What a run leaves behind: `coefficients.pt`, `summary.json`, the α heatmap, the baselines' figures and
the max-activating table, all written atomically by one `RunWriter` that the CLI and the API share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from matplotlib.figure import Figure
from torch import Tensor

from ioi_superpose.baselines.ioi_heads import circuit_precision_recall, has_gpt2_small_shape
from ioi_superpose.files import atomic_write, write_json
from ioi_superpose.results.caveats import alpha_state
from ioi_superpose.results.plots import head_heatmap, save_figure
from ioi_superpose.results.schema import Distribution, IOICircuit, Recovery, RunSummary, Unit
from ioi_superpose.training.system import IN_DISTRIBUTION, HeadSuperposition, metric_prefix


class Baseline(Protocol):
    """What the writer reads of a baseline's result (`baselines.compute.HeadScores`, `CombinationCurves`)."""

    name: str

    def summary(self, system: HeadSuperposition) -> dict: ...

    def figures(self, system: HeadSuperposition) -> dict[str, Figure]: ...


class ExamplesTable(Protocol):
    """What the writer reads of the max-activating examples (`max_activating.MaxActivating`)."""

    def to_markdown(self) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


def top_heads(
    values: Tensor, k: int = 20, threshold: float = 0.0, key: str = "alpha", roles: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """The (at most k) units of largest |value| above `threshold`, largest first: heads of a
    [layer, head] tensor, (head, role) pairs of a [layer, head, role] one (role named from `roles`,
    default `combinations.ROLES`), or (head, source head) entries of a `mixing` map [layer, head,
    source_layer, source_head] (layer, head: the target)."""
    from ioi_superpose.combinations import ROLES

    flat = values.flatten()
    order = flat.abs().argsort(descending=True)[:k]
    rows = []
    for i in order:
        if abs(float(flat[i])) <= threshold:
            continue
        index = torch.unravel_index(i, values.shape)
        row: dict[str, Any] = {"layer": int(index[0]), "head": int(index[1])}
        if values.dim() == 3:
            row["role"] = (roles or ROLES)[int(index[2])]
        if values.dim() == 4:
            row["source_layer"], row["source_head"] = int(index[2]), int(index[3])
        row[key] = round(float(flat[i]), 4)
        rows.append(row)
    return rows


def stage_metrics(metrics: dict[str, float], stage: str, set_name: str) -> dict[str, float]:
    """The metrics of one evaluation set, without their `val/` or `test/<set>/` prefix."""
    prefix = metric_prefix(stage, set_name)
    return {
        key[len(prefix) :]: float(value)
        for key, value in metrics.items()
        if key.startswith(prefix) and "/" not in key[len(prefix) :]
    }


MIN_GAP = 0.5
"""Below this clean − corrupted gap in mean logit difference the model does not tell the two prompts apart,
and recovery (a ratio over that gap) is noise: reported as null, with the gap."""


def has_gap(clean_logit_diff: float, corrupted_logit_diff: float) -> bool:
    """Whether the model tells a set's clean prompts from its corrupted ones (recovery is then defined)."""
    return abs(clean_logit_diff - corrupted_logit_diff) >= MIN_GAP


def recovery_or_none(metrics: dict[str, float]) -> float | None:
    gap = has_gap(metrics.get("clean_logit_diff", 0.0), metrics.get("corrupted_logit_diff", 0.0))
    return metrics.get("recovery") if gap else None


def build_summary(
    system: HeadSuperposition,
    val_metrics: dict[str, float],
    test_metrics: dict[str, float],
    test_set_names: Sequence[str],
    config: dict,
    baselines: Sequence[Baseline] = (),
    per_prompt: dict[str, dict] | None = None,
    steps: int | None = None,
) -> RunSummary:
    """`per_prompt`: the distribution of each set's per-prompt recovery (`analysis.distribution`).
    `steps`: optimisation steps α has taken (`caveats.alpha_state`: 0 means the summary is of the initial α)."""
    alpha = system.combination.coefficients.detach().cpu()
    cfg = system.frozen.cfg
    val = stage_metrics(val_metrics, "val", IN_DISTRIBUTION)
    tests = {name: stage_metrics(test_metrics, "test", name) for name in test_set_names}
    circuit = (
        circuit_precision_recall(system.combination.head_coefficients().cpu(), system.hparams.l0_threshold)
        if has_gpt2_small_shape(cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_vocab)
        else None
    )
    return RunSummary(
        model_name=system.hparams.model_name,
        direction=system.hparams.direction,
        objective=system.hparams.objective,
        alpha=None if steps is None else alpha_state(steps),
        steps=steps,
        recovery=Recovery(val=recovery_or_none(val), test={name: recovery_or_none(m) for name, m in tests.items()}),
        min_gap_for_recovery=MIN_GAP,
        clean_logit_diff=val.get("clean_logit_diff"),
        corrupted_logit_diff=val.get("corrupted_logit_diff"),
        patched_logit_diff=val.get("logit_diff"),
        clean_accuracy=val.get("clean_accuracy"),
        patched_accuracy=val.get("accuracy"),
        l0=system.combination.l0(system.hparams.l0_threshold),
        l0_threshold=system.hparams.l0_threshold,
        n_heads_total=cfg.n_layers * cfg.n_heads,
        # rotation's units are directions, not heads: its top heads are its [layer, head] view (dims per head).
        top_heads=[Unit(**row) for row in top_heads(
            system.combination.head_coefficients().cpu() if system.hparams.get("combination") == "rotation" else alpha,
            threshold=system.hparams.l0_threshold,
        )],  # fmt: skip
        combination=system.hparams.get("combination", "scalar"),
        rest=system.hparams.get("rest", "free"),
        support=[list(unit) for unit in system.combination.support(system.hparams.l0_threshold)],
        prune=None if getattr(system, "prune_result", None) is None else system.prune_result.to_dict(),
        rotation=getattr(system, "rotation_result", None),
        circuit=getattr(system, "circuit_result", None),
        head_types=getattr(system, "head_types_result", None),
        val=val,
        test=tests,
        per_prompt_recovery={name: Distribution.from_dict(d) for name, d in (per_prompt or {}).items()},
        baselines={baseline.name: baseline.summary(system) for baseline in baselines},
        ioi_circuit=None if circuit is None else IOICircuit.from_dict(circuit, "circuit_precision_recall"),
        config=config,
    )


class RunWriter:
    """Writes a run's results into `run_dir`; the CLI (after fit) and the API use the same one."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)

    def write(
        self,
        system: HeadSuperposition,
        summary: RunSummary,
        baselines: Sequence[Baseline] = (),
        max_activating: ExamplesTable | None = None,
        figures: Mapping[str, Figure] | None = None,
        files: Mapping[str, Any] | None = None,
    ) -> dict[str, Path]:
        """coefficients.pt (α and what it was learned for), coefficients.png, baselines/*.png,
        max_activating.md / .json (when given), `figures` as `<stem>.png` and `files` as JSON `<name>` (the run's
        other figures and records), and summary.json last: a run directory with a summary.json is complete."""
        alpha = system.combination.coefficients.detach().cpu().clone()
        paths = {
            "coefficients": self.run_dir / "coefficients.pt",
            "heatmap": self.run_dir / "coefficients.png",
        }
        payload = {
            "coefficients": alpha, "model_name": summary.model_name, "direction": summary.direction,
            "objective": summary.objective,
        }  # fmt: skip
        atomic_write(paths["coefficients"], lambda name: torch.save(payload, name))
        self._figure(
            paths["heatmap"],
            head_heatmap(
                system.combination.head_coefficients().cpu(),
                f"Learned α: {summary.direction}, {summary.combination}, L0 = {summary.l0} "
                f"({Path(system.hparams.model_name).name})",
                label="α (0: base z, 1: source z)",
            ),
        )
        for stem, figure in (figures or {}).items():
            self._figure(self.run_dir / f"{stem}.png", figure)
        if figures:
            paths["figures"] = self.run_dir / ("{" + ",".join(figures) + "}.png")
        for name, content in (files or {}).items():
            paths[Path(name).stem] = write_json(self.run_dir / name, content)
        for baseline in baselines:
            for stem, figure in baseline.figures(system).items():
                self._figure(self.run_dir / "baselines" / f"{stem}.png", figure)
        if baselines:
            paths["baselines"] = self.run_dir / "baselines"
        if max_activating is not None:
            text = max_activating.to_markdown()
            paths["max_activating"] = atomic_write(
                self.run_dir / "max_activating.md", lambda name: Path(name).write_text(text)
            )
            paths["max_act_json"] = write_json(self.run_dir / "max_activating.json", max_activating.to_dict())
        paths["summary"] = write_json(self.run_dir / "summary.json", summary.to_dict())
        return paths

    @staticmethod
    def _figure(path: Path, figure: Figure) -> None:
        atomic_write(path, lambda name: save_figure(figure, name))

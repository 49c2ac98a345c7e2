"""What a run leaves behind: `coefficients.pt`, `summary.json`, the α heatmap, the baselines' figures and
the max-activating table, all written atomically by one `RunWriter` that the CLI and the API share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from ioi_superpose.analyses.corpus import corpus_examples
from ioi_superpose.analyses.max_activating import MaxActivating
from ioi_superpose.analyses.post_fit import AfterFit
from ioi_superpose.baselines.compute import BaselineResult
from ioi_superpose.baselines.figures import baseline_figures
from ioi_superpose.baselines.ioi_heads import circuit_precision_recall, has_gpt2_small_shape
from ioi_superpose.data.answer_metrics import MetricName
from ioi_superpose.data.corpus import read_corpus
from ioi_superpose.data.splits import IN_DISTRIBUTION, metric_prefix
from ioi_superpose.engine.metric import MIN_GAPS, has_gap
from ioi_superpose.errors import ConfigError
from ioi_superpose.files import atomic_write, write_json
from ioi_superpose.fitting.fitted import FittedCombination
from ioi_superpose.models import load_tokenizer
from ioi_superpose.plots import head_heatmap, save_figure
from ioi_superpose.results.baselines import baseline_summary
from ioi_superpose.results.caveats import alpha_state
from ioi_superpose.results.schema import Distribution, IOICircuit, Recovery, RunSummary, Unit
from ioi_superpose.results.tables import corpus_cut_note, corpus_markdown, max_activating_markdown
from ioi_superpose.results.units import top_heads


def stage_metrics(metrics: dict[str, float], stage: str, set_name: str) -> dict[str, float]:
    """The metrics of one evaluation set, without their `val/` or `test/<set>/` prefix."""
    prefix = metric_prefix(stage, set_name)
    return {
        key[len(prefix) :]: float(value)
        for key, value in metrics.items()
        if key.startswith(prefix) and "/" not in key[len(prefix) :]
    }


def recovery_or_none(metrics: dict[str, float], metric: MetricName = "logit_diff") -> float | None:
    """A set's recovery, or None where its clean − corrupted gap of the mean metric is below `MIN_GAPS[metric]`
    (the logged `*logit_diff` figures hold the task's metric)."""
    gap = has_gap(metrics.get("clean_logit_diff", 0.0), metrics.get("corrupted_logit_diff", 0.0), metric)
    return metrics.get("recovery") if gap else None


def build_summary(
    fitted: FittedCombination,
    val_metrics: dict[str, float],
    test_metrics: dict[str, float],
    test_set_names: Sequence[str],
    config: dict,
    baselines: Sequence[BaselineResult] = (),
    per_prompt: dict[str, dict] | None = None,
    steps: int | None = None,
    after: AfterFit | None = None,
    metric: MetricName = "logit_diff",
) -> RunSummary:
    """`per_prompt`: the distribution of each set's per-prompt recovery (`analysis.distribution`).
    `metric`: the task's (`Task.metric`), what the logged `*logit_diff` figures and recovery measure.
    `steps`: optimisation steps α has taken (`caveats.alpha_state`: 0 means the summary is of the initial α).
    `after`: what ran after the fit (`analyses.post_fit.after_fit`); None: nothing did."""
    after = AfterFit() if after is None else after
    combination, threshold = fitted.combination, fitted.l0_threshold
    alpha = combination.coefficients.detach().cpu()
    prune = None if after.prune is None else after.prune.to_dict()
    cfg = fitted.model.cfg
    val = stage_metrics(val_metrics, "val", IN_DISTRIBUTION)
    tests = {name: stage_metrics(test_metrics, "test", name) for name in test_set_names}
    circuit = (
        circuit_precision_recall(combination.head_coefficients().cpu(), threshold)
        if has_gpt2_small_shape(cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_vocab)
        else None
    )
    return RunSummary(
        model_name=fitted.model_name,
        direction=fitted.direction,
        objective=fitted.settings.optim.objective,
        alpha=None if steps is None else alpha_state(steps, pruned=prune is not None and prune["reached"]),
        steps=steps,
        recovery=Recovery(val=recovery_or_none(val, metric),
                          test={name: recovery_or_none(m, metric) for name, m in tests.items()}),
        min_gap_for_recovery=MIN_GAPS[metric],
        metric=None if metric == "logit_diff" else metric,
        clean_logit_diff=val.get("clean_logit_diff"),
        corrupted_logit_diff=val.get("corrupted_logit_diff"),
        patched_logit_diff=val.get("logit_diff"),
        clean_accuracy=val.get("clean_accuracy"),
        patched_accuracy=val.get("accuracy"),
        l0=combination.l0(threshold),
        l0_threshold=threshold,
        n_heads_total=cfg.n_layers * cfg.n_heads,
        # rotation's units are directions, not heads: its top heads are its [layer, head] view (dims per head).
        top_heads=[Unit(**row) for row in top_heads(
            combination.head_coefficients().cpu() if fitted.family == "rotation" else alpha, threshold=threshold,
        )],  # fmt: skip
        combination=fitted.family,
        rest=fitted.rest,
        support=[list(unit) for unit in combination.support(threshold)],
        prune=prune,
        rotation=after.rotation,
        circuit=after.circuit,
        head_types=after.head_types,
        scrub=after.scrub,
        val=val,
        test=tests,
        per_prompt_recovery={name: Distribution.from_dict(d) for name, d in (per_prompt or {}).items()},
        baselines={baseline.name: baseline_summary(baseline, fitted) for baseline in baselines},
        ioi_circuit=None if circuit is None else IOICircuit.from_dict(circuit, "circuit_precision_recall"),
        config=config,
    )


class RunWriter:
    """Writes a run's results into `run_dir`."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)

    def write(
        self,
        fitted: FittedCombination,
        summary: RunSummary,
        baselines: Sequence[BaselineResult] = (),
        max_activating: MaxActivating | None = None,
        figures: Mapping[str, Figure] | None = None,
        files: Mapping[str, Any] | None = None,
    ) -> dict[str, Path]:
        """coefficients.pt (α and what it was learned for), coefficients.png, baselines/*.png,
        max_activating.md / .json (when given), `figures` as `<stem>.png` and `files` as JSON `<name>` (the run's
        other figures and records), and summary.json last: a run directory with a summary.json is complete."""
        alpha = fitted.combination.coefficients.detach().cpu().clone()
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
                fitted.combination.head_coefficients().cpu(),
                f"Learned α: {summary.direction}, {summary.combination}, L0 = {summary.l0} "
                f"({Path(fitted.model_name).name})",
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
            for stem, figure in baseline_figures(baseline, fitted).items():
                self._figure(self.run_dir / "baselines" / f"{stem}.png", figure)
        if baselines:
            paths["baselines"] = self.run_dir / "baselines"
        if max_activating is not None:
            text = max_activating_markdown(max_activating)
            paths["max_activating"] = atomic_write(
                self.run_dir / "max_activating.md", lambda name: Path(name).write_text(text)
            )
            paths["max_act_json"] = write_json(self.run_dir / "max_activating.json", max_activating.to_dict())
        paths["summary"] = write_json(self.run_dir / "summary.json", summary.to_dict())
        return paths

    @staticmethod
    def _figure(path: Path, figure: Figure) -> None:
        atomic_write(path, lambda name: save_figure(figure, name))


def write_corpus_examples(
    fitted: FittedCombination, corpus: str | Path, run_dir: str | Path, k: int = 10
) -> dict[str, Path]:
    """`corpus_examples` of a fitted combination on the file `corpus`, written atomically into `run_dir` as
    corpus_examples.md and .json (`--data.corpus`)."""
    if fitted.family == "rotation":
        raise ConfigError(
            "--data.corpus ranks positions by head weights; --model.combination rotation learns directions, not "
            "head weights: leave --data.corpus unset for rotation runs."
        )
    tokenizer = load_tokenizer(fitted.model_name)
    examples = corpus_examples(fitted.model, tokenizer, read_corpus(corpus), fitted.combination.head_coefficients(), k)
    run_dir = Path(run_dir)
    note = corpus_cut_note(examples)
    if note:
        print(note)
    text = corpus_markdown(examples)
    return {
        "corpus_examples": atomic_write(run_dir / "corpus_examples.md", lambda name: Path(name).write_text(text)),
        "corpus_json": write_json(run_dir / "corpus_examples.json", examples.to_dict()),
    }

"""How much of a behaviour a hypothesis explains: the scrubbed metric as a fraction between fully resampled and clean.

    fraction = (scrubbed − fully resampled) / (clean − fully resampled)

each term the prompt set's mean of the task's metric (IOI: the logit difference IO − S at END) on the *clean* prompts:
clean = the unpatched model; fully resampled = every head's z from a random other prompt (the empty hypothesis);
scrubbed = the hypothesis's scrub (`sampling`). Both random terms are averaged over `draws` independent draws of
every prompt's sources (seeded; the fully resampled draws from a stream of their own, so both versions share them);
the interval is a seeded percentile bootstrap over the draws (the resampling's uncertainty on this prompt set, not
the prompt set's), 95 % by default.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import torch
from jaxtyping import Float
from torch import Tensor

from ioi_superpose.analyses.scrubbing.forward import ScrubRunner
from ioi_superpose.analyses.scrubbing.hypothesis import Hypothesis, head_name
from ioi_superpose.analyses.scrubbing.sampling import DEFAULT_MAX_FORWARDS, EquivalenceClasses, ScrubTree
from ioi_superpose.data.answer_metrics import MetricName, answer_logit_diff, check_metric, contrast_metric
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.data.datamodule import set_seed
from ioi_superpose.engine.runs import end_logits
from ioi_superpose.errors import ConfigError
from ioi_superpose.models import HookedTransformer
from ioi_superpose.tasks.base import TaskPrompts

Version = Literal["flat", "treeified"]
VERSIONS: tuple[Version, ...] = get_args(Version)
DEFAULT_DRAWS = 32
MAX_ROWS = 1024
"""(draw, prompt) rows per chunk of forwards: every layer's replacement z of a chunk is held at once (GPT-2 small at 16
tokens: about 50 MB per layer)."""
BOOTSTRAP_SAMPLES = 2000


@dataclass(frozen=True)
class ScrubScore:
    """One version's scrub of one hypothesis on one prompt set (module docstring)."""

    version: str
    hypothesis: dict[str, list[str]]
    prompts: int
    draws: int
    seed: int
    metric: str
    clean: float
    """Mean metric of the unpatched model."""
    resampled: float
    """Mean metric with every head resampled (over prompts and draws)."""
    scrubbed: float
    """Mean metric under the scrub (over prompts and draws)."""
    fraction: float
    interval: tuple[float, float]
    """Percentile bootstrap over the draws (`confidence`)."""
    confidence: float
    forwards: int
    """Forward passes per batch of rows (1 for the flat scrub; the treeified tree's nodes)."""
    singleton_share: dict[str, float]
    """Per hypothesis head: the share of prompts alone in their class (whose source is always themselves)."""
    mean_class_size: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["interval"] = list(self.interval)
        return record


@dataclass(frozen=True)
class ScrubDraws:
    """The per-draw means a score is made of: clean [prompts], and per draw the scrubbed and resampled means."""

    clean: Float[Tensor, " n"]
    scrubbed: Float[Tensor, "draws n"]
    resampled: Float[Tensor, "draws n"]


def fraction_of(clean: float, scrubbed: Tensor, resampled: Tensor) -> Tensor:
    """(scrubbed − resampled) / (clean − resampled) of means (any shape: bootstrap samples in the leading dims)."""
    return (scrubbed - resampled) / (clean - resampled)


def bootstrap_interval(
    clean: float, scrubbed: Float[Tensor, " draws"], resampled: Float[Tensor, " draws"], seed: int, confidence: float
) -> tuple[float, float]:
    """Percentile interval of the fraction over draws resampled with replacement (seeded)."""
    generator = torch.Generator().manual_seed(set_seed(seed, "scrub/bootstrap"))
    draws = len(scrubbed)
    pick = torch.randint(draws, (BOOTSTRAP_SAMPLES, draws), generator=generator)
    samples = fraction_of(clean, scrubbed.double()[pick].mean(-1), resampled.double()[pick].mean(-1))
    tail = (1 - confidence) / 2
    low, high = torch.quantile(samples, torch.tensor([tail, 1 - tail], dtype=samples.dtype)).tolist()
    return low, high


def metric_values(metric: MetricName, batch: ContrastBatch, logits_of: Callable[[Tensor | None], Tensor]) -> Tensor:
    """The task's metric per row from `logits_of(vocab_index)`, the END logits of those tokens (None: all). The
    logit difference reads only the answers' logits (no full-vocabulary unembedding)."""
    if metric == "logit_diff":
        return answer_logit_diff(logits_of(batch.answer_tokens), batch.weights)
    return contrast_metric(metric, logits_of(None), batch.answer_tokens, batch.weights)


def scrubbed_metric(runner: ScrubRunner, tree: ScrubTree, batch: ContrastBatch, metric: MetricName,
                    max_rows: int = MAX_ROWS) -> Float[Tensor, "draws n"]:  # fmt: skip
    """The metric of every (draw, prompt) row of `tree`'s root forward, run in chunks of about `max_rows` rows."""
    draws = tree.nodes[0].context.shape[0]
    per_chunk = max(1, max_rows // len(batch))
    out = []
    for start in range(0, draws, per_chunk):
        rows = slice(start, min(draws, start + per_chunk))
        out.append(metric_values(metric, batch, lambda index, rows=rows: runner.end_logits(tree, rows, index)))
    return torch.cat(out).float().cpu()


@torch.no_grad()
def scrub(
    model: HookedTransformer,
    hypothesis: Hypothesis,
    prompts: TaskPrompts,
    metric: MetricName = "logit_diff",
    versions: Sequence[Version] = ("flat",),
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
    max_forwards: int = DEFAULT_MAX_FORWARDS,
    max_rows: int = MAX_ROWS,
    confidence: float = 0.95,
    task: str | None = None,
) -> dict[str, ScrubScore]:
    """Score `hypothesis` on `prompts` (their clean prompts, their features) by causal scrubbing, in each of
    `versions`: "flat" (every head's z from the unpatched run of its drawn source) and "treeified" (Chan et al.: the
    inputs of every hypothesis head in layer ≥ 1 scrubbed along the hypothesis's paths, recursively; refused above
    `max_forwards` forward passes per batch). `metric`: the task's (`Task.metric`). `task` names the prompts' task in
    refusals. Rows (draws × prompts) are run in chunks of about `max_rows`.
    """
    cfg = model.cfg
    check_metric(metric)
    hypothesis.check(cfg.n_layers, cfg.n_heads, list(prompts.features), task)
    unknown = [v for v in versions if v not in VERSIONS]
    if unknown or not versions:
        raise ConfigError(f"versions must be a non-empty list of {list(VERSIONS)}, got {list(versions)}.")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 2:
        raise ConfigError(f"draws must be an integer >= 2 (the interval is over draws), got {draws!r}.")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}.")
    features = prompts.features
    # Checked and counted before any forward: a tree over the cap is refused at once.
    shape = (cfg.n_layers, cfg.n_heads, draws)
    baseline_tree = ScrubTree.draw(Hypothesis(), features, *shape, _generator(seed, "resampled"))
    trees = {v: ScrubTree.draw(hypothesis, features, *shape, _generator(seed, "hypothesis"), treeified=v == "treeified",
                               max_forwards=max_forwards) for v in versions}  # fmt: skip
    runner = ScrubRunner.prepare(model, prompts.batch.clean_tokens, prompts.batch.end_pos)
    batch = prompts.batch.to(cfg.device)
    clean = metric_values(metric, batch, lambda index: end_logits(model, batch.clean_tokens, batch.end_pos, index))
    resampled = scrubbed_metric(runner, baseline_tree, batch, metric, max_rows)
    classes = {head: EquivalenceClasses(features, hypothesis.features(head)) for head in hypothesis.heads}
    scores = {}
    for version, tree in trees.items():
        scrubbed = scrubbed_metric(runner, tree, batch, metric, max_rows)
        values = ScrubDraws(clean.float().cpu(), scrubbed, resampled)
        scores[version] = _score(version, hypothesis, values, tree.forwards, classes, seed, metric, confidence)
    return scores


def _generator(seed: int, stream: str) -> torch.Generator:
    return torch.Generator().manual_seed(set_seed(seed, f"scrub/{stream}"))


def _score(version: str, hypothesis: Hypothesis, values: ScrubDraws, forwards: int,
           classes: dict, seed: int, metric: str, confidence: float) -> ScrubScore:  # fmt: skip
    clean = float(values.clean.double().mean())
    scrubbed, resampled = values.scrubbed.double().mean(-1), values.resampled.double().mean(-1)  # [draws]
    gap = clean - float(resampled.mean())
    if abs(gap) <= 1e-6 * max(1.0, abs(clean)):
        raise ConfigError(
            f"The clean and the fully resampled mean {metric} are equal ({clean:.4g}): resampling every head does not "
            "change the behaviour on these prompts, so there is nothing for a hypothesis to explain."
        )
    fraction = float(fraction_of(clean, scrubbed.mean(), resampled.mean()))
    return ScrubScore(
        version=version, hypothesis=hypothesis.to_dict(), prompts=values.clean.shape[0], draws=scrubbed.shape[0],
        seed=seed, metric=metric, clean=clean, resampled=float(resampled.mean()), scrubbed=float(scrubbed.mean()),
        fraction=fraction, interval=bootstrap_interval(clean, scrubbed, resampled, seed, confidence),
        confidence=confidence, forwards=forwards,
        singleton_share={head_name(h): c.singleton_share() for h, c in classes.items()},
        mean_class_size={head_name(h): float(c.class_sizes().float().mean()) for h, c in classes.items()},
    )  # fmt: skip

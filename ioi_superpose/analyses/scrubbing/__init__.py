"""Causal scrubbing (Chan et al. 2022) of head-level hypotheses: does a set of heads carry a behaviour *for the reason
claimed*? A hypothesis names heads and, per head, the prompt features its output depends on; the scrub resamples every
head's z from prompts that agree on those features only (heads outside it: from any other prompt) and reports how much
of the behaviour survives. `docs/causal_scrubbing.md` says what the flat and the treeified versions answer.

    from ioi_superpose.analyses.scrubbing import Hypothesis, scrub
    scores = scrub(model, Hypothesis({(0, 0): ("io", "s")}), task_prompts, versions=("flat", "treeified"))
    scores["flat"].fraction, scores["flat"].interval

A fitted combination's head set (`FittedCombination.heads`) under a hypothesis file or a `Hypothesis`, on prompt sets
with their features: `scrub_fitted(fitted, "experiments/scrub_hypothesis.yaml", {"val": task_prompts})` (what
`--model.scrub` runs after a fit).
"""

from ioi_superpose.analyses.scrubbing.hypothesis import Hypothesis, HypothesisFile, read_hypothesis
from ioi_superpose.analyses.scrubbing.learned import scrub_fitted
from ioi_superpose.analyses.scrubbing.sampling import DEFAULT_MAX_FORWARDS, EquivalenceClasses, ScrubTree
from ioi_superpose.analyses.scrubbing.score import VERSIONS, ScrubScore, scrub

__all__ = [
    "DEFAULT_MAX_FORWARDS",
    "VERSIONS",
    "EquivalenceClasses",
    "Hypothesis",
    "HypothesisFile",
    "ScrubScore",
    "ScrubTree",
    "read_hypothesis",
    "scrub",
    "scrub_fitted",
]

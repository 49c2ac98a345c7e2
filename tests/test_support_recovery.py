"""The learned combination selects the ground-truth head support of the shipped superposition toys, and
that ground truth (`find_support`) agrees with subset patching written with plain TransformerLens hooks."""

from __future__ import annotations

import itertools
import json
from functools import partial

import pytest
import torch

from ioi_superpose.analyses.exhaustive import find_support
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.groundtruth.support_scoring import (
    FeatureSupport,
    SupportComparison,
    compare_supports,
    micro_precision_recall,
    precision_recall,
)
from ioi_superpose.models import HookedTransformer
from ioi_superpose.models.toy import load_toy_checkpoint
from ioi_superpose.toy.skip_trigrams import SkipTrigramTask, feature_prompts
from tests.helpers import REPO

# Fewer prompts and steps than the experiment script (128, 200): same supports, a third of the time.
FAST = dict(n_prompts=64, seed=0, learn_kwargs=dict(steps=100))


def _load(name: str) -> tuple[HookedTransformer, SkipTrigramTask]:
    model, metadata = load_toy_checkpoint(REPO / "checkpoints" / f"toy_superposition_{name}.pt")
    return model, SkipTrigramTask(**metadata["task_parameters"])


def _compare(name: str, features: list[int]) -> SupportComparison:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest
    try:
        model, task = _load(name)
        return compare_supports(model, task, features, **FAST)
    finally:
        torch.set_num_threads(threads)


# --- an independent reference for the subset search ------------------------------------------------------
def _mean_end_logit_diff(logits: torch.Tensor, prompts: ContrastBatch) -> float:
    at_end = logits[torch.arange(len(logits)), prompts.end_pos]
    return float(
        (at_end.gather(-1, prompts.answer_tokens[:, :1]) - at_end.gather(-1, prompts.answer_tokens[:, 1:])).mean()
    )


@torch.no_grad()
def reference_recovery(model: HookedTransformer, prompts: ContrastBatch, heads: list[tuple[int, int]]) -> float:
    """Denoising recovery of one head subset, one forward per subset, with `run_with_hooks`: the corrupted
    run with `blocks.{l}.attn.hook_z[:, :, h]` replaced by the clean run's, for every (l, h) in `heads`;
    (patched - corrupted) / (clean - corrupted) of the mean logit difference at END, from full logits."""
    clean_logits, cache = model.run_with_cache(prompts.clean_tokens)
    clean = _mean_end_logit_diff(clean_logits, prompts)
    corrupted = _mean_end_logit_diff(model(prompts.corrupted_tokens), prompts)

    def patch(z: torch.Tensor, hook, layer: int) -> torch.Tensor:
        for patched_layer, head in heads:
            if patched_layer == layer:
                z[:, :, head] = cache[hook.name][:, :, head]
        return z

    hooks = [(f"blocks.{layer}.attn.hook_z", partial(patch, layer=layer)) for layer in sorted({l for l, _ in heads})]
    patched = _mean_end_logit_diff(model.run_with_hooks(prompts.corrupted_tokens, fwd_hooks=hooks), prompts)
    return (patched - corrupted) / (clean - corrupted)


SUBSETS = {
    "single": [[], [(0, 0)], [(0, 1)], [(0, 0), (0, 1)]],  # every subset of its 2 heads
    "conjunction": [[(0, 0)], [(0, 2)], [(0, 1), (0, 2)], [(0, 0), (0, 1), (0, 2)]],
}


@pytest.mark.parametrize("name", ["single", "conjunction"])
def test_subset_recovery_equals_plain_hook_patching(name):
    model, task = _load(name)
    for feature in (0, task.n_features - 1):
        prompts = feature_prompts(task, feature, FAST["n_prompts"], FAST["seed"])
        searched = find_support(model, prompts).subset_recovery
        for heads in SUBSETS[name]:
            key = "+".join(f"{layer}.{head}" for layer, head in heads) or "none"
            assert searched[key] == pytest.approx(reference_recovery(model, prompts, heads), abs=1e-4), (feature, key)


def _reference_support(
    model: HookedTransformer, prompts: ContrastBatch, threshold: float = 0.9
) -> set[tuple[int, int]]:
    """The smallest subset reaching `threshold` (ties: highest recovery), from `reference_recovery` alone."""
    heads = [(layer, head) for layer in range(model.cfg.n_layers) for head in range(model.cfg.n_heads)]
    for size in range(len(heads) + 1):
        scored = [(reference_recovery(model, prompts, list(c)), c) for c in itertools.combinations(heads, size)]
        reaching = [(recovery, c) for recovery, c in scored if recovery >= threshold]
        if reaching:
            return set(max(reaching)[1])
    raise AssertionError("no subset reaches the threshold")


@pytest.fixture(scope="module")
def conjunction() -> SupportComparison:
    # A0_B2_C5 leans on head 0.2 (0.64 of the recovery), A0_B3_C6 on head 0.1 (0.78): neither alone suffices.
    return _compare("conjunction", [0, 1])


@pytest.fixture(scope="module")
def single() -> SupportComparison:
    # A0_B1_C6 is carried by head 0.0, A0_B2_C7 by head 0.1.
    return _compare("single", [0, 1])


@pytest.mark.claims  # a finding pinned from one seed's run, not a unit test
def test_conjunction_learned_support_is_both_heads(conjunction):
    model, task = _load("conjunction")
    assert [r.feature for r in conjunction.records] == ["A0_B2_C5", "A0_B3_C6"]
    for index, record in enumerate(conjunction.records):
        prompts = feature_prompts(task, index, FAST["n_prompts"], FAST["seed"])  # the prompts compare_supports used
        assert set(record.truth) == _reference_support(model, prompts) == {(0, 1), (0, 2)}
        assert set(record.learned) == {(0, 1), (0, 2)}, record
        assert record.exact and record.precision == 1.0 and record.recall == 1.0
        assert record.alpha[0][0] <= 0.05  # the idle head is pruned to (near) zero
        assert record.learned_recovery > 0.9
    assert conjunction.precision == 1.0 and conjunction.recall == 1.0 and conjunction.n_exact == 2


@pytest.mark.claims  # a finding pinned from one seed's run, not a unit test
def test_single_source_learned_support_is_the_one_carrying_head(single):
    model, task = _load("single")
    expected = {"A0_B1_C6": {(0, 0)}, "A0_B2_C7": {(0, 1)}}
    for index, record in enumerate(single.records):
        prompts = feature_prompts(task, index, FAST["n_prompts"], FAST["seed"])
        assert set(record.truth) == _reference_support(model, prompts) == expected[record.feature]
        assert record.learned == record.truth, record
        assert record.learned_recovery > 0.9
    assert single.precision == 1.0 and single.recall == 1.0


@pytest.mark.claims  # a finding pinned from one seed's run, not a unit test
def test_comparison_serialises_to_json(conjunction):
    data = json.loads(json.dumps(conjunction.to_dict()))
    assert data["precision"] == 1.0 and data["n_features"] == 2
    assert data["features"][0]["learned"] == [[0, 1], [0, 2]] and data["features"][0]["exact"] is True
    assert data["learn_kwargs"]["objective"] == "logit_diff" and data["learn_kwargs"]["steps"] == 100


def test_precision_recall_hand_made():
    a, b, c = (0, 0), (0, 1), (0, 2)
    assert precision_recall({a, b}, {b, c}) == (0.5, 0.5)
    assert precision_recall([b], [b, c]) == (1.0, 0.5)
    assert precision_recall([a, b, c], [c]) == (pytest.approx(1 / 3), 1.0)
    assert precision_recall([], [a]) == (None, 0.0)
    assert precision_recall([a], []) == (0.0, None)


def _record(learned, truth) -> FeatureSupport:
    return FeatureSupport("f", list(truth), 1.0, True, list(learned), [[0.0]], 1.0, *precision_recall(learned, truth))


def test_micro_average_pools_heads_not_features():
    a, b, c, d = (0, 0), (0, 1), (0, 2), (0, 3)
    records = [_record([a, b], [b, c]), _record([d], [d]), _record([a, b, c, d], [d])]
    # hits 1 + 1 + 1 = 3; learned 2 + 1 + 4 = 7; truth 2 + 1 + 1 = 4 (a macro average would differ)
    assert micro_precision_recall(records) == (pytest.approx(3 / 7), pytest.approx(3 / 4))
    assert [r.exact for r in records] == [False, True, False]
    assert micro_precision_recall([]) == (None, None)

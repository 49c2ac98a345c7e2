"""The learned combination selects the ground-truth head support of the shipped superposition toys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ioi_superpose.toy.skip_trigrams import SkipTrigramTask
from ioi_superpose.models.toy import load_toy_checkpoint
from ioi_superpose.toy.support_scoring import (
    FeatureSupport,
    SupportComparison,
    compare_supports,
    micro_precision_recall,
    precision_recall,
)

REPO = Path(__file__).resolve().parents[1]
# Fewer prompts and steps than the experiment script (128, 200): same supports, a third of the time.
FAST = dict(n_prompts=64, seed=0, learn_kwargs=dict(steps=100))


def _compare(name: str, features: list[int]) -> tuple[SupportComparison, dict]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest
    try:
        model, metadata = load_toy_checkpoint(REPO / "checkpoints" / f"toy_superposition_{name}.pt")
        task = SkipTrigramTask(**metadata["task_parameters"])
        return compare_supports(model, task, features, **FAST), metadata
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def conjunction() -> SupportComparison:
    # A0_B2_C5 leans on head 0.2 (0.64 of the recovery), A0_B3_C6 on head 0.1 (0.78): neither alone suffices.
    return _compare("conjunction", [0, 1])[0]


@pytest.fixture(scope="module")
def single() -> tuple[SupportComparison, dict]:
    # A0_B1_C6 is carried by head 0.0, A0_B2_C7 by head 0.1.
    return _compare("single", [0, 1])


def test_conjunction_learned_support_is_both_heads(conjunction):
    assert [r.feature for r in conjunction.records] == ["A0_B2_C5", "A0_B3_C6"]
    for record in conjunction.records:
        assert set(record.truth) == {(0, 1), (0, 2)}
        assert set(record.learned) == {(0, 1), (0, 2)}, record
        assert record.exact and record.precision == 1.0 and record.recall == 1.0
        assert record.alpha[0][0] <= 0.05  # the idle head is pruned to (near) zero
        assert record.learned_recovery > 0.9
    assert conjunction.precision == 1.0 and conjunction.recall == 1.0 and conjunction.n_exact == 2


def test_single_source_learned_support_is_the_one_carrying_head(single):
    comparison, metadata = single
    shipped = {g["feature"]: [tuple(h) for h in g["support"]] for g in metadata["metrics"]["ground_truth"]}
    expected = {"A0_B1_C6": [(0, 0)], "A0_B2_C7": [(0, 1)]}
    assert {r.feature: r.truth for r in comparison.records} == expected
    assert all(shipped[feature] == heads for feature, heads in expected.items())  # agrees with the .json
    for record in comparison.records:
        assert record.learned == record.truth, record
        assert record.learned_recovery > 0.9
    assert comparison.precision == 1.0 and comparison.recall == 1.0


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

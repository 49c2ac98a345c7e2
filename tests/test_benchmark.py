"""The benchmark: its trap really traps greedy elimination, its controls are there, its selection never
reads the scored case, its bootstrap is seeded, and its CLI writes only where --out says."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pytest
import torch

import ioi_superpose.cli.benchmark as cli
import ioi_superpose.groundtruth.benchmark as bench
from ioi_superpose.analyses.exhaustive import search_subsets
from ioi_superpose.analyses.pruning import minimal_set, order_scores
from ioi_superpose.combinations import ScalarCombination
from ioi_superpose.groundtruth.benchmark import Config, run_benchmark
from ioi_superpose.groundtruth.benchmark_report import markdown
from ioi_superpose.groundtruth.planted_hard import negative_case, trap_case
from ioi_superpose.groundtruth.selection import bootstrap_interval, leave_one_case_out

REPO = Path(__file__).resolve().parents[1]

TINY = dict(score_grid=(0.1, 0.5), k_grid=(1, 2), families=("scalar",), lambda_grids={"scalar": (1e-3, 3e-2)},
            inits=(1.0,), steps=20, directions=("denoising",), rests=("free",))  # fmt: skip


def all_heads(n_heads: int) -> ScalarCombination:
    module = ScalarCombination(1, n_heads, bounded=False)
    with torch.no_grad():
        module.coefficients.fill_(1.0)
    return module


@pytest.mark.parametrize("n_weak", [6, 10])
def test_the_trap_case_traps_greedy_elimination_from_all_heads(n_weak):
    """Exhaustive search (computed here) finds exactly one minimal set, the strong pair; greedy backward
    elimination from all heads returns a larger set that still reaches the target, without the pair."""
    case = trap_case(n_weak)
    prompts = case.prompts(32, seed=5)
    search = search_subsets(case.model, prompts, "denoising", 0.9)
    strong = {(0, 0), (0, 1)}
    assert [set(s) for s in search.minimal_sets] == [strong]
    pair_name = "0.0+0.1"
    others = [v for name, v in search.subset_effect.items() if name.count("+") <= 1 and name != pair_name]
    assert search.subset_effect[pair_name] >= 0.95 and max(others) <= 0.85  # margins, not a rounding tie
    greedy = minimal_set(case.model, [prompts], "denoising", all_heads(n_weak + 2), 0.9, 0.05)
    kept = set(greedy.support)
    assert greedy.reached and len(kept) > 2 and not strong <= kept, kept
    if n_weak == 10:  # the large set of individually weak heads is itself sufficient
        assert search.subset_effect["+".join(f"0.{h}" for h in range(2, 12))] >= 0.95


def test_ordered_elimination_follows_the_given_order():
    """The same trap, pruned in the order weak heads first: ordered elimination keeps the strong pair."""
    case = trap_case(6)
    prompts = case.prompts(32, seed=5)
    order = [(0, h) for h in range(2, 8)] + [(0, 0), (0, 1)]
    scores = order_scores(order, (1, 8))
    result = minimal_set(case.model, [prompts], "denoising", all_heads(8), 0.9, 0.05, order=scores)
    assert set(result.support) == {(0, 0), (0, 1)}
    assert sorted(tuple(unit) for d in result.dropped for unit in d["units"]) == [(0, h) for h in range(2, 8)]


def test_smallest_top_k_is_the_first_k_whose_top_k_set_reaches_the_target():
    """On the trap, ranked strong pair first: the top-k effects are the exhaustive search's own subset effects, the
    smallest top-k is the pair at 0.9 and a single strong head at a target it reaches, and every head when no k
    reaches the target."""
    case = trap_case(6)
    prompts = case.prompts(32, seed=5)
    ranked = [(0, 0), (0, 1), *[(0, h) for h in range(2, 8)]]
    effects = bench.top_k_effects(case.model, prompts, "denoising", ranked)
    search = search_subsets(case.model, prompts, "denoising", 0.9)
    names = ["+".join(f"0.{h}" for _, h in ranked[:k]) for k in range(1, 9)]
    assert effects.tolist() == pytest.approx([search.subset_effect[name] for name in names], abs=1e-5)
    assert bench.smallest_top_k(case.model, prompts, "denoising", ranked, 0.9) == {(0, 0), (0, 1)}
    assert bench.smallest_top_k(case.model, prompts, "denoising", ranked, float(effects[0])) == {(0, 0)}
    assert bench.smallest_top_k(case.model, prompts, "denoising", ranked, 2.0) == set(ranked)
    assert bench.smallest_top_k(case.model, prompts, "denoising", ranked, 2.0, max_k=3) == set(ranked)


def test_the_negative_head_writes_against_the_answer():
    case = negative_case()
    prompts = case.prompts(32, seed=5)
    for direction in ("denoising", "noising"):
        search = search_subsets(case.model, prompts, direction, 0.9)
        assert search.minimal_sets == [[(0, 0)]]
    denoising = search_subsets(case.model, prompts, "denoising", 0.9)
    assert denoising.single_head_effect[0][1] < -1  # patching the negative head alone moves away from clean
    assert denoising.single_head_effect[0][0] > 1  # the positive head alone overshoots the clean run


class Poisoned(Mapping):
    """A case's dev F1 that fails the test if anything reads it."""

    def __getitem__(self, key):
        raise AssertionError("the held-out case's dev F1 was read")

    def __iter__(self):
        raise AssertionError("the held-out case's dev F1 was read")

    def __len__(self):
        raise AssertionError("the held-out case's dev F1 was read")


def test_leave_one_case_out_chooses_on_the_other_cases_only():
    dev_f1 = {"a": {1: 1.0, 2: 0.0}, "b": {1: 0.0, 2: 1.0}, "c": {1: 0.0, 2: 1.0}}
    assert leave_one_case_out(dev_f1, "a", [1, 2]) == (2, ["b", "c"])
    assert leave_one_case_out({**dev_f1, "b": Poisoned()}, "b", [1, 2])[0] == 1  # a: 1, c: 2 → tie → first
    assert leave_one_case_out({"a": {1: None, 2: 0.5}, "b": Poisoned()}, "b", [1, 2])[0] == 2  # None is n/a


def test_benchmark_run_has_every_control_and_never_selects_on_the_scored_case(monkeypatch):
    """A small run: every control row is present and scored, and every hyperparameter choice is made by
    `leave_one_case_out` with the scored case's dev F1 poisoned (any read fails the run)."""
    real = bench.leave_one_case_out
    calls = []

    def instrumented(dev_f1, held_out, grid):
        calls.append(held_out)
        return real({**dev_f1, held_out: Poisoned()}, held_out, grid)

    monkeypatch.setattr(bench, "leave_one_case_out", instrumented)
    report = run_benchmark(Config(cases=["or", "and", "trap_8"], **TINY))
    block = report["rests"]["free"]["denoising"]
    controls = ["all heads + step (control a)", "random ranking + step", "exhaustive oracle",
                "activation patching + step", "attribution patching smallest top-k ≥ target",
                "learned scalar", "learned scalar + step"]  # fmt: skip
    for name in ("or", "and", "trap_8"):
        for method in controls:
            assert block["results"][name][method] is not None, (name, method)
        for method, choice in block["chosen"][name].items():
            assert name not in choice["chosen_on"]
            if choice["value"] is not None:
                assert sorted(choice["chosen_on"]) == sorted({"or", "and", "trap_8"} - {name}), method
    assert set(calls) == {"or", "and", "trap_8"}
    # The trap, measured by the run itself: control (a) misses the minimal set, the oracle finds it.
    assert block["results"]["trap_8"]["all heads + step (control a)"]["l0"] > 2
    assert block["results"]["trap_8"]["exhaustive oracle"]["f1"] == 1.0
    summary = block["summary"]["exhaustive oracle"]
    assert summary["all"]["n"] == 3 and summary["separating"]["n"] == 1
    text = markdown(report)
    assert "## Where the learned combination loses (computed from this run)" in text
    assert "all heads + step (control a)" in text


def test_bootstrap_interval_is_seeded():
    values = [1.0, 0.5, 0.0, 1.0, 0.8, 0.2]
    assert bootstrap_interval(values, seed=3) == bootstrap_interval(values, seed=3)
    assert bootstrap_interval(values, seed=3) != bootstrap_interval(values, seed=4)
    low, high = bootstrap_interval(values, seed=3)
    assert low <= sum(values) / len(values) <= high and low < high
    assert bootstrap_interval([1.0], seed=0) is None


def _tree_snapshot() -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in (REPO / "experiments" / "reports").glob("benchmark.*")}


def test_cli_writes_only_under_out(tmp_path, monkeypatch, capsys):
    """--out is respected; without it the default is under the current directory (runs/benchmark), never
    the source tree; bad flags exit with a message naming them."""
    only = {"directions": ("denoising",), "rests": ("free",)}
    monkeypatch.setattr(cli, "Config", lambda **kw: Config(**{**TINY, **kw, **only}))
    before = _tree_snapshot()
    out = tmp_path / "explicit"
    cli.main(["--out", str(out), "--cases", "or", "and", "--directions", "denoising"])
    assert sorted(os.listdir(out)) == ["benchmark.json", "benchmark.md"]
    monkeypatch.chdir(tmp_path)
    cli.main(["--cases", "or", "and", "--directions", "denoising"])
    assert sorted(os.listdir(tmp_path / "runs" / "benchmark")) == ["benchmark.json", "benchmark.md"]
    assert _tree_snapshot() == before
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--out", str(tmp_path / "bad"), "--cases", "no_such_case"])
    assert exit_.value.code == 1 and "--cases: unknown benchmark cases ['no_such_case']" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()

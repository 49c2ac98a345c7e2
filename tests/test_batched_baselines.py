"""The baselines of a batched fit (`cli/train_batched.py`): computed once for the group, and each member's
summary holds what a single run of its settings writes."""

from __future__ import annotations

import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import ioi_superpose.baselines.scorers as scorers
from tests.helpers import EXPERIMENTS, QUIET, TOY_IOI, run_cli

# The main job's config (every baseline callback), shrunk: one epoch on 64 prompts, one test set besides
# in-distribution, no max-activating table.
SHARED = ["--config", str(EXPERIMENTS / "toy_ioi.yaml"), "--model.model_name", TOY_IOI, "--data.n_train", "64",
          "--data.n_val", "32", "--data.n_test", "16", "--data.off_distribution", "[held_out_names]",
          "--trainer.max_epochs", "1", "--max_activating.per_set", "0", *QUIET]  # fmt: skip
ALPHA_DEPENDENT = {"spearman_abs_alpha_vs_abs_effect", "k", "learned_recovery", "recovery_at_k"}
"""Summary fields that compare a baseline with the member's own α (the rest of each block is α-independent)."""


def test_a_batched_group_computes_its_baselines_once_and_each_member_writes_the_single_runs(tmp_path, monkeypatch):
    from ioi_superpose.cli.train_batched import fit_group

    calls = []
    exact = scorers.activation_patch

    def counted(*args, **kwargs):
        calls.append(1)
        return exact(*args, **kwargs)

    # Exact activation patching: every run with these baselines needs it (the activation baseline,
    # attribution patching's agreement, the combinations' ranking).
    monkeypatch.setattr(scorers, "activation_patch", counted)

    def logged(name: str) -> list[str]:
        return ["--trainer.logger.init_args.save_dir", str(tmp_path / name), "--trainer.logger.init_args.name", "run"]

    run_cli(["fit", *SHARED, "--model.l1", "0.02", *logged("single")], tmp_path, monkeypatch)
    single_calls = len(calls)
    calls.clear()
    fit_group([[*SHARED, "--model.l1", "0.001", *logged("member0")], [*SHARED, "--model.l1", "0.02", *logged("member1")]])
    assert single_calls > 0
    assert len(calls) == single_calls  # once for the group of two, as for one run

    single = json.loads(next((tmp_path / "single").rglob("summary.json")).read_text())["baselines"]
    member = json.loads(next((tmp_path / "member1").rglob("summary.json")).read_text())["baselines"]
    assert list(member) == list(single) == [
        "direct_logit_attribution", "activation_patching", "attribution_patching", "path_patching", "combinations",
    ]  # fmt: skip
    for name, block in single.items():
        assert list(member[name]) == list(block)
        for key, value in block.items():
            if key in ALPHA_DEPENDENT:  # the same settings trained batched: equal up to float rounding
                assert member[name][key] == pytest.approx(value, abs=1e-4), (name, key)
            else:
                assert member[name][key] == value, (name, key)
    for name in ("member0", "member1"):  # each member's own TensorBoard holds the baselines' figures
        run_dir = next((tmp_path / name).rglob("summary.json")).parent
        assert {path.name for path in (run_dir / "baselines").iterdir()} >= {"combinations_recovery.png",
                                                                             "activation_patching.png"}  # fmt: skip
        events = EventAccumulator(str(run_dir), size_guidance={"images": 0})
        events.Reload()
        assert {"baselines/activation_patching", "baselines/attention_to_io"} <= set(events.Tags()["images"])

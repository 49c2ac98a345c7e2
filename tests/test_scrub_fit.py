"""`--model.scrub FILE` after a fit (the learned head set under a hypothesis file, `analyses/scrubbing/learned.py`):
stored in summary.json, shown by the report beside the circuit criteria, and bad files refused before any training."""

from __future__ import annotations

import json
import re

import pytest

from ioi_superpose.cli.train import main as train_main
from ioi_superpose.results.report import main as report_main
from tests.helpers import EXPERIMENTS, TOY_IOI, fake_summary, run_cli

TINY = ["--data.n_train", "16", "--data.n_val", "8", "--data.n_test", "8", "--data.batch_size", "8",
        "--data.off_distribution", "[]", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.max_steps", "2", "--max_activating.per_set", "0"]  # fmt: skip


def test_scrub_flag_scores_the_learned_set_on_train_and_val(tmp_path, monkeypatch):
    hypothesis = str(EXPERIMENTS / "scrub_hypothesis.yaml")
    run_cli(["fit", "--model.model_name", TOY_IOI, *TINY, "--model.scrub", hypothesis], tmp_path, monkeypatch)
    summary = json.loads(next(tmp_path.glob("runs/*/version_*/summary.json")).read_text())
    record = summary["scrub"]
    learned = sorted(tuple(unit[:2]) for unit in summary["support"])
    assert sorted(map(tuple, record["heads"])) == learned and learned
    # Every learned head with its layer's entry of the file: layer 0 the names, layer 1 the position.
    expected = {f"{l}.{h}": (["io", "s"] if l == 0 else ["template_id", "order"]) for l, h in learned}
    assert record["hypothesis"] == expected
    assert set(record["sets"]) == {"train", "val"}
    for set_name, prompts in (("train", 16), ("val", 8)):
        for version in ("flat", "treeified"):
            score = record["sets"][set_name][version]
            assert score["prompts"] == prompts and score["draws"] == 32
            assert score["interval"][0] <= score["fraction"] <= score["interval"][1]
            assert set(score["singleton_share"]) == set(expected)
    report_main([str(next(tmp_path.glob("runs/*/version_*"))), "--out", str(tmp_path / "report")])
    text = (tmp_path / "report" / "report.md").read_text()
    assert "(causal scrubbing)" in text
    flat = record["sets"]["val"]["flat"]
    assert f"| val (8) | flat | {flat['fraction']:.3f} |" in text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("task: ioi\nheads:\n  0.1: [io, position]\n", r"--model.scrub: .*line 3, key '0.1': \['position'\] is not a "
                                                      r"feature of task 'ioi'; its features are \['io', 's', "
                                                      r"'template_id', 'order'\]"),
        ("heads:\n  0.7: [io]\n", r"--model.scrub: .*line 2, key '0.7': head 0.7 is outside this model \(2 layers × 4 "
                                  r"heads"),
        ("heads:\n  0.1: []\n", r"--model.scrub: .*line 2, key '0.1' has no features"),
        ("task: greater_than\nheads:\n  0.1: [yy]\n", r"--model.scrub: .*is a hypothesis about task 'greater_than'; "
                                                      r"these prompts are task 'ioi'"),
    ],
)
def test_a_bad_hypothesis_file_is_refused_before_training(tmp_path, monkeypatch, capsys, text, message):
    path = tmp_path / "hypothesis.yaml"
    path.write_text(text)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        train_main(["fit", "--model.model_name", TOY_IOI, *TINY, "--model.scrub", str(path)])
    assert stopped.value.code == 1
    assert re.search(message, capsys.readouterr().err)
    assert not list(tmp_path.glob("runs/*/version_*/checkpoints/*.ckpt"))  # nothing trained


def test_scrub_with_rotation_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        train_main(["fit", "--model.model_name", TOY_IOI, *TINY, "--model.combination", "rotation",
                    "--model.scrub", str(EXPERIMENTS / "scrub_hypothesis.yaml")])  # fmt: skip
    assert "--model.scrub scores the learned head set; --model.combination rotation learns directions" in (
        capsys.readouterr().err
    )


def score(fraction: float, low: float, high: float, alone: float) -> dict:
    return {"version": "x", "prompts": 256, "draws": 32, "fraction": fraction, "interval": [low, high], "clean": 13.41,
            "resampled": 0.09, "scrubbed": 0.5, "singleton_share": {"0.0": alone, "0.1": 0.0}}  # fmt: skip


def test_report_rows_from_a_summary(tmp_path):
    scrub = {"file": "h.yaml", "heads": [[0, 0], [0, 1]], "hypothesis": {"0.0": ["io", "s"], "0.1": ["io"]},
             "sets": {"train": {"flat": score(0.024, 0.015, 0.034, 0.92),
                                "treeified": {"error": "needs 9 forward passes"}},
                      "val": {"error": "nothing for a hypothesis to explain"}}}  # fmt: skip
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps(fake_summary("denoising", "scalar", 0.9, [[0, 0], [0, 1]],
                                                              scrub=scrub)))  # fmt: skip
    report_main([str(run), "--out", str(tmp_path / "report")])
    lines = (tmp_path / "report" / "report.md").read_text().splitlines()
    claims = "0.0: io, s; 0.1: io"
    assert f"| run | {claims} | train (256) | flat | 0.024 | [0.015, 0.034] | 13.41 / 0.09 / 0.50 | 0.92 |" in lines
    assert f"| run | {claims} | train | treeified | not scored: needs 9 forward passes | | | |" in lines
    assert f"| run | {claims} | val: not scored: nothing for a hypothesis to explain | | | | | |" in lines


def test_no_scrub_section_without_the_flag(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps(fake_summary("denoising", "scalar", 0.9, [[0, 0]])))
    report_main([str(run), "--out", str(tmp_path / "report")])
    assert "causal scrubbing" not in (tmp_path / "report" / "report.md").read_text()

"""The typed, versioned results files: summary.json and sweep.json read back to what was written, and a file
of another version is refused with its name and version (the report used to guess from a KeyError)."""

from __future__ import annotations

import json

import pytest

from ioi_superpose.results.report import main as report_main
from ioi_superpose.results.schema import SCHEMA_VERSION, RunSummary, SchemaError, SweepSummary
from tests.helpers import fake_summary


def test_a_summary_reads_back_to_the_same_json_and_exposes_its_fields():
    data = fake_summary("noising", "mixing", 0.4, [[1, 0, 0, 2], [1, 1, 1, 1]])
    data["top_heads"] = [
        {"layer": 1, "head": 0, "source_layer": 0, "source_head": 2, "alpha": -0.7},
        {"layer": 1, "head": 1, "source_layer": 1, "source_head": 1, "alpha": 0.3},
    ]
    data["per_prompt_recovery"] = {"val": {"n_prompts": 3, "mean": None, "median": None, "share_above_1": None}}
    data["ioi_circuit"] = {"precision": 0.5, "recall": 0.25, "recall_by_class": {"name_mover": 1.0},
                           "selected_outside_circuit": [[0, 1]]}  # fmt: skip
    summary = RunSummary.from_dict(json.loads(json.dumps(data)))
    assert json.dumps(summary.to_dict()) == json.dumps(data)  # same keys, same order, same values
    assert summary.recovery.on("val") == 0.4 and summary.recovery.on("held_out_names") is None
    assert summary.recovery.on("never_evaluated") is None
    assert [unit.is_cross_head for unit in summary.top_heads] == [True, False]
    assert summary.cross_head_support == [[1, 0, 0, 2]]
    assert summary.n_heads == 2 and summary.family == "mixing"
    assert summary.setting("model", "combination") == "mixing" and summary.setting("data", "corruption", "x") == "x"
    assert summary.ioi_circuit is not None and summary.ioi_circuit.recall_by_class == {"name_mover": 1.0}


def test_a_sweep_summary_reads_back_to_the_same_json():
    data = {
        "schema_version": SCHEMA_VERSION, "n_points": 3, "n_finished": 2,
        "points": [{"point": "a", "settings": {"model.direction": "noising"}, "run_dir": "/r/a", "val_recovery": 0.9,
                    "test_recovery": {"held_out_names": None}, "l0": 2, "heads": [[0, 1], [1, 0]]}],
        "stability": [{"setting": "all", "runs": ["a", "b"], "heads_in_every_run": [[0, 1]],
                       "heads_in_any_run": [[0, 1], [1, 0]], "intersection_over_union": 0.5, "mean_pairwise_iou": 0.5}],
        "noising_vs_denoising": [{"setting": "all", "denoising_heads": [[0, 1]], "noising_heads": [[1, 0]], "both": [],
                                  "only_denoising": [[0, 1]], "only_noising": [[1, 0]], "iou": 0.0}],
    }  # fmt: skip
    sweep = SweepSummary.from_dict(data)
    assert sweep.to_dict() == data and sweep.points[0].run_dir == "/r/a" and sweep.stability[0].runs == ["a", "b"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"schema_version": "drop"}, "has no schema_version"),  # written before results were versioned
        ({"schema_version": 99}, "has schema_version 99; this ioi_superpose reads version 1"),
        ({"top_heads": [{"layer": 0, "head": 1}]}, "lacks the field 'alpha'"),
    ],
)
def test_the_report_names_the_file_and_version_it_cannot_read(tmp_path, capsys, change, expected):
    run = tmp_path / "run"
    run.mkdir()
    data = {key: value for key, value in {**fake_summary("denoising", "scalar", 0.9, [[0, 1]]), **change}.items()
            if value != "drop"}  # fmt: skip
    (run / "summary.json").write_text(json.dumps(data))
    with pytest.raises(SystemExit) as exit_info:
        report_main([str(run), "--out", str(tmp_path / "report")])
    assert exit_info.value.code == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ") and str(run / "summary.json") in error and expected in error
    assert not (tmp_path / "report" / "report.md").exists()


def test_a_sweep_json_of_another_version_is_refused_by_name(tmp_path):
    (tmp_path / "sweep.json").write_text(json.dumps({"n_points": 0, "n_finished": 0, "points": []}))
    with pytest.raises(SchemaError, match=f"{tmp_path / 'sweep.json'} has no schema_version"):
        SweepSummary.read(tmp_path)

"""The report's sections for what runs store beyond recovery: circuit criteria per ablation, the learned heads'
types, the rotation's dimensions and loadings — numbers from fake summaries must appear in their rows; and
`--model.head_types true` stores the learned heads' types in summary.json (opt-in)."""

from __future__ import annotations

import json

from ioi_superpose.results.report import main as report_main
from tests.helpers import TOY_IOI, fake_summary, run_cli


def report_of(tmp_path, **fields) -> str:
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps(fake_summary("noising", "scalar", 0.1, [[0, 0], [0, 1]], **fields)))
    report_main([str(run), "--out", str(tmp_path / "report")])
    return (tmp_path / "report" / "report.md").read_text()


def criteria(model, circuit, faithfulness, incompleteness, relative, minimality) -> dict:  # noqa: ANN001
    return {"ablation": "x", "heads": [[0, 0], [0, 1]], "model_logit_diff": model, "circuit_logit_diff": circuit,
            "faithfulness": faithfulness, "faithfulness_gap": abs(model - circuit),
            "completeness": {"score": incompleteness, "K": [], "relative": relative, "trajectory": []},
            "minimality": minimality}  # fmt: skip


def test_circuit_criteria_table_per_ablation_with_verdicts(tmp_path):
    circuit = {
        # Not faithful (< 0.9), not complete (2.013 > 0.1), not minimal (0.1's 0.004 < 0.05).
        "corrupted": criteria(12.54, -12.72, -1.014, 25.25, 2.013,
                              {"0.0": {"score": 0.73, "K": [], "relative": 0.057},
                               "0.1": {"score": 0.05, "K": [], "relative": 0.004}}),
        # Faithful (0.937), complete (0.05 ≤ 0.1), minimal (both ≥ 0.05).
        "zero": criteria(12.54, 11.75, 0.937, 0.63, 0.05,
                         {"0.0": {"score": 3.31, "K": [[0, 1]], "relative": 0.282},
                          "0.1": {"score": 1.2, "K": [], "relative": 0.102}}),
        "resample": {"error": "the resample ablation needs at least 2 prompts"},
    }
    text = report_of(tmp_path, circuit=circuit)
    rows = [line for line in text.splitlines() if line.startswith("| run | ")]
    assert "| run | 0.0, 0.1 | corrupted | 12.54 | -12.72 | -1.014 | 25.25 (2.013) | 0.1: 0.05 (0.004) | **no** | " \
           "**no** | **no** |" in rows  # fmt: skip
    assert "| run | 0.0, 0.1 | zero | 12.54 | 11.75 | 0.937 | 0.63 (0.050) | 0.1: 1.20 (0.102) | yes | yes | yes |" in rows
    assert any("resample | not scored: the resample ablation needs at least 2 prompts" in row for row in rows)
    assert any("the verdict changes with the ablation" in row for row in rows)


def test_the_verdict_thresholds_are_inclusive_and_read_the_relative_scores(tmp_path):
    # F(C)/F(M) = 0.9 exactly is faithful; relative incompleteness 0.1 complete; a relative minimality of 0.049 is
    # not minimal although its raw score (5.0) is large.
    circuit = {"mean": criteria(10.0, 9.0, 0.9, 1.0, 0.1, {"1.0": {"score": 5.0, "K": [], "relative": 0.049}})}
    text = report_of(tmp_path, circuit=circuit)
    assert "| run | 0.0, 0.1 | mean | 10.00 | 9.00 | 0.900 | 1.00 (0.100) | 1.0: 5.00 (0.049) | yes | yes | **no** |" \
        in text.splitlines()  # fmt: skip


def test_head_types_of_the_learned_heads(tmp_path):
    types = ("previous_token", "duplicate_token", "induction", "copying", "copying_cosine", "copying_top5",
             "attn_end_io", "attn_end_s1", "attn_end_s2")  # fmt: skip
    # Distinct values per (type, layer, head): t.lh → 0.1·t + 0.01·(4·layer + head) (type t from 0).
    scores = {name: [[round(0.1 * t + 0.01 * (4 * layer + head), 4) for head in range(4)] for layer in range(2)]
              for t, name in enumerate(types)}  # fmt: skip
    text = report_of(tmp_path, head_types={"prompts": 16, "heads": [[0, 1], [1, 2]], "scores": scores})
    lines = text.splitlines()
    for layer, head in ((0, 1), (1, 2)):
        cells = " | ".join(f"{0.1 * t + 0.01 * (4 * layer + head):.2f}" for t in range(len(types)))
        assert f"| run | {layer}.{head} | {cells} |" in lines
    assert not any(line.startswith("| run | 0.0 | ") for line in lines)  # not a learned head: no row


def test_rotation_dims_and_loadings(tmp_path):
    rotation = {"target": 0.9, "dims_needed": 20, "kept_by": "top dims_needed of the sorted mask",
                "effect_of_top_k": [], "temperature": 0.05,
                "layers": {"1": {"dims_kept": 3, "mask_above_half": 5, "mask_sum": 4.9,
                                 "head_loading_sum": [0.5, 1.5, 0.25, 0.75], "head_loading_share": None,
                                 "rotation_moved": 0.1234},
                           "0": {"dims_kept": 17, "mask_above_half": 19, "mask_sum": 18.2,
                                 "head_loading_sum": [3.1, 7.25, 6.0, 0.65], "head_loading_share": None,
                                 "rotation_moved": 0.4123}}}  # fmt: skip
    lines = report_of(tmp_path, rotation=rotation).splitlines()
    assert "| run | noising | 0.90 | 20 | 0 | 17 | 19 | 0.0: 3.10 0.1: 7.25 0.2: 6.00 0.3: 0.65 | 0.412 |" in lines
    assert "| run | noising | 0.90 | 20 | 1 | 3 | 5 | 1.0: 0.50 1.1: 1.50 1.2: 0.25 1.3: 0.75 | 0.123 |" in lines


def test_no_section_without_its_data(tmp_path):
    text = report_of(tmp_path)
    for heading in ("Is the learned head set a circuit?", "Which head types are the learned heads?",
                    "The learned rotation: dimensions and head loadings"):  # fmt: skip
        assert heading not in text


TINY = ["--data.n_train", "16", "--data.n_val", "8", "--data.n_test", "8", "--data.batch_size", "8",
        "--data.off_distribution", "[]", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--trainer.max_steps", "2", "--max_activating.per_set", "0"]  # fmt: skip


def test_head_types_flag_stores_the_learned_heads_types(tmp_path, monkeypatch):
    """Opt-in: without the flag summary.json has no head_types; with it, every type's [layer][head] scores (on the
    16 training prompts) and the learned heads, which are the summary's support."""
    from ioi_superpose.analyses.head_types import TYPES

    run_cli(["fit", "--model.model_name", TOY_IOI, *TINY], tmp_path, monkeypatch)
    run_cli(["fit", "--model.model_name", TOY_IOI, *TINY, "--model.head_types", "true"], tmp_path, monkeypatch)
    plain, typed = (json.loads(p.read_text()) for p in sorted(tmp_path.glob("runs/*/version_*/summary.json")))
    assert "head_types" not in plain
    record = typed["head_types"]
    assert record["prompts"] == 16 and "error" not in record
    assert sorted(map(tuple, record["heads"])) == sorted(tuple(unit[:2]) for unit in typed["support"])
    assert set(record["scores"]) == set(TYPES)
    for name, grid in record["scores"].items():
        assert len(grid) == 2 and all(len(row) == 4 for row in grid), name
    attention = [record["scores"][f"attn_end_{role}"][layer][head] for role in ("io", "s1", "s2")
                 for layer in range(2) for head in range(4)]  # fmt: skip
    assert all(0.0 <= value <= 1.0 for value in attention) and max(attention) > 0.0

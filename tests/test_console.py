"""A quiet console: `validate` and `test` print one line of named figures per set and log into the checkpoint's own
run directory; an API call prints nothing of its own. (That every documented command, the main job among them, prints
no Lightning GPU/TPU lines, litlogger tip, device moves or deprecation warnings, and the main job at most 16 lines, is
checked on the commands as the docs give them: tests/test_docs_commands.py.)"""

from __future__ import annotations

import warnings

from ioi_superpose import learn_combination
from ioi_superpose.console import quiet_call
from ioi_superpose.data import ioi_prompts
from tests.helpers import QUIET, TOY_IOI, run_cli


def test_validate_and_test_print_named_figures_per_set_into_the_runs_own_directory(tmp_path, monkeypatch, capsys):
    args = ["--model.model_name", TOY_IOI, "--data.n_train", "32", "--data.n_val", "16", "--data.n_test", "16",
            "--data.batch_size", "16", "--data.off_distribution", "[held_out_names,objects_as_names]",
            "--max_activating.per_set", "0", *QUIET]  # fmt: skip
    run_cli(["fit", *args, "--trainer.max_epochs", "1"], tmp_path, monkeypatch)
    run = tmp_path / "runs" / "ioi_superpose" / "version_0"
    config = (run / "config.yaml").read_text()
    capsys.readouterr()
    run_cli(["test", *args, "--ckpt_path", str(run / "checkpoints" / "last.ckpt")], tmp_path, monkeypatch)
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.split()}
    assert rows["set"][:2] == ["recovery", "clean"]
    assert set(rows) >= {"in_distribution", "held_out_names", "objects_as_names"}
    assert rows["objects_as_names"][0] == "n/a"  # the model does not tell clean from corrupted there
    assert "Test metric" not in out and "DataLoader" not in out  # Lightning's per-dataloader tables
    run_cli(["validate", *args, "--ckpt_path", str(run / "checkpoints" / "last.ckpt")], tmp_path, monkeypatch)
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines() if line.startswith("val ")] == ["val"]
    assert f"logged to       {run.relative_to(tmp_path)}" in out
    assert sorted(path.name for path in run.parent.iterdir()) == ["version_0"]  # no version_1, version_2
    assert (run / "config.yaml").read_text() == config  # the fit's record is kept


def test_an_api_call_prints_nothing_of_its_own(capsys):
    prompts = ioi_prompts(TOY_IOI, n=8, seed=0)
    from ioi_superpose.models import load_frozen_model

    model = load_frozen_model(TOY_IOI)
    learn_combination(model, prompts.clean_tokens, prompts.corrupted_tokens, prompts.answer_tokens, steps=2)
    captured = capsys.readouterr()
    assert captured.out == "" and "Reference cache" not in captured.err and "GPU available" not in captured.err


def test_an_api_call_hides_the_dependencies_deprecation_warnings_not_ours():
    """Lightning's `isinstance(treespec, LeafSpec)` deprecation (torch 2.13) and its "no val_dataloader" warning were
    printed by every learn_combination call in a notebook or script (seen by tests/test_docs_commands.py: pytest
    itself records warnings)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_call():
            warnings.warn_explicit("`isinstance(treespec, LeafSpec)` is deprecated", FutureWarning, "_pytree.py", 21,
                                   module="lightning.pytorch.utilities._pytree")  # fmt: skip
            warnings.warn_explicit("You defined a `validation_step` but have no `val_dataloader`. Skipping val loop.",
                                   UserWarning, "configuration_validator.py", 70, module="lightning.pytorch")  # fmt: skip
            warnings.warn_explicit("a setting of ours is odd", UserWarning, "api.py", 1, module="ioi_superpose.api")
        warnings.warn_explicit("deprecated after the call", FutureWarning, "x.py", 1, module="lightning.x")
    assert [str(warning.message) for warning in caught] == ["a setting of ours is odd", "deprecated after the call"]

"""The settings as validated dataclasses (`fitting/settings.py`): errors name the field, the CLI renames it to its
flag and the API to its argument; a family's own settings are refused for another family (issue 19, item 8);
NaN and ±inf are refused for every float setting (issue 19, item 9)."""

from __future__ import annotations

import math

import pytest

from ioi_superpose.api import learn_combination, learn_combinations
from ioi_superpose.errors import ConfigError, SettingError, cli_flag
from ioi_superpose.fitting.settings import FamilyConfig, OptimConfig, SuperpositionConfig
from ioi_superpose.training.system import HeadSuperposition
from tests.helpers import SMALL, prompt_pairs, random_model, run_cli


@pytest.fixture(scope="module")
def model():
    return random_model(n_layers=2, n_heads=2, d_model=16, attn_only=True)


def module(model, **settings):
    return HeadSuperposition(model_name="tiny", preloaded_model=model, **settings)


# -- item 8: a setting of another family -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings, message",
    [({"combination": "scalar", "temperature": 0.5}, "^temperature=0.5 only applies to combination hard_concrete"),
     ({"combination": "per_position", "gate_seed": 3}, "^gate_seed=3 only applies to combination hard_concrete"),
     ({"combination": "mixing", "temperature": 1.0}, "^temperature=1.0 only applies to combination hard_concrete"),
     ({"combination": "hard_concrete", "mixing_target": 0}, "^mixing_target=0 only applies to combination mixing"),
     ({"combination": "hard_concrete", "bounded": False},
      "^bounded=False only applies to combination scalar or per_position or mixing")],
)  # fmt: skip
def test_a_setting_of_another_family_is_refused_naming_its_family(model, settings, message):
    with pytest.raises(SettingError, match=message):
        module(model, **settings)


def test_a_familys_own_settings_are_accepted(model):
    gates = module(model, combination="hard_concrete", temperature=0.5, gate_seed=3).combination
    assert (gates.temperature, gates.seed) == (0.5, 3)
    assert module(model, combination="mixing", mixing_target=1).combination.target == 1
    assert module(model, combination="scalar", bounded=False).combination.bounded is False
    default = module(model, combination="hard_concrete").combination  # unset: the family's defaults
    assert (default.temperature, default.seed) == (pytest.approx(2 / 3), 0)


def test_the_cli_names_the_flags(tiny_gpt2_dir, tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["fit", "--model.model_name", str(tiny_gpt2_dir), *SMALL, "--model.temperature", "0.5"],
                tmp_path, monkeypatch)  # fmt: skip
    assert exit_info.value.code == 1
    error = capsys.readouterr().err
    assert "--model.temperature=0.5 only applies to --model.combination hard_concrete" in error
    assert "Traceback" not in error and not (tmp_path / "runs").exists()


def test_the_api_names_its_arguments(model):
    clean, corrupted, answers = prompt_pairs(model.cfg.d_vocab)
    with pytest.raises(SettingError, match="^temperature=0.5 only applies to combination hard_concrete"):
        learn_combination(model, clean, corrupted, answers, steps=1, temperature=0.5)
    with pytest.raises(SettingError, match=r"^init=2.0 is outside \[0, 1\].*\(or set bounded false\)"):
        learn_combination(model, clean, corrupted, answers, steps=1, init=2.0)
    with pytest.raises(SettingError, match=r"^members\[1\]\['gate_seed'\]=4 only applies to combination hard_concrete"):
        learn_combinations(model, clean, corrupted, answers, steps=1, members=[{}, {"gate_seed": 4}])
    with pytest.raises(SettingError, match=r"^members\[0\]\['lr'\] must be > 0"):
        learn_combinations(model, clean, corrupted, answers, steps=1, members=[{"lr": 0.0}])
    # `seed` seeds the whole fit, so it is accepted for every family; only hard_concrete's gates read it too.
    assert learn_combination(model, clean, corrupted, answers, steps=1, seed=3).combination == "scalar"


# -- item 9: non-finite numbers ----------------------------------------------------------------------------------

FLOAT_SETTINGS = [
    ("l1", {}), ("lr", {}), ("l0_threshold", {}), ("init", {"bounded": False}), ("init", {}),
    ("temperature", {"combination": "hard_concrete"}), ("prune_target", {}), ("cache_max_mb", {}),
]  # fmt: skip


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("name, context", FLOAT_SETTINGS)
def test_every_float_setting_refuses_non_finite_numbers(model, name, context, value):
    with pytest.raises(SettingError, match=f"^{name}={value} is not a finite number") as error:
        module(model, **context, **{name: value})
    assert error.value.field == name


def test_a_yaml_nan_is_refused_with_the_flag(tiny_gpt2_dir, tmp_path, monkeypatch, capsys):
    config = tmp_path / "nan.yaml"
    config.write_text("model:\n  l1: .nan\n")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["fit", "--config", str(config), "--model.model_name", str(tiny_gpt2_dir), *SMALL], tmp_path,
                monkeypatch)  # fmt: skip
    assert exit_info.value.code == 1
    assert "--model.l1=nan is not a finite number" in capsys.readouterr().err


# -- the dataclasses ---------------------------------------------------------------------------------------------


def test_the_config_groups_flat_settings_and_gives_them_back():
    settings = dict(model_name="m", l1=0.1, lr=0.2, combination="hard_concrete", temperature=0.4, gate_seed=2,
                    cache_dtype="bfloat16", cache_max_mb=5.0, prune_target=0.9, prune_prompts=8, test_sets=("a", "b"))  # fmt: skip
    config = SuperpositionConfig.from_settings(**settings)
    assert (config.optim.l1, config.family.own.temperature, config.cache.max_bytes) == (0.1, 0.4, 5.0 * 2**20)
    assert {key: config.settings()[key] for key in settings} == settings
    with pytest.raises(TypeError, match="unknown settings"):
        SuperpositionConfig.from_settings(l2=0.1)


def test_each_dataclass_validates_itself_and_names_the_field():
    with pytest.raises(SettingError, match="^l1 must be >= 0") as error:
        OptimConfig(l1=-1.0)
    assert error.value.field == "l1"
    assert str(error.value.named(cli_flag)).startswith("--model.l1 must be >= 0")
    with pytest.raises(SettingError, match="^direction must be one of"):
        OptimConfig(direction="sideways")
    with pytest.raises(SettingError, match="^combination must be one of"):
        FamilyConfig(combination="dense")
    assert isinstance(SettingError("x", "$x bad"), ConfigError)  # the CLIs' and the tests' catch still holds

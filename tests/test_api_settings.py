"""The settings `learn_combination` and `learn_combinations` share (`api.FitSettings`), declared once: both
signatures and help texts still list and explain each, and a misspelt one is refused, not swallowed."""

from __future__ import annotations

import inspect
import pydoc

import pytest
import torch

from ioi_superpose.api import FIT_DEFAULTS, FitSettings, learn_combination, learn_combinations
from tests.helpers import prompt_pairs, random_model


@pytest.mark.parametrize("function", [learn_combination, learn_combinations])
def test_every_shared_setting_is_a_typed_keyword_with_its_default_and_its_meaning_in_help(function):
    parameters = inspect.signature(function).parameters
    text = pydoc.render_doc(function)
    assert set(FIT_DEFAULTS) == set(FitSettings.__annotations__)
    for name, default in FIT_DEFAULTS.items():
        parameter = parameters[name]
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY
        assert parameter.default == default
        assert parameter.annotation not in (inspect.Parameter.empty, None), name
        assert f"\n    {name}: " in text, name  # an entry of the settings' documentation
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())  # no bare **settings


@pytest.fixture(scope="module")
def model():
    return random_model(n_layers=2, n_heads=4, d_model=32)


@pytest.mark.parametrize("call", ["single", "batched"])
def test_a_misspelt_setting_is_refused_naming_it(model, call):
    tokens = prompt_pairs(model.cfg.d_vocab)
    with pytest.raises(TypeError, match="unexpected keyword argument 'l1_warmup'"):
        if call == "single":
            learn_combination(model, *tokens, steps=1, l1_warmup=5)
        else:
            learn_combinations(model, *tokens, members=[{}], steps=1, l1_warmup=5)


def test_a_shared_family_setting_reaches_every_member(model):
    """mixing_target is shared: a batched mixing member equals the single run of its settings."""
    tokens = prompt_pairs(model.cfg.d_vocab, batch=6, length=7)
    shared = dict(combination="mixing", mixing_target=1, steps=4, seed=2)
    (batched,) = learn_combinations(model, *tokens, members=[dict(l1=0.01, lr=0.1)], **shared)
    single = learn_combination(model, *tokens, l1=0.01, lr=0.1, **shared)
    torch.testing.assert_close(batched.coefficients, single.coefficients, atol=1e-5, rtol=1e-5)
    # Only layer 1's heads receive (mixing_target = 1): layer 0's rows of the map stay zero.
    assert batched.coefficients[0].abs().sum() == 0 and batched.coefficients[1].abs().sum() > 0

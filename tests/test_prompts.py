"""ioi_prompts: the one call for IOI prompts, for GPT-2's tokenizer and the toy word tokenizer."""

import pytest
import torch

import ioi_superpose
import ioi_superpose.baselines.patching
from ioi_superpose.data import IOIBatch, ioi_prompts, ioi_texts
from ioi_superpose.data.templates import IOI_TEMPLATES, LONG_TEMPLATES
from ioi_superpose.errors import ConfigError
from ioi_superpose.models import WordTokenizer, gpt2_tokenizer, load_frozen_model
from tests.helpers import random_model

TOY = "checkpoints/toy_ioi.pt"
NAMES = {"gpt2-small": "gpt2-small", "toy": TOY}


@pytest.fixture(scope="module")
def toy_model():
    return load_frozen_model(TOY)


@pytest.mark.parametrize("name", ["gpt2-small", TOY])
@pytest.mark.parametrize("corruption", ["name_swap", "abc"])
def test_shapes_and_equal_length(name, corruption):
    prompts = ioi_prompts(name, n=24, corruption=corruption, seed=3)
    assert isinstance(prompts, IOIBatch)
    n, length = prompts.clean_tokens.shape
    assert n == 24 and length == 16  # 16 tokens with BOS for both tokenizers (DESIGN.md: the seed's prompt is 15)
    assert prompts.corrupted_tokens.shape == (24, 16) and prompts.answer_tokens.shape == (24, 2)
    assert (prompts.end_pos == length - 1).all()  # equal length: END is every row's last position
    for field in ("io_pos", "s1_pos", "s2_pos", "template_id", "index"):
        assert getattr(prompts, field).shape == (24,)
    assert len(set(prompts.template_id.tolist())) > 1  # several templates of that length, not one


@pytest.mark.parametrize("name", ["gpt2-small", TOY])
def test_answers_and_roles(name):
    prompts = ioi_prompts(name, n=32, seed=1)
    rows = torch.arange(32)
    io, s = prompts.answer_tokens.T
    assert (io != s).all()
    assert (prompts.clean_tokens[rows, prompts.io_pos] == io).all()
    assert (prompts.clean_tokens[rows, prompts.s1_pos] == s).all()
    assert (prompts.clean_tokens[rows, prompts.s2_pos] == s).all()
    # name_swap: only S2 differs, and it becomes the IO: the clean answer is the corrupted prompt's wrong one
    differs = prompts.clean_tokens != prompts.corrupted_tokens
    assert (differs.sum(1) == 1).all() and differs[rows, prompts.s2_pos].all()
    assert (prompts.corrupted_tokens[rows, prompts.s2_pos] == io).all()


def test_gpt2_tokens_match_the_tokenizer():
    prompts = ioi_prompts("gpt2-small", n=8)
    tokenizer = gpt2_tokenizer()
    for text, row in zip(ioi_texts(prompts, "gpt2-small"), prompts.clean_tokens):
        assert row.tolist() == [tokenizer.bos_token_id] + tokenizer.encode(text)
        assert text.endswith(" to")


def test_texts_of_toy_prompts():
    prompts = ioi_prompts(TOY, n=4, templates=[IOI_TEMPLATES[0]], names=["Mary", "John"], seed=0)
    clean, corrupted = ioi_texts(prompts, TOY), ioi_texts(prompts, TOY, which="corrupted")
    for text, bad in zip(clean, corrupted):
        io, s = text.split(", ")[1].split(" and ")[1].split(" ")[0], text.split(". ")[1].split(" ")[0]
        assert text.startswith(f"Then, {s} and {io} went to the ") and text.endswith(
            f". {s} gave a {text.split(' a ')[1]}"
        )
        assert bad == text.replace(f". {s} gave", f". {io} gave")


@pytest.mark.parametrize("name", ["gpt2-small", TOY])
def test_seed_reproducibility(name):
    a, b, c = ioi_prompts(name, n=16, seed=5), ioi_prompts(name, n=16, seed=5), ioi_prompts(name, n=16, seed=6)
    for field in ("clean_tokens", "corrupted_tokens", "answer_tokens", "io_pos", "template_id"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    assert not torch.equal(a.clean_tokens, c.clean_tokens)


def test_unequal_length_on_request():
    prompts = ioi_prompts("gpt2-small", n=64, equal_length=False)
    assert len(set(prompts.end_pos.tolist())) > 1
    long = ioi_prompts("gpt2-small", n=8, templates=list(LONG_TEMPLATES))
    assert len(set(long.end_pos.tolist())) == 1


def test_model_with_tokenizer_and_toy_model(toy_model):
    model = random_model(d_vocab=len(gpt2_tokenizer()))
    model.set_tokenizer(gpt2_tokenizer())
    assert torch.equal(ioi_prompts(model, n=8).clean_tokens, ioi_prompts("gpt2-small", n=8).clean_tokens)
    # A loaded toy-IOI model carries the tokenizer its checkpoint stores (issue 17): the model a researcher
    # holds is accepted and gives the prompts its path gives.
    assert isinstance(toy_model.tokenizer, WordTokenizer)
    from_model, from_path = ioi_prompts(toy_model, n=8), ioi_prompts(TOY, n=8)
    assert torch.equal(from_model.clean_tokens, from_path.clean_tokens)
    assert torch.equal(from_model.corrupted_tokens, from_path.corrupted_tokens)
    assert torch.equal(from_model.answer_tokens, from_path.answer_tokens)
    skip_trigrams = load_frozen_model("checkpoints/toy_superposition_single.pt")  # stores no tokenizer
    assert skip_trigrams.tokenizer is None
    with pytest.raises(ConfigError, match="no tokenizer.*name or path"):
        ioi_prompts(skip_trigrams)


def test_ready_for_learn_combination_and_drop_ins(toy_model):
    prompts = ioi_prompts(TOY, n=16)
    result = ioi_superpose.learn_combination(
        toy_model, prompts.clean_tokens, prompts.corrupted_tokens, prompts.answer_tokens, steps=5
    )
    assert result.coefficients.shape == (2, 4)
    _, clean_cache = toy_model.run_with_cache(prompts.clean_tokens)

    def metric(logits):
        end = logits[:, -1]
        return (end.gather(-1, prompts.answer_tokens)[:, 0] - end.gather(-1, prompts.answer_tokens)[:, 1]).mean()

    effects = ioi_superpose.baselines.patching.get_act_patch_attn_head_out_all_pos(
        toy_model, prompts.corrupted_tokens, clean_cache, metric
    )
    assert effects.shape == (2, 4) and torch.isfinite(effects).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n=0), "n must be a positive integer"),
        (dict(n=2.5), "n must be a positive integer"),
        (dict(corruption="shuffle"), "corruption must be 'name_swap' or 'abc'"),
        (dict(templates=[]), "templates is empty"),
        (dict(templates=["[B] and [A] met."]), "templates must be strings"),
        (dict(names=["Mary"]), "needs at least 2 names"),
        (dict(names=["Mary", "Supercalifragilistic"]), "not single tokens"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ioi_prompts("gpt2-small", **kwargs)


def test_bad_model_argument():
    with pytest.raises(ConfigError, match="model_or_name must be a HookedTransformer or a model name"):
        ioi_prompts(42)
    with pytest.raises(ConfigError, match="which must be"):
        ioi_texts(ioi_prompts(TOY, n=2), TOY, which="both")


def test_model_mismatch_is_caught():
    small = random_model(d_vocab=50)
    small.set_tokenizer(gpt2_tokenizer())
    with pytest.raises(ConfigError, match="outside the model's vocabulary"):
        ioi_prompts(small, n=4)

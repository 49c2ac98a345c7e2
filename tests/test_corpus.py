"""Max-activating positions on any text (`--data.corpus`): the direct effect against an exact ablation on a model
where it is exact (one attention layer, no layer norm), against TransformerLens's own direct logit attribution
with layer norm, and the CLI on a generated file with the toy IOI model."""

from __future__ import annotations

import json

import pytest
import torch

from ioi_superpose.analyses.corpus import corpus_examples, direct_effects
from ioi_superpose.data.corpus import read_corpus
from ioi_superpose.engine.vocabulary import hook_name
from ioi_superpose.errors import ConfigError
from ioi_superpose.models import HookedTransformer, HookedTransformerConfig
from tests.helpers import random_model

WEIGHTS = torch.tensor([[1.0, 0.0, 0.5]])


def linear_model() -> HookedTransformer:
    cfg = HookedTransformerConfig(n_layers=1, n_heads=3, d_model=12, d_head=4, d_vocab=20, n_ctx=16, attn_only=True,
                                  normalization_type=None, act_fn=None, seed=3)  # fmt: skip
    model = HookedTransformer(cfg)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(3.0)
    return model.eval()


def test_direct_effect_is_exact_without_layer_norm():
    """One layer, no LN: the logits are linear in each head's z, so scaling head h's z by (1 − w_h) lowers the
    next token's logit by exactly the direct effect."""
    model = linear_model()
    tokens = torch.randint(0, 20, (4, 9), generator=torch.Generator().manual_seed(0))
    effects = direct_effects(model, tokens, WEIGHTS)
    keep = (1 - WEIGHTS[0])[None, None, :, None]
    with torch.no_grad():
        intact = model(tokens)
        scaled = model.run_with_hooks(tokens, fwd_hooks=[(hook_name("z", 0), lambda z, hook: z * keep)])
    next_tokens = tokens[:, 1:, None]
    expected = (intact[:, :-1].gather(-1, next_tokens) - scaled[:, :-1].gather(-1, next_tokens))[..., 0]
    assert torch.allclose(effects[:, :-1], expected, atol=1e-4)
    assert (effects[:, -1] == 0).all()


def test_direct_effect_matches_transformer_lens_attribution_with_layer_norm():
    model = random_model(n_layers=2, n_heads=2, d_model=16, seed=4)
    weights = torch.tensor([[1.0, 0.25], [0.0, 0.75]])
    tokens = torch.randint(0, model.cfg.d_vocab, (3, 7), generator=torch.Generator().manual_seed(1))
    effects = direct_effects(model, tokens, weights)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
        stack = cache.stack_head_results(layer=-1, apply_ln=True)  # [layer·head, batch, pos, d_model], ln_final's scale
        written = torch.einsum("cbpm,c->bpm", stack, weights.flatten()) * model.ln_final.w
        expected = torch.einsum("bpm,mbp->bp", written[:, :-1], model.W_U[:, tokens[:, 1:]])
    assert torch.allclose(effects[:, :-1], expected, atol=1e-4)


def test_bad_corpus_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match="--data.corpus.*is not a file"):
        read_corpus(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(ConfigError, match="holds no text"):
        read_corpus(empty)


def test_cli_writes_the_corpus_table(tmp_path, monkeypatch):
    """The toy IOI job with --data.corpus on a generated file: the table's top effect is the largest direct effect
    over every position of the file, recomputed here from the saved α."""
    from ioi_superpose.data.prompts import ioi_prompts, ioi_texts
    from ioi_superpose.models import load_frozen_model, load_tokenizer
    from tests.helpers import QUIET, REPO, SMALL, TOY_IOI, run_cli

    texts = ioi_texts(ioi_prompts(TOY_IOI, n=12, seed=7, equal_length=False), TOY_IOI)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(texts) + "\n")
    args = ["fit", "--config", str(REPO / "experiments" / "toy_ioi_rotation.yaml"), "--model.model_name", TOY_IOI,
            *SMALL, *QUIET, "--trainer.max_epochs", "1", "--model.combination", "scalar", "--model.rotation_target", "null", "--data.corpus", str(corpus),
            "--data.off_distribution", "[]", "--max_activating.k", "4"]  # fmt: skip
    run_cli(args, tmp_path, monkeypatch)
    (run_dir,) = (tmp_path / "runs" / "toy_ioi_rotation").iterdir()
    table = json.loads((run_dir / "corpus_examples.json").read_text())
    assert len(table["top"]) == 4 and len(table["bottom"]) == 4
    assert (run_dir / "corpus_examples.md").read_text().startswith("# Max-activating positions on the corpus")
    alpha = torch.load(run_dir / "coefficients.pt")["coefficients"]
    model, tokenizer = load_frozen_model(TOY_IOI), load_tokenizer(TOY_IOI)
    again = corpus_examples(model, tokenizer, texts, alpha, k=4)
    assert table["n_positions"] == again.n_positions == sum(len(tokenizer.encode(t)) for t in texts)
    assert table["top"][0]["effect"] == pytest.approx(again.top[0].effect, abs=1e-4)
    assert table["top"][0]["effect"] >= table["bottom"][0]["effect"]


def test_cli_refuses_corpus_with_rotation(tmp_path, monkeypatch, capsys):
    from tests.helpers import QUIET, REPO, SMALL, TOY_IOI, run_cli

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Then , Mary and John went to the store .\n")
    args = ["fit", "--config", str(REPO / "experiments" / "toy_ioi_rotation.yaml"), "--model.model_name", TOY_IOI,
            *SMALL, *QUIET, "--data.corpus", str(corpus)]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        run_cli(args, tmp_path, monkeypatch)
    assert exit_info.value.code != 0
    assert "leave --data.corpus unset for rotation runs" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "toy_ioi_rotation").exists() or not any((tmp_path / "runs").rglob("summary.json"))

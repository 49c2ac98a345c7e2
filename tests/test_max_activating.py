"""Max-activating examples: every row against an independent per-prompt recomputation, the ranking, the
texts, the corpus, known answers (α = 0 moves nothing, α = 1 moves every prompt to the source) and the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from ioi_superpose.analyses.max_activating import CORPUS_SETS, CORRUPTIONS, build_corpus, max_activating_examples
from ioi_superpose.cli.train import main as train_main
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.data.datamodule import IOIDataModule
from ioi_superpose.engine.metric import MIN_GAP, logit_diff
from ioi_superpose.engine.runs import end_logits, recovery_of
from ioi_superpose.errors import ConfigError
from ioi_superpose.results.tables import max_activating_markdown
from ioi_superpose.training.system import HeadSuperposition
from tests.helpers import TOY_IOI as TOY


@pytest.fixture(scope="module")
def toy_corpus():
    torch.set_num_threads(1)
    return build_corpus(TOY, per_set=3)


def toy_system(direction: str = "denoising", combination: str = "scalar") -> HeadSuperposition:
    return HeadSuperposition(model_name=TOY, direction=direction, combination=combination).eval()


def hand_patched_logit_diff(model, base, source, end, answers, alpha) -> float:
    """The patched run written out with TransformerLens hooks (not the engine): each layer's z, as the
    patched run computes it, mixed with the source run's z by α[layer, head]."""
    _, cache = model.run_with_cache(source[None])

    def mix(z, hook):
        layer = int(hook.name.split(".")[1])
        return z + alpha[layer][None, None, :, None] * (cache[hook.name] - z)

    hooks = [(f"blocks.{layer}.attn.hook_z", mix) for layer in range(model.cfg.n_layers)]
    logits = model.run_with_hooks(base[None], fwd_hooks=hooks)[0, end]
    return float(logits[answers[0]] - logits[answers[1]])


@pytest.mark.parametrize("direction", ["denoising", "noising"])
def test_every_row_equals_an_independent_per_prompt_recomputation(toy_corpus, direction):
    system = toy_system(direction)
    alpha = torch.rand(2, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        system.combination.coefficients.copy_(alpha)
    table = max_activating_examples(system.fitted(), toy_corpus, k=5, batch_size=7)  # chunks cut across sets' padding
    parts = {(part.set_name, part.corruption): part for part in toy_corpus.parts}
    model = system.frozen
    assert any(len(set(part.prompts.end_pos.tolist())) > 1 for part in toy_corpus.parts)  # padded rows are read
    for row in table.rows:
        part = parts[(row.set_name, row.corruption)]
        end = int(part.prompts.end_pos[row.index])
        clean = part.prompts.clean_tokens[row.index, : end + 1]  # unpadded, alone
        corrupted = part.prompts.corrupted_tokens[row.index, : end + 1]
        answers = part.prompts.answer_tokens[row.index]
        clean_ld = float(logit_diff(end_logits(model, clean[None], torch.tensor([end]), answers[None]))[0])
        corrupted_ld = float(logit_diff(end_logits(model, corrupted[None], torch.tensor([end]), answers[None]))[0])
        base, source = (corrupted, clean) if direction == "denoising" else (clean, corrupted)
        patched_ld = hand_patched_logit_diff(model, base, source, end, answers, alpha)
        base_ld = corrupted_ld if direction == "denoising" else clean_ld
        assert row.clean_logit_diff == pytest.approx(clean_ld, abs=1e-3)
        assert row.corrupted_logit_diff == pytest.approx(corrupted_ld, abs=1e-3)
        assert row.patched_logit_diff == pytest.approx(patched_ld, abs=1e-3)
        assert row.base_logit_diff == pytest.approx(base_ld, abs=1e-3)
        assert row.move == pytest.approx(patched_ld - base_ld, abs=2e-3)
        if abs(clean_ld - corrupted_ld) < MIN_GAP:
            assert row.recovery is None
        else:
            alone = ContrastBatch.from_tokens(clean[None], corrupted[None], answers[None])
            assert row.recovery == pytest.approx(float(recovery_of(model, alone, alpha, direction)), abs=1e-3)
    assert any(row.recovery is None for row in table.rows)  # objects_as_names: the toy model has no gap there
    assert any(row.recovery is not None for row in table.rows)


def test_ranking_is_by_move_and_complete(toy_corpus):
    system = toy_system()
    with torch.no_grad():
        system.combination.coefficients.copy_(torch.rand(2, 4, generator=torch.Generator().manual_seed(2)))
    table = max_activating_examples(system.fitted(), toy_corpus, k=4)
    moves = [row.move for row in table.rows]
    assert moves == sorted(moves, reverse=True)
    assert [row.rank for row in table.rows] == list(range(1, len(toy_corpus) + 1))
    keys = [(row.set_name, row.corruption, row.index) for row in table.rows]
    expected = {(p.set_name, p.corruption, i) for p in toy_corpus.parts for i in range(len(p.prompts))}
    assert len(keys) == len(set(keys)) and set(keys) == expected  # every prompt exactly once
    by_move = sorted(moves)
    assert [row.move for row in table.top()] == by_move[::-1][:4]
    assert [row.move for row in table.bottom()] == by_move[:4]
    markdown = max_activating_markdown(table)
    for row in [*table.top(), *table.bottom()]:
        assert f"| {row.rank} | {row.set_name} | {row.corruption} | {row.prompt} |" in markdown
    everything = max_activating_examples(system.fitted(), toy_corpus, k=10_000)
    assert len(everything.top()) == len(everything.bottom()) == len(toy_corpus)


@pytest.mark.parametrize("combination", ["scalar", "per_position"])
@pytest.mark.parametrize("direction", ["denoising", "noising"])
def test_alpha_zero_moves_nothing_and_alpha_one_moves_every_prompt_to_the_source(toy_corpus, combination, direction):
    system = toy_system(direction, combination)
    with torch.no_grad():
        system.combination.coefficients.zero_()
    zero = max_activating_examples(system.fitted(), toy_corpus)
    assert all(abs(row.move) <= 1e-5 for row in zero.rows)
    with torch.no_grad():
        system.combination.coefficients.fill_(1.0)
    one = max_activating_examples(system.fitted(), toy_corpus)
    source = "clean_logit_diff" if direction == "denoising" else "corrupted_logit_diff"
    for row in one.rows:
        assert row.patched_logit_diff == pytest.approx(getattr(row, source), abs=1e-5)
        assert row.move == pytest.approx(getattr(row, source) - row.base_logit_diff, abs=1e-5)
        if row.recovery is not None:
            assert row.recovery == pytest.approx(1.0 if direction == "denoising" else 0.0, abs=1e-5)
    assert max(abs(row.move) for row in one.rows) > 10  # the toy model's patch moves prompts by logits, not noise


@pytest.mark.parametrize("model", ["gpt2", "toy"])
def test_prompt_texts_decode_to_the_tokens_used(model, tiny_gpt2_dir):
    name = str(tiny_gpt2_dir) if model == "gpt2" else TOY
    datamodule = IOIDataModule(model_name=name)
    corpus = build_corpus(datamodule, per_set=2)
    encoder = datamodule.encoder
    bos = [] if encoder.bos_token_id is None else [encoder.bos_token_id]
    for part in corpus.parts:
        for i, (text, corrupted, (io, s)) in enumerate(zip(part.texts, part.corrupted_texts, part.answers)):
            end = int(part.prompts.end_pos[i])
            assert (
                bos + encoder.encode(text, add_special_tokens=False) == part.prompts.clean_tokens[i, : end + 1].tolist()
            )
            assert bos + encoder.encode(corrupted, add_special_tokens=False) == (
                part.prompts.corrupted_tokens[i, : end + 1].tolist()
            )
            assert [
                encoder.encode(" " + io, add_special_tokens=False),
                encoder.encode(" " + s, add_special_tokens=False),
            ] == [[token] for token in part.prompts.answer_tokens[i].tolist()]


def test_the_corpus_is_deterministic_covers_every_set_and_is_fresh():
    corpus = build_corpus(TOY, per_set=4)
    again = build_corpus(TOY, per_set=4)
    assert [(p.set_name, p.corruption) for p in corpus.parts] == [(s, c) for s in CORPUS_SETS for c in CORRUPTIONS]
    assert len(corpus) == 4 * len(CORPUS_SETS) * len(CORRUPTIONS)
    for part, same in zip(corpus.parts, again.parts):
        assert torch.equal(part.prompts.clean_tokens, same.prompts.clean_tokens)
        assert torch.equal(part.prompts.corrupted_tokens, same.prompts.corrupted_tokens)
        assert part.texts == same.texts
    other_seed = build_corpus(IOIDataModule(model_name=TOY, seed=1), per_set=4)
    assert any(p.texts != q.texts for p, q in zip(corpus.parts, other_seed.parts))
    # Fresh prompts: not the test sets the summary already reports (seeded by the set's bare name).
    datamodule = IOIDataModule(model_name=TOY, n_test=4)
    datamodule.setup("test")
    for part in corpus.parts:
        if part.corruption == "name_swap":
            assert not torch.equal(part.prompts.clean_tokens, datamodule.splits[part.set_name].clean_tokens)


def test_bad_corpus_options_name_the_option():
    with pytest.raises(ConfigError, match="--max_activating.per_set"):
        build_corpus(TOY, per_set=0)
    with pytest.raises(ConfigError, match="--max_activating.corruptions"):
        build_corpus(TOY, per_set=2, corruptions=("shuffle",))
    with pytest.raises(ConfigError, match="Unknown or no corpus sets"):
        build_corpus(TOY, per_set=2, sets=("everything",))


QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
SMALL = ["--data.n_train", "16", "--data.n_val", "8", "--data.n_test", "4", "--data.batch_size", "8"]


def test_cli_fit_writes_the_table_and_every_row(tiny_gpt2_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["--max_activating.k", "3", "--max_activating.per_set", "2", "--trainer.max_epochs", "1"]
    train_main(["fit", "--model.model_name", str(tiny_gpt2_dir), *SMALL, *QUIET, *args])
    run_dir = tmp_path / "runs" / "ioi_superpose" / "version_0"
    out = capsys.readouterr().out
    assert "runs/ioi_superpose/version_0/max_activating.md" in out
    assert "runs/ioi_superpose/version_0/max_activating.json" in out
    saved = json.loads((run_dir / "max_activating.json").read_text())
    assert saved["n_prompts"] == len(saved["rows"]) == 2 * len(CORPUS_SETS) * len(CORRUPTIONS)
    assert {(r["set_name"], r["corruption"]) for r in saved["rows"]} == {
        (s, c) for s in CORPUS_SETS for c in CORRUPTIONS
    }
    markdown = (run_dir / "max_activating.md").read_text()
    table_rows = [line for line in markdown.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [int(line.split("|")[1]) for line in table_rows] == [1, 2, 3, 36, 35, 34]
    assert saved["corpus_seed"] == 0 and saved["direction"] == "denoising" and saved["k"] == 3
    # The notebook route (README) gives the same rows from the run's coefficients.pt: same corpus, same α.
    coefficients = torch.load(run_dir / "coefficients.pt")
    system = HeadSuperposition(model_name=coefficients["model_name"], direction=coefficients["direction"])
    system.combination.coefficients.data.copy_(coefficients["coefficients"])
    again = max_activating_examples(system.fitted(), build_corpus(coefficients["model_name"], per_set=2), k=3)
    assert [(r.set_name, r.corruption, r.index) for r in again.rows] == [
        (r["set_name"], r["corruption"], r["index"]) for r in saved["rows"]
    ]
    assert [r.move for r in again.rows] == pytest.approx([r["move"] for r in saved["rows"]], abs=1e-5)


def test_cli_bad_option_exits_with_the_option_named(tiny_gpt2_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        train_main(["fit", "--model.model_name", str(tiny_gpt2_dir), *SMALL, *QUIET, "--max_activating.k", "0"])
    assert exit_info.value.code == 1
    assert "--max_activating.k must be >= 1" in capsys.readouterr().err


def test_the_worst_recovered_table_ranks_by_the_prompts_own_recovery_not_by_move():
    """A prompt the model itself gets wrong (clean below corrupted) tops the bottom by move; the table by recovery
    shows the prompt on which the patch fails, and leaves out prompts without a gap."""
    from ioi_superpose.analyses.max_activating import Example, MaxActivating
    from ioi_superpose.results.tables import max_activating_markdown

    def example(rank, clean, corrupted, patched, recovery):
        return Example(rank=rank, set_name="in_distribution", corruption="name_swap", index=rank, template_id=0,
                       prompt=f"p{rank}", corrupted_prompt="c", io="A", s="B", clean_logit_diff=clean,
                       corrupted_logit_diff=corrupted, patched_logit_diff=patched, base_logit_diff=corrupted,
                       move=patched - corrupted, recovery=recovery)  # fmt: skip

    rows = [example(1, 10.0, -10.0, 9.0, 0.95), example(2, 10.0, -10.0, -2.0, 0.4),  # the patch fails here
            example(3, 0.1, 0.2, 0.15, None), example(4, -12.0, 3.0, -9.0, 0.8)]  # no gap; the model is wrong  # fmt: skip
    table = MaxActivating("denoising", "scalar", "toy", k=1, rows=rows, corpus_seed=0, per_set=4, skipped={})
    assert [row.prompt for row in table.bottom()] == ["p4"]  # the move ranks the model's own mistake last
    assert [row.prompt for row in table.worst_recovered()] == ["p2"]
    assert "by the prompt's own recovery" in max_activating_markdown(table) and table.to_dict()["worst_recovered_ranks"] == [2]
    noising = MaxActivating("noising", "scalar", "toy", k=1, rows=rows, corpus_seed=0, per_set=4, skipped={})
    assert [row.prompt for row in noising.worst_recovered()] == ["p1"]  # noising should drive recovery to 0

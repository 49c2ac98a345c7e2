"""Toy IOI: the word tokenizer, the shipped checkpoint, and the frozen name embeddings."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch

from ioi_superpose.data.datamodule import OFF_DISTRIBUTION_SETS, IOIDataModule, split_names
from ioi_superpose.data.ioi import _encode_prompt, default_names, generate_ioi, prompt_text
from ioi_superpose.data.templates import DUPLICATED_IO_TEMPLATES, IOI_TEMPLATES, LONG_TEMPLATES, NAMES
from ioi_superpose.models import ModelLoadError, WordTokenizer, load_frozen_model, load_tokenizer
from ioi_superpose.models.word_tokenizer import UnknownWordError
from ioi_superpose.toy.export import ExportToyIOIModel
from ioi_superpose.toy.ioi_metrics import ioi_metrics
from ioi_superpose.toy.ioi_task import ToyIOIDataModule, mirror_template
from ioi_superpose.toy.ioi_vocabulary import toy_ioi_tokenizer
from ioi_superpose.toy.name_embeddings import FrozenNameEmbeddings, name_vectors
from ioi_superpose.toy.training import ToyModelTraining
from tests.helpers import REPO as ROOT

CHECKPOINT = ROOT / "checkpoints" / "toy_ioi.pt"
ALL_TEMPLATES = IOI_TEMPLATES + LONG_TEMPLATES + DUPLICATED_IO_TEMPLATES




# --- tokenizer ------------------------------------------------------------------------------------


def test_tokenizer_words_punctuation_and_round_trip():
    tokenizer = toy_ioi_tokenizer()
    assert len(tokenizer) == len(tokenizer.vocab) and tokenizer.vocab[:2] == ["<bos>", "<pad>"]
    assert (tokenizer.bos_token_id, tokenizer.pad_token_id) == (0, 1)
    (mary,) = tokenizer.encode(" Mary")
    assert tokenizer.encode("Mary") == [mary] and tokenizer.vocab[mary] == "Mary"
    tokens = tokenizer.encode("Then, Mary and John went")
    assert [tokenizer.vocab[t] for t in tokens] == ["Then", ",", "Mary", "and", "John", "went"]
    assert tokenizer.encode("Then", add_special_tokens=True) == [0, tokenizer.encode("Then")[0]]
    for template in ALL_TEMPLATES:
        text = prompt_text(template, "Mary", "John", "restaurant", "basketball")
        assert tokenizer.decode(tokenizer.encode(text)) == text
    assert WordTokenizer.from_dict(json.loads(json.dumps(tokenizer.to_dict()))) == tokenizer
    assert default_names(tokenizer) == list(NAMES)  # every name is one token


def test_rebuilt_vocabulary_equals_the_one_stored_in_the_shipped_checkpoint():
    stored = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)["metadata"]["tokenizer"]
    assert toy_ioi_tokenizer().to_dict() == stored  # same words, same order, so the same token ids
    assert ToyIOIDataModule().tokenizer == load_tokenizer(str(CHECKPOINT))


def test_tokenizer_rejects_unknown_words():
    with pytest.raises(UnknownWordError, match="Zebedee"):
        toy_ioi_tokenizer().encode("Then, Zebedee went")
    with pytest.raises(ValueError, match="duplicate"):
        WordTokenizer(["<bos>", "<pad>", "a", "a"])


@pytest.mark.parametrize("template", ALL_TEMPLATES + tuple(mirror_template(t) for t in LONG_TEMPLATES))
def test_slotwise_tokenization_equals_whole_string(template):
    tokenizer = toy_ioi_tokenizer()
    tokens, slots = _encode_prompt(tokenizer, template, {"A": "Mary", "B": "John", "PLACE": "store", "OBJECT": "ring"})
    text = prompt_text(template, "Mary", "John", "store", "ring")
    assert tokens == tokenizer.encode(text, add_special_tokens=True)
    assert all(tokens[p] == tokenizer.encode("Mary")[0] for p in slots["A"])
    assert all(tokens[p] == tokenizer.encode("John")[0] for p in slots["B"])


# --- the shipped checkpoint -----------------------------------------------------------------------


@pytest.mark.claims  # a finding pinned from one seed's run, not a unit test
def test_shipped_checkpoint_does_ioi_on_held_out_names():
    model = load_frozen_model(str(CHECKPOINT))
    tokenizer = load_tokenizer(str(CHECKPOINT))
    assert isinstance(tokenizer, WordTokenizer) and model.cfg.d_vocab == len(tokenizer)
    assert not any(p.requires_grad for p in model.parameters())
    # The main job's rule (IOIDataModule: fraction 0.2, seed 0) gives the names the model never saw.
    held_out, train = split_names(default_names(tokenizer), 0.2, 0)
    metadata = json.loads(CHECKPOINT.with_suffix(".json").read_text())
    assert held_out == metadata["held_out_names"] and train == metadata["train_names"]
    prompts = generate_ioi(tokenizer, 512, IOI_TEMPLATES, range(len(IOI_TEMPLATES)), held_out, "abc", seed=123_457)
    metrics = ioi_metrics(model, prompts)
    assert metrics.io_over_s_accuracy >= 0.95
    assert metrics.mean_logit_diff >= 3.0


def test_ioi_datamodule_runs_on_the_toy_checkpoint():
    data = IOIDataModule(model_name=str(CHECKPOINT), n_train=32, n_val=16, n_test=16, batch_size=16)
    data.prepare_data()
    data.setup("fit")
    metadata = json.loads(CHECKPOINT.with_suffix(".json").read_text())
    assert data.held_out_names == metadata["held_out_names"]
    held_out_ids = {load_tokenizer(str(CHECKPOINT)).encode(name)[0] for name in data.held_out_names}
    assert set(data.splits["held_out_names"].answer_tokens.flatten().tolist()) <= held_out_ids
    assert not set(data.splits["train"].clean_tokens.flatten().tolist()) & held_out_ids
    batch = next(iter(data.train_dataloader()))
    assert batch.clean_tokens.max() < len(load_tokenizer(str(CHECKPOINT)))
    assert len(data.test_dataloader()) == 1 + len(OFF_DISTRIBUTION_SETS)


def test_main_job_smoke_on_the_toy_checkpoint(tmp_path, monkeypatch):
    from ioi_superpose.cli.train import main

    monkeypatch.chdir(tmp_path)
    torch.set_num_threads(2)  # the config's TorchThreads callback runs the job on 1 and restores this after
    main(
        [
            "fit",
            "--config",
            str(ROOT / "experiments" / "toy_ioi.yaml"),
            "--model.model_name",
            str(CHECKPOINT),
            "--data.n_train",
            "16",
            "--data.n_val",
            "8",
            "--data.n_test",
            "8",
            "--data.batch_size",
            "8",
            "--trainer.fast_dev_run",
            "true",
        ]
    )
    assert torch.get_num_threads() == 2


# --- loading errors -------------------------------------------------------------------------------


def test_missing_or_foreign_checkpoint_files_fail_with_the_fix(tmp_path):
    with pytest.raises(ModelLoadError, match=r"The shipped one is .*shipped_checkpoint\('toy_ioi'\)"):
        load_frozen_model(str(tmp_path / "toy_ioi.pt"))
    foreign = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(ModelLoadError, match="not a loadable toy checkpoint"):
        load_tokenizer(str(foreign))


def test_skip_trigram_checkpoint_has_no_ioi_tokenizer():
    path = ROOT / "checkpoints" / "toy_superposition_single.pt"
    assert load_frozen_model(str(path)).cfg.n_layers == 1
    with pytest.raises(ModelLoadError, match="no tokenizer"):
        load_tokenizer(str(path))


# --- training: names stay frozen; export rebuilds model and tokenizer ---------------------------------


def test_name_embeddings_stay_frozen_and_export_round_trips(tmp_path):
    data = ToyIOIDataModule(batch_size=16, train_batches=3, eval_prompts_per_group=4)
    module = ToyModelTraining(
        n_layers=2,
        n_heads=2,
        d_model=16,
        d_head=8,
        d_vocab=data.d_vocab,
        n_ctx=data.n_ctx,
        layer_norm=True,
        positional_embedding="shortformer",
        lr=0.05,
        group_names=data.group_names,
    )
    before = {name: p.detach().clone() for name, p in module.model.named_parameters()}
    path = tmp_path / "toy.pt"
    trainer = L.Trainer(
        max_steps=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[
            FrozenNameEmbeddings(seed=3, norm=1.0),
            ExportToyIOIModel(str(path), eval_size=24, ioi_prompts_per_group=8),
        ],
    )
    trainer.fit(module, datamodule=data)
    names = torch.tensor(data.name_token_ids)
    vectors = name_vectors(len(names), 16, seed=3, norm=1.0)
    model = module.model
    assert torch.equal(model.W_E[names], vectors) and torch.equal(model.W_U[:, names], vectors.T)
    assert torch.all(model.b_U[names] == 0)
    others = torch.tensor([i for i in range(data.d_vocab) if i not in set(names.tolist())])
    assert not torch.equal(model.W_E[others], before["embed.W_E"][others])  # the rest did train
    assert not torch.equal(model.blocks[0].attn.W_Q, before["blocks.0.attn.W_Q"])
    # The written file is a toy checkpoint the main job can use: model, tokenizer and IOI metrics.
    reloaded = load_frozen_model(str(path))
    assert torch.equal(reloaded.W_E, model.W_E)
    assert load_tokenizer(str(path)) == data.tokenizer
    metadata = json.loads(path.with_suffix(".json").read_text())
    assert metadata["frozen_name_embeddings"]["resample_training_names"] is True
    assert 0.0 <= metadata["metrics"]["headline"]["held_out_names_io_over_s_accuracy"] <= 1.0


def test_training_prompts_use_training_names_only():
    data = ToyIOIDataModule()
    batch = data.training_batch(256, seed=0)
    held_out = {data.tokenizer.encode(name)[0] for name in data.held_out_names}
    assert not set(batch["tokens"].flatten().tolist()) & held_out
    labelled = batch["labels"] != -100
    assert torch.equal(labelled.sum(1), torch.ones(256, dtype=torch.long))  # the IO at END only
    assert set(batch["group"].tolist()) <= {
        data.group_names.index("seen_names_ioi"),
        data.group_names.index("seen_names_long_templates"),
    }

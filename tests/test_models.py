import time

import pytest
import torch

from ioi_superpose.models import ModelLoadError, gpt2_tokenizer, load_frozen_model, load_tokenizer, shipped_checkpoint


def test_gpt2_tokenizer_offline_matches_openai_ids():
    tokenizer = gpt2_tokenizer()
    assert len(tokenizer) == 50257
    assert tokenizer.encode(" Mary") == [5335]
    assert tokenizer.encode(" John") == [1757]
    assert tokenizer.decode([5335, 1757]) == " Mary John"


def test_local_gpt2_directory_matches_hugging_face_logits(tiny_gpt2_dir):
    from transformers import GPT2LMHeadModel

    reference = GPT2LMHeadModel.from_pretrained(tiny_gpt2_dir).eval()
    model = load_frozen_model(str(tiny_gpt2_dir))
    tokens = torch.randint(0, 50257, (3, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model(tokens)
        theirs = reference(tokens).logits
    # center_unembed subtracts a per-position constant from the logits; compare centred logits.
    ours = ours - ours.mean(-1, keepdim=True)
    theirs = theirs - theirs.mean(-1, keepdim=True)
    assert (ours - theirs).abs().max() < 1e-4


def test_loaded_model_is_frozen(tiny_gpt2_dir):
    model = load_frozen_model(str(tiny_gpt2_dir))
    assert not model.training
    assert not any(parameter.requires_grad for parameter in model.parameters())


def test_missing_weights_offline_fails_fast_with_the_fix(empty_hf_cache):
    start = time.monotonic()
    with pytest.raises(ModelLoadError) as error:
        load_frozen_model("gpt2-small")
    assert time.monotonic() - start < 10
    message = str(error.value)
    assert "gpt2-small" in message and "HF_HUB_OFFLINE" in message
    assert "save_pretrained" in message and "toy_ioi.yaml" in message
    assert str(empty_hf_cache.parent) in message  # the cache it looked in


def test_unknown_model_name_suggests_known_ones():
    with pytest.raises(ModelLoadError, match="Did you mean: gpt2-small"):
        load_frozen_model("gpt2-smal")


def test_directory_without_config_is_rejected(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_frozen_model(str(tmp_path))


def test_tokenizer_for_gpt2_names_and_local_dirs(tiny_gpt2_dir):
    assert load_tokenizer("gpt2-small").encode(" Mary") == [5335]
    assert load_tokenizer(str(tiny_gpt2_dir)).encode(" Mary") == [5335]
    with pytest.raises(ModelLoadError, match="No offline tokenizer"):
        load_tokenizer("pythia-70m")


def test_a_relative_toy_path_from_another_directory_names_the_shipped_file_not_a_regeneration(tmp_path, monkeypatch):
    """Jupyter runs notebooks in experiments/, where `checkpoints/toy_ioi.pt` does not exist: the error says where the
    shipped file is (the old one said to regenerate a checkpoint that exists)."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelLoadError) as error:
        load_frozen_model("checkpoints/toy_ioi.pt")
    message = str(error.value)
    assert shipped_checkpoint("toy_ioi") in message and "shipped_checkpoint('toy_ioi')" in message
    assert "Regenerate" not in message and "train_toy" not in message
    assert load_frozen_model(shipped_checkpoint("toy_ioi")).cfg.n_layers == 2  # from any working directory
    with pytest.raises(ModelLoadError, match="No toy checkpoint at checkpoints/no_such.pt. Regenerate"):
        load_frozen_model("checkpoints/no_such.pt")  # nothing of that name ships: regenerating is the fix
    with pytest.raises(ModelLoadError, match="shipped: toy_induction, toy_ioi, toy_ioi_backups"):
        shipped_checkpoint("toy_iio")


@pytest.mark.parametrize("name", ["/path/to/hf_gpt2_dir", "./my_gpt2", "~/models/gpt2"])
def test_a_model_path_that_does_not_exist_says_no_such_directory(name):
    """It said "Unknown model" (a TransformerLens name was assumed)."""
    for load in (load_frozen_model, load_tokenizer):
        with pytest.raises(ModelLoadError, match=f"^{name}: no such directory"):
            load(name)

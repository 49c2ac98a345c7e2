"""Attention-head dropout in toy training (`--model.head_dropout`): off it changes nothing, on it zeroes
exactly the heads its seeded mask says, only in training steps."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from ioi_superpose.errors import ConfigError
from ioi_superpose.toy.batches import IGNORE_INDEX
from ioi_superpose.toy.skip_trigrams import SkipTrigramDataModule
from ioi_superpose.toy.training import ToyModelTraining, head_dropout_hooks, head_keep_mask
from tests.helpers import hooks_attached


def _module(head_dropout: float, data: SkipTrigramDataModule) -> ToyModelTraining:
    return ToyModelTraining(
        n_layers=2, n_heads=3, d_model=16, d_head=4, d_vocab=data.d_vocab, n_ctx=data.n_ctx, layer_norm=True,
        lr=0.02, head_dropout=head_dropout, model_seed=1,
    )  # fmt: skip


def _loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)


def test_zero_dropout_trains_exactly_like_a_plain_loop():
    """The reference is a hand-written AdamW loop on the plain model (no hooks, no mask drawn): the
    weights after Lightning's steps with head_dropout=0 must equal it bit for bit."""
    data = SkipTrigramDataModule(batch_size=32, train_batches=4, seed=2)
    data.setup("fit")
    module = _module(0.0, data)
    reference = copy.deepcopy(module.model)
    optimiser = torch.optim.AdamW(reference.parameters(), lr=0.02, weight_decay=1e-2, betas=(0.9, 0.98))
    for batch in data.train_dataloader():
        optimiser.zero_grad()
        _loss(reference(batch["tokens"]), batch["labels"]).backward()
        optimiser.step()
    trainer = L.Trainer(
        max_steps=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(module, data)
    for (name, trained), expected in zip(module.model.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(trained, expected), name
    assert hooks_attached(module.model) == 0


def test_keep_mask_is_seeded_per_example_and_head_at_rate_p():
    first = head_keep_mask(torch.Generator().manual_seed(5), 4000, 2, 3, 0.25)
    again = head_keep_mask(torch.Generator().manual_seed(5), 4000, 2, 3, 0.25)
    other = head_keep_mask(torch.Generator().manual_seed(6), 4000, 2, 3, 0.25)
    assert first.shape == (2, 4000, 3) and set(first.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(first, again) and not torch.equal(first, other)
    # 24,000 Bernoulli(0.25) draws: standard error 0.0028, so ±0.015 is over 5 of them.
    assert abs(float(1 - first.mean()) - 0.25) < 0.015
    # Independent per example and head: each (layer, head) column drops at the rate too, and the
    # examples differ (a per-batch mask would make every row equal).
    assert ((1 - first.mean(1)) - 0.25).abs().max() < 0.04
    assert not torch.equal(first[:, 0], first[:, 1]) or not torch.equal(first[:, 1], first[:, 2])


def test_dropped_heads_equal_zeroing_their_output_weights():
    """Hand check: zeroing head h's z removes exactly z_h W_O[h] from the layer's output, the same as a
    model whose W_O[layer, h] is 0 — run example by example, with each example's own dropped heads."""
    data = SkipTrigramDataModule(batch_size=8, train_batches=1, seed=3)
    module = _module(0.5, data)
    model = module.model
    tokens = data.evaluation_batch(8, seed=7)["tokens"]
    keep = head_keep_mask(torch.Generator().manual_seed(0), len(tokens), 2, 3, 0.5)
    assert 0 < keep.sum() < keep.numel()  # the draw drops some heads and keeps some
    with torch.no_grad(), model.hooks(fwd_hooks=head_dropout_hooks(model, keep)):
        dropped = model(tokens)
    for row in range(len(tokens)):
        ablated = copy.deepcopy(model)
        with torch.no_grad():
            for layer in range(2):
                ablated.blocks[layer].attn.W_O[keep[layer, row] == 0] = 0.0
            expected = ablated(tokens[row : row + 1])
        torch.testing.assert_close(dropped[row : row + 1], expected, rtol=1e-5, atol=1e-5)
    assert hooks_attached(model) == 0  # the context removed its hooks


def test_training_step_drops_seeded_heads_and_evaluation_drops_none():
    data = SkipTrigramDataModule(batch_size=64, train_batches=1, seed=4)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    module = _module(0.5, data)
    state = torch.random.get_rng_state()
    with pytest.warns(UserWarning, match="self.log"):  # no trainer attached: logging is skipped
        train_loss = module.training_step(batch, 0)
        again = module.training_step(batch, 0)
        val_loss = module._step(batch, "val")
    assert torch.equal(torch.random.get_rng_state(), state)  # masks come from their own generator
    # The mask of step 0 is the one `head_keep_mask` draws from the documented seed.
    keep = head_keep_mask(torch.Generator().manual_seed(2 * 1_000_003), len(batch["tokens"]), 2, 3, 0.5)
    with torch.no_grad():
        with module.model.hooks(fwd_hooks=head_dropout_hooks(module.model, keep)):
            expected = _loss(module.model(batch["tokens"]), batch["labels"])
        plain = _loss(module.model(batch["tokens"]), batch["labels"])
    assert torch.equal(train_loss.detach(), again.detach())
    torch.testing.assert_close(train_loss.detach(), expected)
    torch.testing.assert_close(val_loss, plain)
    assert abs(float(train_loss.detach() - plain)) > 1e-3  # dropping half the heads does change the loss


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_bad_head_dropout_names_the_option(p):
    with pytest.raises(ConfigError, match="head_dropout"):
        ToyModelTraining(head_dropout=p)


def test_head_dropout_layers_spares_the_other_layers():
    """`head_dropout_layers [0]`: layer 0's mask is the one every-layer dropout draws, layer 1 keeps every head."""
    data = SkipTrigramDataModule(batch_size=64, train_batches=1, seed=4)
    everywhere = _module(0.5, data)._keep_mask(64)
    module = ToyModelTraining(
        n_layers=2, n_heads=3, d_model=16, d_head=4, d_vocab=data.d_vocab, n_ctx=data.n_ctx, layer_norm=True,
        lr=0.02, head_dropout=0.5, head_dropout_layers=[0], model_seed=1,
    )  # fmt: skip
    mask = module._keep_mask(64)
    assert torch.equal(mask[0], everywhere[0]) and (mask[0] == 0).any()
    assert torch.equal(mask[1], torch.ones_like(mask[1]))
    with pytest.raises(ConfigError, match="head_dropout_layers"):
        ToyModelTraining(n_layers=2, head_dropout=0.5, head_dropout_layers=[2])

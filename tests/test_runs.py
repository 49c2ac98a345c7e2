import logging

import pytest
import torch
from transformer_lens import patching as tl_patching

from ioi_superpose import learn_combination
from ioi_superpose.combinations import HeadCombination
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.engine.metric import ContrastMetric
from ioi_superpose.engine.patch import Combination, HeadWeights
from ioi_superpose.engine.runs import BaseRun, head_z, patched_end_logits
from ioi_superpose.errors import ConfigError, cli_flag
from ioi_superpose.training.system import HeadSuperposition
from tests.helpers import hooks_attached, prompt_pairs, random_model


def last_positions(tokens):
    return torch.full((len(tokens),), tokens.shape[1] - 1)


def run_with_alpha(model, alpha, base_tokens, source_tokens, prefixes=False):
    """Full-vocabulary logits at the last position of the engine's patched run, per variant."""
    with torch.no_grad():
        source_z, _ = head_z(model, source_tokens)
        base = BaseRun.prepare(model, base_tokens, prefixes=prefixes)
        return patched_end_logits(base, source_z, HeadWeights(alpha), last_positions(base_tokens), max_rows=8)


@pytest.mark.parametrize("shape", [dict(n_layers=2, n_heads=4), dict(n_layers=3, n_heads=2, attn_only=True)])
def test_zero_alpha_is_the_base_run_and_one_is_the_source_run(shape):
    model = random_model(**shape)
    clean, corrupted, _ = prompt_pairs(model.cfg.d_vocab, length=9)
    alpha = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    with torch.no_grad():
        corrupted_logits, clean_logits = model(corrupted)[:, -1], model(clean)[:, -1]
    assert torch.allclose(run_with_alpha(model, alpha, corrupted, clean)[0], corrupted_logits, atol=1e-5)
    # α = 1: every head output is the clean one; with a shared final token the final position is clean.
    denoised = run_with_alpha(model, alpha + 1, corrupted, clean)[0]
    assert torch.allclose(denoised, clean_logits, atol=1e-4)
    noised = run_with_alpha(model, alpha + 1, clean, corrupted)[0]
    assert torch.allclose(noised, corrupted_logits, atol=1e-4)
    assert not torch.allclose(clean_logits[:, -1], corrupted_logits[:, -1], atol=1e-2)  # the check has teeth


def test_one_hot_alpha_equals_transformer_lens_single_head_patching():
    model = random_model(n_layers=2, n_heads=3)
    clean, corrupted, answers = prompt_pairs(model.cfg.d_vocab, length=7)
    metric = ContrastMetric(answers, torch.full((len(clean),), clean.shape[1] - 1))
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(clean)
        expected = tl_patching.get_act_patch_attn_head_out_all_pos(model, corrupted, clean_cache, metric)
    one_hot = HeadWeights.single_heads(model.cfg.n_layers, model.cfg.n_heads).weights
    # All heads as variants of one folded run, chunked (max_rows=8: several chunks), from the base prefix.
    logits = run_with_alpha(model, one_hot, corrupted, clean, prefixes=True)
    ours = metric.from_answer_logits(logits.gather(-1, answers[None].expand(len(logits), -1, -1))).view_as(expected)
    assert expected.abs().max() > 1e-2
    assert torch.allclose(ours, expected, atol=1e-5)


def test_variants_and_prefix_starts_equal_one_run_at_a_time():
    model = random_model(n_layers=3, n_heads=2)
    clean, corrupted, _ = prompt_pairs(model.cfg.d_vocab, length=6)
    alphas = torch.rand(5, 3, 2, generator=torch.Generator().manual_seed(0))
    alphas[1, 0] = 0.0  # starts at layer 1
    alphas[2, :2] = 0.0  # starts at layer 2
    together = run_with_alpha(model, alphas, corrupted, clean, prefixes=True)
    one_by_one = torch.cat([run_with_alpha(model, alpha, corrupted, clean) for alpha in alphas])
    assert torch.allclose(together, one_by_one, atol=1e-5)
    assert HeadWeights(alphas[2]).first_layer() == 2 and HeadWeights(torch.zeros(1, 3, 2)).first_layer() == 3


def system_for(model, **settings):
    return HeadSuperposition(model_name="test", preloaded_model=model, **settings)


def test_only_alpha_trains_and_no_hook_stays_attached():
    model = random_model()
    system = system_for(model, objective="kl")
    trainable = [name for name, parameter in system.named_parameters() if parameter.requires_grad]
    assert trainable == ["combination.coefficients"]
    assert sum(p.numel() for p in system.parameters() if p.requires_grad) == model.cfg.n_layers * model.cfg.n_heads
    batch = ContrastBatch.from_tokens(*prompt_pairs(model.cfg.d_vocab))
    system.train()
    loss = system.loss_terms(batch, system.reference(batch))["loss"]
    loss.backward()
    assert system.combination.coefficients.grad is not None
    assert system.combination.coefficients.grad.abs().sum() > 0
    assert all(parameter.grad is None for parameter in model.parameters())
    assert hooks_attached(model) == 0


class Failing(Combination):
    def forward(self, layer, z_base, z_source):
        raise RuntimeError("broken combination")


def test_hooks_are_removed_when_the_forward_fails():
    model = random_model()
    tokens = torch.zeros(3, 5, dtype=torch.long)
    source_z, _ = head_z(model, tokens)
    with pytest.raises(RuntimeError, match="broken combination"):
        patched_end_logits(BaseRun.prepare(model, tokens), source_z, Failing(), last_positions(tokens))
    assert hooks_attached(model) == 0


def test_bounded_alpha_is_projected_into_unit_interval():
    combination = HeadCombination(2, 3, bounded=True)
    combination.coefficients.data = torch.tensor([[-0.5, 0.3, 1.7], [2.0, -1.0, 0.0]])
    combination.project_()
    assert torch.equal(combination.coefficients.data, torch.tensor([[0.0, 0.3, 1.0], [1.0, 0.0, 0.0]]))
    free = HeadCombination(1, 1, bounded=False)
    free.coefficients.data.fill_(1.7)
    free.project_()
    assert free.coefficients.item() == pytest.approx(1.7)
    with pytest.raises(ConfigError, match="init"):
        HeadCombination(1, 1, bounded=True, init=2.0)


def planted_model(writing_heads: set[tuple[int, int]]):
    """An attention-only model in which only `writing_heads` write to the residual stream."""
    model = random_model(n_layers=2, n_heads=4, attn_only=True, d_vocab=40)
    with torch.no_grad():
        for layer in range(2):
            for head in range(4):
                if (layer, head) not in writing_heads:
                    model.blocks[layer].attn.W_O[head].zero_()
    return model


def test_kl_objective_finds_the_heads_that_write_the_answer():
    planted = {(1, 0), (1, 3)}
    model = planted_model(planted)
    clean, corrupted, answers = prompt_pairs(40, batch=16, length=7)
    result = learn_combination(model, clean, corrupted, answers, objective="kl", l1=1e-2, steps=150, lr=0.05)
    found = {(layer, head) for layer, head in zip(*torch.nonzero(result.coefficients > 0.5, as_tuple=True))}
    found = {(int(layer), int(head)) for layer, head in found}
    assert found == planted
    assert result.l0 == 2
    assert result.recovery == pytest.approx(1.0, abs=0.05)


def test_learn_combination_is_reproducible_and_validates_input():
    model = random_model()
    clean, corrupted, answers = prompt_pairs(model.cfg.d_vocab)
    first = learn_combination(model, clean, corrupted, answers, steps=5, seed=1)
    second = learn_combination(model, clean, corrupted, answers, steps=5, seed=1)
    assert torch.equal(first.coefficients, second.coefficients)
    with pytest.raises(ConfigError, match="same shape"):
        learn_combination(model, clean, corrupted[:, :-1], answers, steps=1)
    # The API names its own arguments, not the CLI's flags.
    with pytest.raises(ConfigError, match="^l1 must be >= 0") as error:
        learn_combination(model, clean, corrupted, answers, steps=1, l1=-1.0)
    assert "--model" not in str(error.value)
    with pytest.raises(ConfigError, match="^lr must be > 0") as error:
        learn_combination(model, clean, corrupted, answers, steps=1, lr=0.0)
    assert "--model" not in str(error.value)


def train_manually(system, batches, steps):
    optimizer = torch.optim.Adam(system.combination.parameters(), lr=0.05)
    for step in range(steps):
        batch = batches[step % len(batches)]
        system.loss_terms(batch, system.reference(batch, cached_rows=True))["loss"].backward()
        optimizer.step()
        optimizer.zero_grad()
        system.combination.project_()
    return system.combination.coefficients.detach().clone()


def test_cached_source_activations_train_exactly_like_recomputed_ones():
    model = random_model()
    prompts = ContrastBatch.from_tokens(*prompt_pairs(model.cfg.d_vocab, batch=8, length=7))
    batches = [prompts[:4], prompts[4:]]
    cached = train_manually(system_for(model, cache_source_activations=True, l1=0.05), batches, steps=6)
    recomputed = train_manually(system_for(model, cache_source_activations=False, l1=0.05), batches, steps=6)
    assert not torch.equal(cached, torch.ones_like(cached))  # training moved α
    assert torch.allclose(cached, recomputed, atol=1e-6)


def test_evaluating_other_prompts_never_touches_the_training_cache():
    model = random_model()
    system = system_for(model)
    train_rows = ContrastBatch.from_tokens(*prompt_pairs(model.cfg.d_vocab, batch=4, seed=0))
    other_rows = ContrastBatch.from_tokens(*prompt_pairs(model.cfg.d_vocab, batch=4, seed=1))  # same indices 0..3
    cached = system.reference(train_rows, cached_rows=True).source_z
    system.recovery_of(other_rows, torch.ones(model.cfg.n_layers, model.cfg.n_heads))
    system.reference(other_rows)
    assert torch.equal(system.reference(train_rows, cached_rows=True).source_z, cached)
    assert not torch.allclose(system.reference(other_rows).source_z, cached)


def fit_once(system, prompts, steps=1):
    import lightning as L

    from ioi_superpose.data.batch import PromptDataset, collate

    loader = torch.utils.data.DataLoader(PromptDataset(prompts), batch_size=len(prompts), collate_fn=collate)
    trainer = L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(system, train_dataloaders=loader)


def test_a_second_fit_on_other_prompts_never_serves_the_first_fits_cache():
    model = random_model()
    system = system_for(model)
    first = ContrastBatch.from_tokens(*prompt_pairs(model.cfg.d_vocab, batch=4, seed=0))
    second = ContrastBatch.from_tokens(*prompt_pairs(model.cfg.d_vocab, batch=4, seed=1))  # same row indices 0..3
    fit_once(system, first)
    fit_once(system, second)
    served = system.reference(second, cached_rows=True).source_z
    fresh, _ = head_z(model, second.clean_tokens)
    assert torch.allclose(served, fresh, atol=1e-5)  # fast runner vs TransformerLens hooks: equal to float error


def test_validation_loss_uses_the_same_warmed_up_l1_weight_as_training():
    model = random_model()
    system = system_for(model, l1=1.0, l1_warmup_steps=100)  # step 0: λ = 0
    batch = ContrastBatch.from_tokens(*prompt_pairs(model.cfg.d_vocab))
    system.validation_step(batch, 0)
    objective = system.loss_terms(batch, system.reference(batch))["objective"]
    assert system.l1_weight() == 0.0
    assert float(system.val_metrics["loss"].compute()) == pytest.approx(float(objective), abs=1e-6)
    assert system.combination.penalty() > 1  # with the full λ the loss would differ by more than 1


def test_out_of_vocabulary_token_ids_are_a_clear_error():
    model = random_model()
    clean, corrupted, answers = prompt_pairs(model.cfg.d_vocab)
    clean[0, 0] = model.cfg.d_vocab
    with pytest.raises(ConfigError, match="clean_tokens holds token ids .* outside the model's vocabulary"):
        learn_combination(model, clean, corrupted, answers, steps=1)


def test_noising_and_maximize_train_through_the_lightning_module_within_bounds():
    planted = {(1, 0), (1, 3)}
    model = planted_model(planted)
    clean, corrupted, answers = prompt_pairs(40, batch=16, length=7)
    noising = learn_combination(model, clean, corrupted, answers, direction="noising", l1=1e-2, steps=150)
    # Noising keeps heads whose corruption destroys the behaviour: only planted heads can.
    kept = {tuple(map(int, h)) for h in torch.nonzero(noising.coefficients > 0.05)}
    assert kept and kept <= planted
    assert noising.recovery == pytest.approx(0.0, abs=0.1)  # the clean run brought down to the corrupted one
    maximized = learn_combination(model, clean, corrupted, answers, objective="maximize", l1=0.0, steps=100)
    fitted = learn_combination(model, clean, corrupted, answers, objective="logit_diff", l1=0.0, steps=100)
    for result in (noising, maximized, fitted):
        assert result.coefficients.min() >= 0.0 and result.coefficients.max() <= 1.0
    assert maximized.recovery >= fitted.recovery - 1e-4


def padded_prompts(d_vocab, batch, seed):
    """Right-padded contrast prompts of varied lengths (END before the padding)."""
    generator = torch.Generator().manual_seed(seed)
    clean, corrupted, answers = prompt_pairs(d_vocab, batch=batch, length=9, seed=seed)
    ends = torch.randint(3, 9, (batch,), generator=generator)
    rows = torch.arange(batch)
    corrupted[rows, ends] = clean[rows, ends]
    return ContrastBatch(clean, corrupted, answers, ends, rows)


def test_cached_training_equals_recomputed_on_reshuffled_batches_of_different_lengths():
    model = random_model()
    prompts = padded_prompts(model.cfg.d_vocab, batch=12, seed=3)
    generator = torch.Generator().manual_seed(0)
    # Each step a fresh shuffle into batches of 4, trimmed to their own longest prompt.
    batches = [prompts[order].trimmed() for _ in range(3) for order in torch.randperm(12, generator=generator).split(4)]
    assert len({batch.clean_tokens.shape[1] for batch in batches}) > 1
    cached = train_manually(system_for(model, cache_source_activations=True, l1=0.05), batches, steps=9)
    recomputed = train_manually(system_for(model, cache_source_activations=False, l1=0.05), batches, steps=9)
    assert not torch.equal(cached, torch.ones_like(cached))
    assert torch.allclose(cached, recomputed, atol=1e-6)


def test_the_frozen_model_follows_every_move_of_the_module():
    model = random_model()
    system = system_for(model)
    system.to("meta")  # any device: Lightning's strategy, `.to`, the CPU move that ends a Trainer stage
    assert model.W_E.device.type == "meta" and str(model.cfg.device) == "meta"
    assert system.combination.coefficients.device.type == "meta"


def test_loading_a_checkpoint_made_for_another_model_is_refused_naming_both():
    checkpoint = {}
    system_for(random_model(n_heads=4)).on_save_checkpoint(checkpoint)
    with pytest.raises(ConfigError, match=r"'n_heads': 4.*'n_heads': 2"):
        system_for(random_model(n_heads=2)).on_load_checkpoint(checkpoint)


def test_a_bfloat16_cache_halves_its_memory_and_trains_close_to_float32():
    model = random_model()
    prompts = ContrastBatch.from_tokens(*prompt_pairs(model.cfg.d_vocab, batch=8, length=7))
    batches = [prompts[:4], prompts[4:]]
    full, half = system_for(model, l1=0.05), system_for(model, l1=0.05, cache_dtype="bfloat16", cache_device="cpu")
    expected, trained = train_manually(full, batches, steps=6), train_manually(half, batches, steps=6)
    row = half.reference_cache.rows[0].source_z
    assert row.dtype == torch.bfloat16 and row.device.type == "cpu"
    assert half.reference_cache.z_bytes * 2 == full.reference_cache.z_bytes == 8 * 2 * 7 * 4 * 8 * 4
    assert not torch.equal(expected, torch.ones_like(expected))
    assert torch.allclose(trained, expected, atol=2e-2)


def test_a_cache_cap_recomputes_the_rows_beyond_it_and_trains_exactly_like_no_cache():
    model = random_model()
    prompts = ContrastBatch.from_tokens(*prompt_pairs(model.cfg.d_vocab, batch=8, length=7))
    batches = [prompts[:4], prompts[4:]]
    row_mb = 2 * 7 * 4 * 8 * 4 / 2**20  # layers × positions × heads × d_head × 4 bytes
    capped = system_for(model, l1=0.05, cache_max_mb=4.5 * row_mb)  # the first batch's 4 rows fit, no more
    uncached = system_for(model, l1=0.05, cache_source_activations=False)
    alpha = train_manually(capped, batches, steps=6)
    assert torch.allclose(alpha, train_manually(uncached, batches, steps=6), atol=1e-6)
    cache = capped.reference_cache
    assert cache.rows_over_cap == 4 and cache.z_bytes == 4 * row_mb * 2**20
    assert capped.reference(batches[1], cached_rows=True) is not None  # recomputed, not served
    assert cache.get(batches[1], "denoising") is None and cache.get(batches[0], "denoising") is not None
    assert "--model.cache_max_mb" in cache.describe() and "4 prompts are not cached" in cache.describe()


def test_a_fit_logs_the_cache_size_once_with_its_options(caplog):
    """On the `ioi_superpose` logger, which the entry points print (console.quiet_console) and an API call does not."""
    model = random_model()
    system = system_for(model, cache_max_mb=0.0)
    with caplog.at_level(logging.INFO, logger="ioi_superpose"):
        fit_once(system, ContrastBatch.from_tokens(*prompt_pairs(model.cfg.d_vocab, batch=4, seed=0)), steps=3)
    output = caplog.text
    assert output.count("Reference cache: 0.0 MB") == 1
    assert "--model.cache_dtype float32, --model.cache_device same" in output
    assert "--model.cache_max_mb 0 reached: 4 prompts are not cached" in output


@pytest.mark.parametrize(
    "setting, name",
    [
        ({"cache_dtype": "int8"}, "cache_dtype"),
        ({"cache_device": "gpu"}, "cache_device"),
        ({"cache_max_mb": -1.0}, "cache_max_mb"),
    ],
)
def test_bad_cache_options_name_the_argument_and_the_flag(setting, name):
    with pytest.raises(ConfigError, match=f"^{name} must be") as error:
        system_for(random_model(), **setting)
    assert str(error.value.named(cli_flag)).startswith(f"--model.{name} must be")  # as the CLIs print it


@pytest.mark.parametrize("objective", ["logit_diff", "maximize", "kl"])
def test_summed_statistics_of_two_halves_give_the_whole_batchs_objective(objective):
    """What DDP's all-reduce relies on: the statistics of two ranks' halves add up to the whole batch's."""
    model = random_model()
    system = system_for(model, objective=objective)
    system.combination.coefficients.data = torch.rand(
        system.combination.coefficients.shape, generator=torch.Generator().manual_seed(0)
    )  # not α = 1: effect 1 on any batch
    prompts = ContrastBatch.from_tokens(*prompt_pairs(model.cfg.d_vocab, batch=8, length=7))
    terms = [system.loss_terms(half, system.reference(half)) for half in (prompts[:3], prompts[3:])]
    whole = system.loss_terms(prompts, system.reference(prompts))["objective"]
    summed = system.objective.from_statistics(terms[0]["statistics"] + terms[1]["statistics"])
    assert float(summed) == pytest.approx(float(whole), abs=1e-5)
    mean_of_halves = (terms[0]["objective"] + terms[1]["objective"]) / 2
    assert objective == "kl" or abs(float(mean_of_halves) - float(whole)) > 1e-4  # what DDP averaged before

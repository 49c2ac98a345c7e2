"""Causal scrubbing (`ioi_superpose.analyses.scrubbing`): the scrubbed forward against hand-set TransformerLens hooks,
the sampling rule, known answers on the planted models of `groundtruth/planted_scrub.py` (a true hypothesis gives 1;
dropping or mistaking the feature a planted head reads gives the value worked by hand), the treeified recursion and
its cap, and the refusals."""

from __future__ import annotations

import pytest
import torch

from ioi_superpose.analyses.post_fit import after_fit
from ioi_superpose.analyses.scrubbing import EquivalenceClasses, Hypothesis, ScrubTree, scrub, scrub_fitted
from ioi_superpose.analyses.scrubbing.forward import ScrubRunner
from ioi_superpose.analyses.scrubbing.sampling import other_prompt, tree_forwards
from ioi_superpose.analyses.scrubbing.score import scrubbed_metric
from ioi_superpose.combinations.scalar import ScalarCombination
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.engine.ablations import aligned_z
from ioi_superpose.engine.vocabulary import hook_name
from ioi_superpose.errors import ConfigError
from ioi_superpose.fitting.fitted import FittedCombination
from ioi_superpose.fitting.settings import SuperpositionConfig
from ioi_superpose.groundtruth.planted_scrub import TOKENS, additive, composition
from ioi_superpose.tasks.base import TaskPrompts
from tests.helpers import hooks_attached, random_model

A, B = (0, 0), (0, 1)  # the additive model's heads reading a and b


def random_prompts(model, n: int = 6, length: int = 7, seed: int = 0) -> TaskPrompts:
    """Random equal-length prompts with a two-valued feature `f` (three prompts each) and a feature `g`."""
    generator = torch.Generator().manual_seed(seed)
    clean = torch.randint(model.cfg.d_vocab, (n, length), generator=generator)
    answers = torch.randint(model.cfg.d_vocab, (n, 2), generator=generator)
    return TaskPrompts(batch=ContrastBatch.from_tokens(clean, clean.clone(), answers),
                       features={"f": [i % 2 for i in range(n)], "g": [i % 3 for i in range(n)]})  # fmt: skip


def draw(hypothesis, prompts, model, draws=3, seed=0, treeified=False, **kwargs) -> ScrubTree:
    generator = torch.Generator().manual_seed(seed)
    return ScrubTree.draw(hypothesis, prompts.features, model.cfg.n_layers, model.cfg.n_heads, draws, generator,
                          treeified=treeified, **kwargs)  # fmt: skip


# --------------------------------------------------------------------------------------------------
# The forward, against hand-set TransformerLens hooks


def test_flat_scrub_equals_hand_set_hooks():
    """Every head of every layer takes its drawn source's z (from that prompt's own unpatched run), at every
    position: the engine's END logits equal `run_with_hooks` with hooks that write exactly that, row by row."""
    model = random_model(n_layers=2, n_heads=4, attn_only=False)
    prompts = random_prompts(model)
    tree = draw(Hypothesis({(0, 1): ("f",), (1, 2): ("g",)}), prompts, model)
    runner = ScrubRunner.prepare(model, prompts.batch.clean_tokens, prompts.batch.end_pos)
    engine = runner.end_logits(tree, slice(None))  # [draws, n, vocab]
    tokens = prompts.batch.clean_tokens
    _, cache = model.run_with_cache(tokens)
    sources = tree.nodes[0].sources  # [draws, n, layer, head]
    for draw_index in range(sources.shape[0]):

        def hook(z, hook, draw_index=draw_index):
            layer = int(hook.name.split(".")[1])
            for row in range(z.shape[0]):
                for head in range(z.shape[2]):
                    z[row, :, head] = cache[hook.name][sources[draw_index, row, layer, head], :, head]
            return z

        hooks = [(hook_name("z", layer), hook) for layer in range(2)]
        expected = model.run_with_hooks(tokens, fwd_hooks=hooks)[:, -1]
        torch.testing.assert_close(engine[draw_index], expected, atol=1e-4, rtol=1e-4)
    assert hooks_attached(model) == 0


def test_treeified_scrub_equals_hand_set_hooks():
    """A layer-1 head of the hypothesis runs on its source prompt with layer 0 drawn again relative to that prompt;
    the root reads its z from there. Recomputed with `run_with_hooks` on the node's prompts, then on the prompts."""
    model = random_model(n_layers=2, n_heads=2, attn_only=False)
    prompts = random_prompts(model)
    head = (1, 0)
    tree = draw(Hypothesis({head: ("f",), (0, 1): ("g",)}), prompts, model, draws=2, treeified=True)
    assert [node.head for node in tree.nodes] == [None, head]
    root, node = tree.nodes
    runner = ScrubRunner.prepare(model, prompts.batch.clean_tokens, prompts.batch.end_pos)
    engine = runner.end_logits(tree, slice(None))
    tokens = prompts.batch.clean_tokens
    _, cache = model.run_with_cache(tokens)
    z0 = cache[hook_name("z", 0)]

    def layer0_from(sources):
        def hook(z, hook):
            for row in range(z.shape[0]):
                for h in range(z.shape[2]):
                    z[row, :, h] = z0[sources[row, h], :, h]
            return z

        return hook

    for d in range(2):
        # The node: the head's z on its prompt (root's source for it), layer 0 from the node's own draws.
        captured = {}
        node_hooks = [(hook_name("z", 0), layer0_from(node.sources[d, :, 0])),
                      (hook_name("z", 1), lambda z, hook: captured.setdefault("z", z.clone()))]  # fmt: skip
        model.run_with_hooks(tokens[node.context[d]], fwd_hooks=node_hooks)
        node_z = captured["z"][:, :, head[1]]
        z1 = cache[hook_name("z", 1)]

        def layer1(z, hook, d=d):
            for row in range(z.shape[0]):
                for h in range(z.shape[2]):
                    z[row, :, h] = node_z[row] if (1, h) == head else z1[root.sources[d, row, 1, h], :, h]
            return z

        hooks = [(hook_name("z", 0), layer0_from(root.sources[d, :, 0])), (hook_name("z", 1), layer1)]
        torch.testing.assert_close(engine[d], model.run_with_hooks(tokens, fwd_hooks=hooks)[:, -1], atol=1e-4,
                                   rtol=1e-4)  # fmt: skip


def test_aligned_z_reads_the_source_at_end():
    """Prompts of different lengths align at END: position p of a row reads p − END_row + END_source, clamped."""
    pool = torch.arange(2 * 4, dtype=torch.float32).view(2, 4, 1, 1)  # prompt 0: 0..3, prompt 1: 4..7
    out = aligned_z(pool, torch.tensor([[1], [0]]), pool_end=torch.tensor([1, 3]), row_end=torch.tensor([1, 3]))
    # Row 0 (END 1) from prompt 1 (END 3): positions 0..3 read 2, 3, 3, 3. Row 1 (END 3) from prompt 0 (END 1):
    # positions read −2, −1, 0, 1 → clamped 0, 0, 0, 1.
    assert out[0, :, 0, 0].tolist() == [6.0, 7.0, 7.0, 7.0]
    assert out[1, :, 0, 0].tolist() == [0.0, 0.0, 0.0, 1.0]


def test_every_head_from_itself_is_the_unpatched_model():
    model = random_model(n_layers=2, n_heads=4)
    prompts = random_prompts(model)
    tree = draw(Hypothesis(), prompts, model, draws=1)
    tree.nodes[0].sources = torch.arange(len(prompts))[None, :, None, None].expand(1, -1, 2, 4)
    runner = ScrubRunner.prepare(model, prompts.batch.clean_tokens, prompts.batch.end_pos)
    torch.testing.assert_close(runner.end_logits(tree, slice(None))[0], model(prompts.batch.clean_tokens)[:, -1],
                               atol=1e-4, rtol=1e-4)  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Sampling


def test_class_draws_are_uniform_within_the_class_and_a_singleton_is_itself():
    features = {"f": ["x", "x", "y", "x", "z"]}
    classes = EquivalenceClasses(features, ["f"])
    context = torch.tensor([0, 2, 4]).repeat(60000)
    picked = classes.sample(context, torch.rand(len(context), generator=torch.Generator().manual_seed(0)))
    from_0 = picked[context == 0]
    assert set(from_0.tolist()) == {0, 1, 3}  # x's class, the prompt itself included
    counts = torch.bincount(from_0, minlength=5)[[0, 1, 3]].float() / len(from_0)
    assert torch.allclose(counts, torch.full((3,), 1 / 3), atol=0.01)  # 5 standard errors
    assert set(picked[context == 2].tolist()) == {2} and set(picked[context == 4].tolist()) == {4}
    assert classes.singleton_share() == pytest.approx(2 / 5)


def test_other_prompt_is_never_the_prompt_and_uniform():
    context = torch.arange(4).repeat(4000)
    picked = other_prompt(context, torch.rand(len(context), generator=torch.Generator().manual_seed(1)), 4)
    assert not (picked == context).any()
    counts = torch.bincount(picked[context == 2], minlength=4).float() / 4000
    assert counts[2] == 0 and torch.allclose(counts[[0, 1, 3]], torch.full((3,), 1 / 3), atol=0.03)


def test_the_flat_and_treeified_scrubs_share_the_root_draws():
    model = random_model(n_layers=2, n_heads=2)
    prompts = random_prompts(model)
    hypothesis = Hypothesis({(0, 0): ("f",), (1, 1): ("g",)})
    flat, tree = draw(hypothesis, prompts, model, seed=3), draw(hypothesis, prompts, model, seed=3, treeified=True)
    assert torch.equal(flat.nodes[0].sources, tree.nodes[0].sources)
    assert len(flat.nodes) == 1 and len(tree.nodes) == 2


# --------------------------------------------------------------------------------------------------
# Known answers: the planted models


def test_a_true_hypothesis_recovers_exactly_one():
    for case, hypothesis in ((additive(), {A: ("a",), B: ("b",)}),
                             (composition(), {(0, 0): ("a",), (0, 1): ("b",), (1, 0): ("a",), (1, 1): ("b",)})):  # fmt: skip
        scores = scrub(case.model, Hypothesis(hypothesis), case.prompts(), versions=("flat", "treeified"), draws=4)
        for score in scores.values():
            assert score.fraction == pytest.approx(1.0, abs=1e-5), (case.name, score.version)
            assert score.scrubbed == pytest.approx(score.clean, abs=1e-4)
            assert score.clean == pytest.approx(4.0, abs=1e-4)  # w0 + w1 = 3 + 1


def test_each_draw_gives_the_hand_computed_logit_difference():
    """Dropping 0.1 (it reads b): per (draw, prompt), 0.0 adds 3·([a' = a] − [a' = b]) and 0.1 adds
    −1·([b' = a] − [b' = b]), a' and b' the names its drawn source holds in those positions."""
    case = additive()
    prompts = case.prompts()
    tree = draw(Hypothesis({A: ("a",)}), prompts, case.model, draws=5)
    runner = ScrubRunner.prepare(case.model, prompts.batch.clean_tokens, prompts.batch.end_pos)
    measured = scrubbed_metric(runner, tree, prompts.batch, "logit_diff")
    a, b = prompts.features["a"], prompts.features["b"]
    sources = tree.nodes[0].sources
    for d in range(5):
        for row in range(len(prompts)):
            src_a, src_b = int(sources[d, row, 0, 0]), int(sources[d, row, 0, 1])
            assert a[src_a] == a[row]  # 0.0 drawn within a's class
            assert src_b != row  # 0.1 resampled from another prompt
            hand = 3 * ((a[src_a] == a[row]) - (a[src_a] == b[row])) - 1 * ((b[src_b] == a[row]) - (b[src_b] == b[row]))
            assert float(measured[d, row]) == pytest.approx(hand, abs=1e-4)


@pytest.mark.parametrize(
    ("claims", "hand"),
    [
        ({A: ("a",)}, 3 / 4),  # 0.1 dropped: w0 / (w0 + w1)
        ({A: ("a",), B: ("c",)}, 73 / 96),  # 0.1 said to read c: (24 w0 + w1) / (24 (w0 + w1))
        ({A: ("b",), B: ("b",)}, 50 / 96),  # 0.0 said to read b: a' = a with probability 2/6 in b's class
        ({}, 0.0),
    ],
)
def test_a_wrong_or_missing_feature_gives_the_hand_computed_fraction(claims, hand):
    """The planted construction's expectation (`PlantedScrub.expected`, no model run) is the value worked by hand in
    `groundtruth/planted_scrub.py`; the scrub's estimate (400 draws of 24 prompts) lies within 0.015 of it and its
    95 % interval covers it."""
    case = additive()
    assert case.expected(claims, "flat") == pytest.approx(hand, abs=1e-12)
    score = scrub(case.model, Hypothesis(claims), case.prompts(), draws=400, seed=0)["flat"] if claims else None
    if score is not None:
        assert score.fraction == pytest.approx(hand, abs=0.015)
        assert score.interval[0] <= hand <= score.interval[1]


def test_treeified_follows_the_paths_and_the_flat_scrub_does_not():
    """The composition model's names reach the logits only along 0.0 → 1.0 and 0.1 → 1.1. Claiming layer 1 alone reads
    the names is true of layer 1's outputs (flat: 1) but not of the paths (treeified: 0, as fully resampled); a wrong
    feature at layer 0 is invisible to the flat scrub and gives (w + 24 w') / (24 (w + w')) = 27/96 treeified."""
    case = composition()
    prompts = case.prompts()
    layer1 = {(1, 0): ("a",), (1, 1): ("b",)}
    wrong_layer0 = {(0, 0): ("c",), (0, 1): ("b",), **layer1}
    for claims, flat_hand, tree_hand in ((layer1, 1.0, 0.0), (wrong_layer0, 1.0, 27 / 96)):
        assert case.expected(claims, "flat") == pytest.approx(flat_hand, abs=1e-12)
        assert case.expected(claims, "treeified") == pytest.approx(tree_hand, abs=1e-12)
        scores = scrub(case.model, Hypothesis(claims), prompts, versions=("flat", "treeified"), draws=300, seed=1)
        assert scores["flat"].fraction == pytest.approx(flat_hand, abs=1e-5)
        assert scores["treeified"].fraction == pytest.approx(tree_hand, abs=0.03)
        assert scores["treeified"].interval[0] <= tree_hand <= scores["treeified"].interval[1]
        assert scores["treeified"].forwards == 3  # the root and the two layer-1 nodes


def test_layer0_hypotheses_and_one_layer_models_score_the_same_in_both_versions():
    for case, claims in ((additive(), {A: ("a",)}), (composition(), {(0, 0): ("a",), (0, 1): ("c",)})):
        scores = scrub(case.model, Hypothesis(claims), case.prompts(), versions=("flat", "treeified"), draws=8)
        assert scores["flat"].fraction == scores["treeified"].fraction
        assert scores["treeified"].forwards == 1


def test_prob_diff_metric():
    case = additive()
    score = scrub(case.model, Hypothesis({A: ("a",), B: ("b",)}), case.prompts(), metric="prob_diff", draws=4)["flat"]
    assert score.metric == "prob_diff" and score.fraction == pytest.approx(1.0, abs=1e-5)
    assert 0 < score.clean <= 1


def test_a_seed_fixes_the_result():
    case = additive()
    hypothesis = Hypothesis({A: ("a",)})
    first, again, other = (scrub(case.model, hypothesis, case.prompts(), draws=6, seed=s)["flat"] for s in (0, 0, 1))
    assert first == again
    assert first.fraction != other.fraction


def test_singleton_classes_are_reported():
    case = additive()
    score = scrub(case.model, Hypothesis({A: ("a", "b", "c")}), case.prompts(), draws=4)["flat"]
    assert score.singleton_share == {"0.0": 1.0} and score.mean_class_size == {"0.0": 1.0}
    assert scrub(case.model, Hypothesis({A: ("a",)}), case.prompts(), draws=4)["flat"].mean_class_size == {"0.0": 6.0}


# --------------------------------------------------------------------------------------------------
# The treeified cap and refusals


def test_the_tree_size_is_counted_before_anything_runs_and_refused_above_the_cap():
    model = random_model(n_layers=3, n_heads=2)
    prompts = random_prompts(model)
    claims = {(0, 0): ("f",), (1, 0): ("f",), (1, 1): ("g",), (2, 0): ("f",), (2, 1): ("g",)}
    hypothesis = Hypothesis(claims)
    # Layer-1 nodes: 1 forward each; layer-2 nodes: 1 + both layer-1 nodes = 3 each; + the root.
    assert tree_forwards(hypothesis, treeified=True) == 1 + 2 * 1 + 2 * 3 == 9
    assert len(draw(hypothesis, prompts, model, treeified=True).nodes) == 9
    with pytest.raises(ConfigError, match=r"needs 9 forward passes .* more than max_forwards=8.*flat scrub"):
        scrub(model, hypothesis, prompts, versions=("treeified",), max_forwards=8)


def test_refusals():
    case = additive()
    prompts = case.prompts()
    with pytest.raises(
        ConfigError, match=r"\['order'\] is not a feature of task 'planted'; its features are \['a', 'b', 'c'\]"
    ):
        scrub(case.model, Hypothesis({A: ("order",)}), prompts, task="planted")
    with pytest.raises(ConfigError, match="head 1.0 is outside this model"):
        scrub(case.model, Hypothesis({(1, 0): ("a",)}), prompts)
    with pytest.raises(ConfigError, match="draws must be an integer >= 2"):
        scrub(case.model, Hypothesis({A: ("a",)}), prompts, draws=1)
    with pytest.raises(ConfigError, match="versions must be"):
        scrub(case.model, Hypothesis({A: ("a",)}), prompts, versions=("paths",))
    with pytest.raises(ConfigError, match="at least 2 prompts"):
        scrub(case.model, Hypothesis({A: ("a",)}), prompts[[0]])
    same = prompts[[0, 0, 0]]  # three copies of one prompt: resampling changes nothing
    with pytest.raises(ConfigError, match="nothing for a hypothesis to explain"):
        scrub(case.model, Hypothesis({A: ("a",)}), same)
    with pytest.raises(ConfigError, match="head 0.1 has no features"):
        Hypothesis({B: ()})
    with pytest.raises(ConfigError, match=r"lists the feature\(s\) \['a'\] more than once"):
        Hypothesis({B: ("a", "a")})
    with pytest.raises(ConfigError, match="is not a head"):
        Hypothesis({0: ("a",)})


def test_planted_prompts_hold_every_combination_once():
    prompts = additive().prompts()
    rows = set(zip(*(prompts.features[f] for f in ("a", "b", "c"))))
    assert len(prompts) == len(rows) == 24 and all(a != b for a, b, _ in rows)
    assert prompts.batch.answer_tokens[0].tolist() == [
        TOKENS[prompts.features["a"][0]],
        TOKENS[prompts.features["b"][0]],
    ]


def test_the_ioi_datamodule_exposes_the_ioi_tasks_features():
    """One extractor (`data.ioi.ioi_features`): the datamodule's features of a split equal the `ioi` task's for the same
    prompts (same settings and seed: same prompts)."""
    from ioi_superpose.data.datamodule import IOIDataModule
    from ioi_superpose.data.name_split import checkpoint_name_split
    from ioi_superpose.models import load_tokenizer
    from ioi_superpose.tasks.ioi import IOITask
    from tests.helpers import TOY_IOI

    datamodule = IOIDataModule(TOY_IOI, n_train=8, n_val=12, n_test=4, off_distribution=())
    with pytest.raises(ConfigError, match="call setup"):
        datamodule.features("val")
    datamodule.setup("fit")
    task = IOITask(name_split=checkpoint_name_split(TOY_IOI, 0.2)).prompts(load_tokenizer(TOY_IOI), "val", 12, 0)
    assert torch.equal(task.batch.clean_tokens, datamodule.splits["val"].clean_tokens)
    assert datamodule.features("val") == task.features
    assert set(task.features) == {"io", "s", "template_id", "order"}


# --------------------------------------------------------------------------------------------------
# A fitted combination's head set (`scrub_fitted`, and `after_fit` with `scrub`)


def fitted_on(case, heads) -> FittedCombination:
    """`case`'s model with a scalar combination whose weight is 1 on `heads` and 0 elsewhere."""
    cfg = case.model.cfg
    combination = ScalarCombination(cfg.n_layers, cfg.n_heads, init=0.0)
    with torch.no_grad():
        for head in heads:
            combination.coefficients[head] = 1.0
    return FittedCombination(case.model, combination, SuperpositionConfig.from_settings(model_name="planted"))


def test_a_fitted_combinations_head_set_is_scrubbed_under_a_hypothesis():
    case = additive()
    prompts = case.prompts()
    fitted = fitted_on(case, [A, B])
    claims = {A: ("a",), B: ("b",), (0, 2): ("c",)}  # a head the fit did not keep is not scored
    record = scrub_fitted(fitted, Hypothesis(claims), {"all": prompts}, draws=4)
    assert record["file"] is None and record["heads"] == [[0, 0], [0, 1]]
    assert record["hypothesis"] == {"0.0": ["a"], "0.1": ["b"]}
    direct = scrub(case.model, Hypothesis({A: ("a",), B: ("b",)}), prompts, versions=("flat", "treeified"), draws=4)
    assert record["sets"]["all"] == {version: score.to_dict() for version, score in direct.items()}
    assert record["sets"]["all"]["flat"]["fraction"] == pytest.approx(case.expected({A: ("a",), B: ("b",)}, "flat"))
    missing = scrub_fitted(fitted, Hypothesis({A: ("a",)}), {"all": prompts}, draws=4)
    assert "gives no features for the learned head(s) ['0.1']" in missing["error"] and "sets" not in missing


def test_after_fit_scrubs_the_learned_set_when_the_settings_ask(tmp_path):
    case = additive()
    prompts = case.prompts()
    path = tmp_path / "hypothesis.yaml"
    path.write_text("heads:\n  0.*: [a]\n")
    fitted = fitted_on(case, [A])
    scrubbing = FittedCombination(fitted.model, fitted.combination,
                                  SuperpositionConfig.from_settings(model_name="planted", scrub=str(path)))  # fmt: skip
    after = after_fit(scrubbing, prompts.batch, batch_size=len(prompts), scrub_sets={"all": prompts}, task="planted")
    assert after.scrub["file"] == str(path) and after.scrub["hypothesis"] == {"0.0": ["a"]}
    expected = case.expected({A: ("a",)}, "flat")
    assert after.scrub["sets"]["all"]["flat"]["fraction"] == pytest.approx(expected, abs=0.1)
    assert "no prompt features were given" in after_fit(scrubbing, prompts.batch, len(prompts)).scrub["error"]
    assert after_fit(fitted, prompts.batch, len(prompts)).scrub is None

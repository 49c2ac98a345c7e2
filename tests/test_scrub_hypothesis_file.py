"""Hypothesis files (`analyses.scrubbing.hypothesis`): the documented format, read as written, and every refusal
naming the file, the line and the key."""

from __future__ import annotations

import textwrap

import pytest

from ioi_superpose.analyses.scrubbing import Hypothesis, read_hypothesis
from ioi_superpose.errors import ConfigError
from tests.helpers import EXPERIMENTS

IOI_FEATURES = ("io", "s", "template_id", "order")


def write(tmp_path, text: str):
    path = tmp_path / "hypothesis.yaml"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_heads_are_read_as_written_and_layers_expand(tmp_path):
    """`0.10` is head 10 (YAML would read the number 0.1), `1.*` every head of layer 1; a head's own entry wins over
    its layer's."""
    path = write(tmp_path, """
        task: ioi
        heads:
          0.10: [io, s]
          0.1: [io]
          1.*: [template_id, order]
          1.3: [order]
    """)
    parsed = read_hypothesis(path)
    assert parsed.task == "ioi" and [e.line for e in parsed.entries] == [3, 4, 5, 6]
    hypothesis = parsed.hypothesis(2, 12, IOI_FEATURES, "ioi")
    assert hypothesis.features((0, 10)) == ("io", "s") and hypothesis.features((0, 1)) == ("io",)
    assert hypothesis.features((1, 0)) == ("template_id", "order") and hypothesis.features((1, 3)) == ("order",)
    assert len(hypothesis.heads) == 2 + 12
    learned = parsed.for_heads([(0, 1), (1, 5)], 2, 12, IOI_FEATURES, "ioi")
    assert learned == Hypothesis({(0, 1): ("io",), (1, 5): ("template_id", "order")})
    assert Hypothesis.from_dict(learned.to_dict()) == learned


def test_the_example_file_is_valid_for_the_toy_model():
    parsed = read_hypothesis(EXPERIMENTS / "scrub_hypothesis.yaml")
    hypothesis = parsed.hypothesis(2, 4, IOI_FEATURES, "ioi")
    assert hypothesis.heads == [(layer, head) for layer in range(2) for head in range(4)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- 0.0\n", r"must be a mapping with the keys \['task', 'heads'\]"),
        ("heads:\n  0.0: [io]\nhead: {}\n", r"line 3: unknown key 'head'"),
        ("task: ioi\n", r"has no 'heads:' mapping"),
        ("heads: {}\n", r"line 1: 'heads:' must map at least one"),
        ("heads:\n  0.0: [io]\n  zero.1: [s]\n", r"line 3: 'zero.1' is not a head"),
        ("heads:\n  0.0: [io]\n  0.0: [s]\n", r"line 3: '0.0' is given twice in heads: \(first on line 2\)"),
        ("heads:\n  0.1: [io]\n  0.01: [s]\n", r"line 3, key '0.01': this head is already given on line 2 \(as '0.1'\)"),
        ("heads:\n  0.1: []\n", r"line 2, key '0.1' has no features: list the prompt features its output depends on, "
                                r"or leave the head out"),
        ("heads:\n  0.1: [io, io]\n", r"line 2, key '0.1' lists the feature\(s\) \['io'\] more than once"),
        ("heads:\n  0.1: io\n", r"line 2, key '0.1': the features must be a list of names"),
        ("task: ioi\nheads:\n  0.1: [io, position]\n",
         r"line 3, key '0.1': \['position'\] is not a feature of task 'ioi'; its features are \['io', 's', "
         r"'template_id', 'order'\]"),
        ("task: cooking\nheads:\n  0.1: [io]\n", r"line 1: unknown task 'cooking'"),
        ("heads:\n  0.1: [io\n", r"is not valid YAML"),
    ],
)
def test_bad_files_are_refused_naming_the_line_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message):
        read_hypothesis(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("heads:\n  0.1: [io]\n  2.0: [s]\n", r"line 3, key '2.0': layer 2 is outside this model \(layers 0–1\)"),
        ("heads:\n  0.4: [io]\n", r"line 2, key '0.4': head 0.4 is outside this model \(2 layers × 4 heads"),
        ("heads:\n  0.1: [position]\n", r"line 2, key '0.1': \['position'\] is not a feature of task 'ioi'"),
    ],
)
def test_heads_and_features_are_checked_against_the_model_and_task(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        read_hypothesis(write(tmp_path, text)).check(2, 4, IOI_FEATURES, "ioi")


def test_a_file_about_another_task_and_a_learned_head_it_does_not_cover_are_refused(tmp_path):
    parsed = read_hypothesis(write(tmp_path, "task: ioi\nheads:\n  0.*: [io]\n"))
    with pytest.raises(ConfigError, match="is a hypothesis about task 'ioi'; these prompts are task 'induction'"):
        parsed.check(2, 4, ("trigger_token",), "induction")
    with pytest.raises(ConfigError, match=r"gives no features for head 1.2: add '1.2: \[...\]' or '1.\*: \[...\]'"):
        parsed.for_heads([(0, 1), (1, 2)], 2, 4, IOI_FEATURES, "ioi")


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_hypothesis(tmp_path / "nope.yaml")

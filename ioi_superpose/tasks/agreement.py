"""Subject–verb agreement (Linzen et al. 2016; as a contrast task, Finlayson et al. 2021 and Marks et al. 2024):
"The author near the dancers" → a verb that agrees with the subject, not with the attractor.

Answers are sets: for a singular subject {is, was, has} are correct and {are, were, have} incorrect, and the
reverse for a plural one; the metric is the logit difference mean(agreeing) − mean(disagreeing). Corruption, the
usual one: the subject's number is flipped (author ↔ authors), so the correct and incorrect sets swap.

In distribution the subject is followed by a prepositional phrase whose noun (the attractor) has a random
number. Off-distribution: `no_attractor` ("The author"), `opposite_attractor` (the attractor's number always
differs from the subject's: the hard case).

Roles: `subject`, `attractor`; features: subject noun (singular), its number, the attractor's number.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from ioi_superpose.data.ioi import TextEncoder
from ioi_superpose.errors import ConfigError
from ioi_superpose.tasks.base import (
    GeneratedTask,
    Row,
    TaskPrompts,
    encode_pieces,
    one_token_words,
    pad_id,
    single_token,
    stack_rows,
)

NOUNS: tuple[tuple[str, str], ...] = (
    ("author", "authors"), ("pilot", "pilots"), ("surgeon", "surgeons"), ("farmer", "farmers"),
    ("manager", "managers"), ("customer", "customers"), ("officer", "officers"), ("teacher", "teachers"),
    ("senator", "senators"), ("dancer", "dancers"), ("doctor", "doctors"), ("guard", "guards"),
    ("minister", "ministers"), ("architect", "architects"), ("executive", "executives"), ("driver", "drivers"),
)  # fmt: skip
"""(singular, plural) nouns of people, after Finlayson et al.'s lists; pairs not both one token are dropped."""

PREPOSITIONS: tuple[str, ...] = ("near", "behind", "beside", "with")
VERBS: tuple[tuple[str, str], ...] = (("is", "are"), ("was", "were"), ("has", "have"))
"""(singular, plural) forms of the answers."""


class AgreementTask(GeneratedTask):
    """Subject–verb agreement across a prepositional phrase; corruption flips the subject's number."""

    name = "agreement"
    metric = "logit_diff"
    role_names = ("subject", "attractor")
    feature_names = ("subject", "number", "attractor_number")

    def __init__(self, nouns: Sequence[tuple[str, str]] | None = None) -> None:
        """
        Args:
            nouns: (singular, plural) noun pairs; each form must be one token (default: `NOUNS`, pairs the
                tokenizer cannot write as one token each dropped).
        """
        self.nouns = None if nouns is None else [tuple(pair) for pair in nouns]

    @property
    def off_distribution(self) -> tuple[str, ...]:
        return ("no_attractor", "opposite_attractor")

    def words(self) -> list[str]:
        return list(dict.fromkeys(["The", "the", *(w for pair in NOUNS for w in pair), *PREPOSITIONS,
                                   *(w for pair in VERBS for w in pair)]))  # fmt: skip

    def prompts(self, encoder: TextEncoder, set_name: str, n: int, seed: int) -> TaskPrompts:
        self._check_request(set_name, n)
        pairs = self._pairs(encoder)
        verbs = [[single_token(encoder, " " + pair[number], self.name, "verb") for pair in VERBS] for number in (0, 1)]
        rng = random.Random(self.set_rng_seed(seed, set_name))
        rows = []
        for _ in range(n):
            (subject, attractor), number = rng.sample(pairs, 2), rng.randrange(2)
            attractor_number = 1 - number if set_name == "opposite_attractor" else rng.randrange(2)
            phrase = [] if set_name == "no_attractor" else [f" {rng.choice(PREPOSITIONS)} the",
                                                            f" {attractor[attractor_number]}"]  # fmt: skip
            clean, starts = encode_pieces(encoder, ["The", f" {subject[number]}", *phrase], self.name)
            corrupted, _ = encode_pieces(encoder, ["The", f" {subject[1 - number]}", *phrase], self.name)
            rows.append(
                Row(
                    clean=clean, corrupted=corrupted, correct=verbs[number], incorrect=verbs[1 - number],
                    roles={"subject": starts[1], "attractor": starts[-1] if phrase else starts[1]},
                    features={"subject": subject[0], "number": ("singular", "plural")[number],
                              "attractor_number": None if not phrase else ("singular", "plural")[attractor_number]},
                )
            )  # fmt: skip
        return stack_rows(rows, pad_id(encoder), self.role_names, self.feature_names, self.metric)

    def _pairs(self, encoder: TextEncoder) -> list[tuple[str, str]]:
        if self.nouns is not None:
            for pair in self.nouns:
                for word in pair:
                    single_token(encoder, " " + word, self.name, "noun")
            pairs = list(self.nouns)
        else:
            pairs = [pair for pair in NOUNS if _one_token_each(encoder, pair)]
        if len(pairs) < 2:
            raise ConfigError(
                f"Task 'agreement': {len(pairs)} (singular, plural) noun pairs are one token each for this tokenizer; "
                f"at least 2 are needed (subject and attractor). The pairs: {list(NOUNS[:4])}…; pass nouns it holds."
            )
        return pairs


def _one_token_each(encoder: TextEncoder, pair: Sequence[str]) -> bool:
    return len(one_token_words(encoder, pair)) == len(pair)

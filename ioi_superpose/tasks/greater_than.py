"""Greater-than (Hanna et al. 2023): "The war lasted from the year 17YY to the year 17" → a year above YY.

Answers are sets: the two-digit tokens YY+1 … 99 are correct, 00 … YY incorrect; the metric is the probability
difference P(year > YY) − P(year ≤ YY) (`prob_diff`). Corruption, the paper's: YY → 01, so almost every year
is "greater" and the clean prompt's information is gone.

The year is written as two pieces, " 17" and "YY", tokenized one by one as the paper requires them to be
(years whose whole-string tokenization differs, such as 1700 for GPT-2, are left out, as the paper did);
a word-level tokenizer holds "17" and "YY" as words of their own. YY is drawn from 02 … 98.

Roles: `century` (the first " 17"), `YY`; features: noun, YY, century.
Off-distribution: `other_centuries` (11 … 16 instead of 17), `paraphrase` ("The war started in the year
17YY and ended in the year 17").
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from ioi_superpose.data.ioi import TextEncoder
from ioi_superpose.errors import ConfigError, UnknownWordError
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

EVENT_NOUNS: tuple[str, ...] = (
    "war", "expedition", "siege", "voyage", "journey", "campaign", "reign", "trial", "treaty", "tour",
    "strike", "riot", "plague", "famine", "drought", "crisis", "dispute", "rivalry", "alliance", "occupation",
    "invasion", "rebellion", "revolt", "dynasty", "empire", "marriage", "friendship", "project", "study", "program",
)  # fmt: skip
"""Event nouns (the paper draws from a list of such nouns); those not one token for a tokenizer are dropped."""

TEMPLATES: dict[str, tuple[str, str]] = {
    "in_distribution": ("The {noun} lasted from the year", " to the year"),
    "paraphrase": ("The {noun} started in the year", " and ended in the year"),
}
"""(text before the first year, text between the two years) of each template."""

YEARS = range(2, 99)
CENTURY = 17
OTHER_CENTURIES = range(11, 17)


class GreaterThanTask(GeneratedTask):
    """Greater-than prompts with the 01 corruption; metric `prob_diff`."""

    name = "greater_than"
    metric = "prob_diff"
    role_names = ("century", "YY")
    feature_names = ("noun", "yy", "century")

    def __init__(self, nouns: Sequence[str] | None = None) -> None:
        """
        Args:
            nouns: event nouns for the "{noun} lasted" slot; each must be one token (default: `EVENT_NOUNS`, those
                not one token for the tokenizer dropped).
        """
        self.nouns = None if nouns is None else list(nouns)

    @property
    def off_distribution(self) -> tuple[str, ...]:
        return ("other_centuries", "paraphrase")

    def words(self) -> list[str]:
        words = [*EVENT_NOUNS, *(f"{y:02d}" for y in range(100)), *(str(c) for c in (*OTHER_CENTURIES, CENTURY))]
        for before, between in TEMPLATES.values():
            words += before.replace("{noun}", "").split() + between.split()
        return list(dict.fromkeys(words))

    def prompts(self, encoder: TextEncoder, set_name: str, n: int, seed: int) -> TaskPrompts:
        self._check_request(set_name, n)
        nouns = self._nouns(encoder)
        year_tokens = [single_token(encoder, f"{y:02d}", self.name, "year") for y in range(100)]
        before, between = TEMPLATES["paraphrase" if set_name == "paraphrase" else "in_distribution"]
        centuries = list(OTHER_CENTURIES) if set_name == "other_centuries" else [CENTURY]
        usable = {century: usable_years(encoder, century) for century in centuries}
        rng = random.Random(self.set_rng_seed(seed, set_name))
        rows = []
        for _ in range(n):
            noun, century = rng.choice(nouns), rng.choice(centuries)
            yy = rng.choice(usable[century])
            pieces = [before.format(noun=noun), f" {century}", f"{yy:02d}", between, f" {century}"]
            clean, starts = encode_pieces(encoder, pieces, self.name)
            corrupted, _ = encode_pieces(encoder, [*pieces[:2], "01", *pieces[3:]], self.name)
            if len(clean) != len(corrupted):  # "YY" and "01" are each one token, so this cannot differ
                raise ConfigError(f"Task 'greater_than': the 01 corruption changed the length of {''.join(pieces)!r}.")
            rows.append(
                Row(
                    clean=clean, corrupted=corrupted,
                    correct=year_tokens[yy + 1 :], incorrect=year_tokens[: yy + 1],
                    roles={"century": starts[1], "YY": starts[2]},
                    features={"noun": noun, "yy": yy, "century": century},
                )
            )  # fmt: skip
        return stack_rows(rows, pad_id(encoder), self.role_names, self.feature_names, self.metric)

    def _nouns(self, encoder: TextEncoder) -> list[str]:
        if self.nouns is None:
            nouns = one_token_words(encoder, EVENT_NOUNS)
            if not nouns:
                raise ConfigError(
                    f"Task 'greater_than': none of the event nouns {list(EVENT_NOUNS[:5])}… is one token for this "
                    "tokenizer; pass nouns it holds."
                )
            return nouns
        for noun in self.nouns:
            single_token(encoder, " " + noun, self.name, "noun")
        return self.nouns


def usable_years(encoder: TextEncoder, century: int) -> list[int]:
    """YY in 02 … 98 whose year " {century}{YY}" the tokenizer splits into " {century}" + "YY" (or cannot write
    as one word at all, as a word-level tokenizer): the paper's filter. The century must be one token."""
    century_tokens = [single_token(encoder, f" {century}", "greater_than", "century")]
    usable = []
    for yy in YEARS:
        pieces = century_tokens + [single_token(encoder, f"{yy:02d}", "greater_than", "year")]
        try:
            joined = list(encoder.encode(f" {century}{yy:02d}", add_special_tokens=False))
        except UnknownWordError:
            joined = pieces
        if joined == pieces:
            usable.append(yy)
    if not usable:
        raise ConfigError(f"Task 'greater_than': no year of century {century} tokenizes as ' {century}' + 'YY'.")
    return usable

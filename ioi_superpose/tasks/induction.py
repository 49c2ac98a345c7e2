"""Induction on repeated random tokens (Olsson et al. 2022): [BOS] r1 … rn r1 … rm → r(m+1).

Tokens are drawn uniformly from the tokenizer's vocabulary (special tokens excluded), so the task works with
any tokenizer, toys included. The clean prompt is a random sequence of `length` distinct tokens followed by the
first `repeat` of them again; END is the last repeated token (the *trigger*), the answer the token that followed
it in the first half.

Corruption (`resample_first_half`, the default): the first half is resampled — every token but the trigger,
which keeps its place — so the context an induction head reads no longer holds the answer; the second half is
unchanged. This is the contrast-pair form of ACDC's induction task (Conmy et al. 2023, whose corrupted inputs
are other random sequences: `shuffle_tensor` of the clean ones), made so the corrupted prompt has an answer of
its own: the token that now follows the trigger, the incorrect answer. `trigger` instead replaces END by
another first-half token r_j (its answer r(j+1) is the incorrect one); the context stays intact.

Roles: `first_trigger` (the trigger's first occurrence), `first_answer` (the token after it); features: the
trigger, answer and wrong-answer token ids.
"""

from __future__ import annotations

import random
from typing import Literal

from ioi_superpose.data.ioi import TextEncoder
from ioi_superpose.errors import ConfigError
from ioi_superpose.tasks.base import GeneratedTask, Row, TaskPrompts, pad_id, stack_rows

InductionCorruption = Literal["resample_first_half", "trigger"]


class InductionTask(GeneratedTask):
    """Repeated random tokens; off-distribution: longer and shorter sequences."""

    name = "induction"
    metric = "logit_diff"
    role_names = ("first_trigger", "first_answer")
    feature_names = ("trigger_token", "answer_token", "wrong_token")

    def __init__(
        self, length: int = 10, repeat: int = 6, corruption: InductionCorruption = "resample_first_half"
    ) -> None:
        """
        Args:
            length: random tokens in the first half (distinct).
            repeat: tokens of the first half repeated before END (1 ≤ repeat < length): the answer is token
                `repeat + 1` of the first half.
            corruption: `resample_first_half` or `trigger` (module docstring).
        """
        if not 1 <= repeat < length:
            raise ConfigError(f"Task 'induction': need 1 <= repeat < length, got repeat {repeat}, length {length}.")
        if corruption not in ("resample_first_half", "trigger"):
            raise ConfigError(
                f"Task 'induction': corruption must be 'resample_first_half' or 'trigger', got {corruption!r}."
            )
        self.length, self.repeat, self.corruption = length, repeat, corruption

    @property
    def off_distribution(self) -> tuple[str, ...]:
        return ("long_sequences", "short_sequences")

    def _shape(self, set_name: str) -> tuple[int, int]:
        """(length, repeat) of a set: twice as long, about half as long, or as set."""
        if set_name == "long_sequences":
            return self.length * 2, self.repeat * 2
        if set_name == "short_sequences":
            return max(self.length // 2, 2), max(min(self.repeat // 2, self.length // 2 - 1), 1)
        return self.length, self.repeat

    def prompts(self, encoder: TextEncoder, set_name: str, n: int, seed: int) -> TaskPrompts:
        self._check_request(set_name, n)
        length, repeat = self._shape(set_name)
        pool = token_pool(encoder)
        if len(pool) < 2 * length:
            raise ConfigError(
                f"Task 'induction': {2 * length} distinct tokens are needed (length {length}, clean and resampled "
                f"halves) but this tokenizer has {len(pool)} ordinary tokens; lower length."
            )
        rng = random.Random(self.set_rng_seed(seed, set_name))
        bos = [encoder.bos_token_id] if encoder.bos_token_id is not None else []
        rows = []
        for _ in range(n):
            drawn = rng.sample(pool, 2 * length)
            first, other = drawn[:length], drawn[length:]
            trigger = repeat - 1  # index of the trigger in the first half
            clean = bos + first + first[:repeat]
            if self.corruption == "resample_first_half":
                resampled = other[:trigger] + [first[trigger]] + other[trigger + 1 :]
                corrupted = bos + resampled + first[:repeat]
                wrong = resampled[trigger + 1]
            else:
                j = rng.choice([i for i in range(length - 1) if i != trigger])
                corrupted = clean[:-1] + [first[j]]
                wrong = first[j + 1]
            offset = len(bos)
            rows.append(
                Row(
                    clean=clean, corrupted=corrupted, correct=[first[trigger + 1]], incorrect=[wrong],
                    roles={"first_trigger": offset + trigger, "first_answer": offset + trigger + 1},
                    features={"trigger_token": first[trigger], "answer_token": first[trigger + 1],
                              "wrong_token": wrong},
                )
            )  # fmt: skip
        return stack_rows(rows, pad_id(encoder), self.role_names, self.feature_names, self.metric)


def token_pool(encoder: TextEncoder) -> list[int]:
    """Every token id of the tokenizer except its special ones (BOS, PAD, EOS, UNK …)."""
    names = ("bos_token_id", "pad_token_id", "eos_token_id", "unk_token_id")
    special = {getattr(encoder, name, None) for name in names}
    special |= set(getattr(encoder, "all_special_ids", []) or [])
    return [token for token in range(len(encoder)) if token not in special]  # type: ignore[arg-type]

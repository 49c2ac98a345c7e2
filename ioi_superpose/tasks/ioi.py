"""Indirect object identification (Wang et al. 2022): "… [B] gave a [OBJECT] to" → [A], the IO.

Wraps the IOI generator (`data/ioi.py`) and the IOI sets (`data/ioi_sets.py`) exactly as the IOI datamodule
draws them: the same settings and seed give the same prompts (a test compares them). Metric: logit(IO) −
logit(S). Roles IO, S1, S2; features IO and S names, template id, order (ABBA: the IO named first).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ioi_superpose.data.datamodule import OFF_DISTRIBUTION_SETS, split_names
from ioi_superpose.data.ioi import Corruption, IOIBatch, TextEncoder, default_names, generate_ioi, ioi_features
from ioi_superpose.data.ioi_sets import ioi_set_specs
from ioi_superpose.data.templates import (
    BABA_TEMPLATES,
    DUPLICATED_IO_TEMPLATES,
    IOI_TEMPLATES,
    LONG_TEMPLATES,
    NAMES,
    NO_PREPOSITION_TEMPLATES,
    OBJECTS,
    PLACES,
)
from ioi_superpose.errors import ConfigError
from ioi_superpose.models.word_tokenizer import split_words
from ioi_superpose.tasks.base import GeneratedTask, TaskPrompts

_SLOT = re.compile(r"\[(?:A|B|PLACE|OBJECT)\]")


class IOITask(GeneratedTask):
    """IOI prompts; train, val and the in-distribution test set use the training templates and names."""

    name = "ioi"
    metric = "logit_diff"
    role_names = ("IO", "S1", "S2")
    feature_names = ("io", "s", "template_id", "order")

    def __init__(
        self,
        corruption: Corruption = "name_swap",
        held_out_templates: Sequence[int] = (12, 13, 14),
        held_out_name_fraction: float = 0.2,
        name_split: tuple[list[str], list[str]] | None = None,
    ) -> None:
        """
        Args:
            corruption: `name_swap` (S2 becomes the IO: the answer flips) or `abc` (IO, S1, S2 replaced).
            held_out_templates: BABA template indices (0–14) kept out of training, with their ABBA mirrors.
            held_out_name_fraction: share of the names in the `held_out_names` set only.
            name_split: (held-out names, training names) to use instead of the seeded split, e.g. a toy
                checkpoint's own (`data.name_split.checkpoint_name_split`).
        """
        if corruption not in ("name_swap", "abc"):
            raise ConfigError(f"Task 'ioi': corruption must be 'name_swap' or 'abc', got {corruption!r}.")
        if not 0.0 <= held_out_name_fraction < 1.0:
            raise ConfigError(f"Task 'ioi': held_out_name_fraction must be in [0, 1), got {held_out_name_fraction}.")
        bad = [i for i in held_out_templates if not 0 <= i < len(BABA_TEMPLATES)]
        if bad or len(set(held_out_templates)) == len(BABA_TEMPLATES):
            raise ConfigError(
                f"Task 'ioi': held_out_templates must list indices in 0..{len(BABA_TEMPLATES) - 1} and leave one "
                f"for training, got {list(held_out_templates)}."
            )
        self.corruption = corruption
        self.held_out_templates = tuple(held_out_templates)
        self.held_out_name_fraction = held_out_name_fraction
        self.name_split = name_split

    @property
    def off_distribution(self) -> tuple[str, ...]:
        return OFF_DISTRIBUTION_SETS

    def prompts(self, encoder: TextEncoder, set_name: str, n: int, seed: int) -> TaskPrompts:
        self._check_request(set_name, n)
        held_out_names, train_names = self.name_split or split_names(
            default_names(encoder), self.held_out_name_fraction, seed
        )
        specs = ioi_set_specs(encoder, self.held_out_templates, train_names, held_out_names)
        template_ids, templates, names, objects = specs["in_distribution" if set_name in ("train", "val") else set_name]
        if not names:
            raise ConfigError(f"Task 'ioi': the {set_name} set has no names (held_out_name_fraction is 0?).")
        batch = generate_ioi(
            encoder, n, list(templates), list(template_ids), names, self.corruption,
            self.set_rng_seed(seed, set_name), PLACES, objects,
        )  # fmt: skip
        return ioi_task_prompts(batch, encoder)

    def words(self) -> list[str]:
        """Names, places, objects and the words of every IOI template family, in order of first appearance."""
        words = [*NAMES, *PLACES, *OBJECTS]
        for template in (*IOI_TEMPLATES, *LONG_TEMPLATES, *DUPLICATED_IO_TEMPLATES, *NO_PREPOSITION_TEMPLATES):
            words += split_words(_SLOT.sub(" ", template))
        return list(dict.fromkeys(words))


def ioi_task_prompts(batch: IOIBatch, encoder: TextEncoder) -> TaskPrompts:
    """An `IOIBatch` as task prompts: its role positions, and the names, template and order of each prompt
    (`data.ioi.ioi_features`, which the IOI datamodule's `features` reads too)."""
    return TaskPrompts(
        batch=batch,
        roles={"IO": batch.io_pos, "S1": batch.s1_pos, "S2": batch.s2_pos},
        features=ioi_features(batch, encoder),
    )


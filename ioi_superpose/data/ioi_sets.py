"""The IOI prompt sets — in distribution and each off-distribution family — as (template ids, templates, names,
objects): one definition for the IOI datamodule (`data/datamodule.py`) and the `ioi` task (`tasks/ioi.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from ioi_superpose.data.ioi import TextEncoder, single_token_words
from ioi_superpose.data.templates import (
    BABA_TEMPLATES,
    DUPLICATED_IO_TEMPLATES,
    IOI_TEMPLATES,
    LONG_TEMPLATES,
    NO_PREPOSITION_TEMPLATES,
    OBJECTS,
)


class SetSpec(NamedTuple):
    """What `generate_ioi` draws one named set from."""

    template_ids: Sequence[int]
    templates: Sequence[str]
    names: list[str]
    objects: Sequence[str]


def ioi_set_specs(
    encoder: TextEncoder, held_out_templates: Sequence[int], train_names: list[str], held_out_names: list[str]
) -> dict[str, SetSpec]:
    """Every IOI generator, keyed by set name: `in_distribution` (train, val and the in-distribution test set
    draw from it) and the off-distribution families of `datamodule.OFF_DISTRIBUTION_SETS`."""
    held_out_ids = set(held_out_templates) | {i + len(BABA_TEMPLATES) for i in held_out_templates}
    train_ids = [i for i in range(len(IOI_TEMPLATES)) if i not in held_out_ids]
    long_ids = range(len(IOI_TEMPLATES), len(IOI_TEMPLATES) + len(LONG_TEMPLATES))
    duplicated_ids = range(long_ids.stop, long_ids.stop + len(DUPLICATED_IO_TEMPLATES))
    no_preposition_ids = range(duplicated_ids.stop, duplicated_ids.stop + len(NO_PREPOSITION_TEMPLATES))
    # Objects in the name slots; the [OBJECT] slot then takes the other objects.
    object_names, _ = single_token_words(encoder, OBJECTS[:5])
    baba_ids = [i for i in train_ids if i < len(BABA_TEMPLATES)]
    abba_ids = [i for i in train_ids if i >= len(BABA_TEMPLATES)]
    in_distribution = [IOI_TEMPLATES[i] for i in train_ids]
    held_out = sorted(held_out_ids)
    return {
        "in_distribution": SetSpec(train_ids, in_distribution, train_names, OBJECTS),
        "held_out_templates": SetSpec(held_out, [IOI_TEMPLATES[i] for i in held_out], train_names, OBJECTS),
        "held_out_names": SetSpec(train_ids, in_distribution, held_out_names, OBJECTS),
        "duplicated_io": SetSpec(duplicated_ids, DUPLICATED_IO_TEMPLATES, train_names, OBJECTS),
        "long_templates": SetSpec(long_ids, LONG_TEMPLATES, train_names, OBJECTS),
        "baba_only": SetSpec(baba_ids, [IOI_TEMPLATES[i] for i in baba_ids], train_names, OBJECTS),
        "abba_only": SetSpec(abba_ids, [IOI_TEMPLATES[i] for i in abba_ids], train_names, OBJECTS),
        "no_preposition": SetSpec(no_preposition_ids, NO_PREPOSITION_TEMPLATES, train_names, OBJECTS),
        "objects_as_names": SetSpec(train_ids, in_distribution, object_names, OBJECTS[5:]),
    }

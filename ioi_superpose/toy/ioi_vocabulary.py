"""The toy-IOI vocabulary: one token per word of the IOI prompt material in `data/templates.py`.

Built here, not in `models/` (which never imports `data/`): `models.WordTokenizer` only maps a given
word list to ids. The order is fixed — specials, names, places, objects, then template words in order
of first appearance — so the ids are the same on every machine and equal those stored in
`checkpoints/toy_ioi.pt` (a test checks it).
"""

from __future__ import annotations

import re

from ioi_superpose.data.templates import (
    DUPLICATED_IO_TEMPLATES,
    IOI_TEMPLATES,
    LONG_TEMPLATES,
    NAMES,
    OBJECTS,
    PLACES,
)
from ioi_superpose.models.word_tokenizer import BOS, PAD, WordTokenizer, split_words

_SLOT = re.compile(r"\[(?:A|B|PLACE|OBJECT)\]")


def toy_ioi_vocabulary() -> list[str]:
    """Specials, names, places, objects, then the words of every template family (IOI, long,
    duplicated-IO) in order of first appearance, each word once."""
    words: list[str] = [BOS, PAD, *NAMES, *PLACES, *OBJECTS]
    for template in (*IOI_TEMPLATES, *LONG_TEMPLATES, *DUPLICATED_IO_TEMPLATES):
        words += split_words(_SLOT.sub(" ", template))
    return list(dict.fromkeys(words))


def toy_ioi_tokenizer() -> WordTokenizer:
    """The `WordTokenizer` of the toy-IOI model: every word of every test set is in-vocabulary."""
    return WordTokenizer(toy_ioi_vocabulary())

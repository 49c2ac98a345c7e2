"""One call for IOI prompts in a notebook: `ioi_prompts(model_or_name)`.

It wraps `generate_ioi` (data/ioi.py) with the choices a notebook wants by default: the IOI paper's
templates and the names that are one token for the model's tokenizer, and **equal-length prompts**
(every prompt has the same number of tokens and END is its last one, as `learn_combination` and the
TransformerLens-style `get_act_patch_*` drop-ins need; IO, S1 and S2 stay per prompt in `io_pos`, … —
they move with the template and swap between a BABA template and its ABBA mirror). For prompts whose
roles line up too (per-position heatmaps), pass one template and its mirror, as the seed notebook did:
`templates=[IOI_TEMPLATES[0], IOI_TEMPLATES[15]]`.

    prompts = ioi_prompts(model)                      # a HookedTransformer with a tokenizer (GPT-2)
    prompts = ioi_prompts("checkpoints/toy_ioi.pt")   # a name or path: its tokenizer via load_tokenizer
    prompts.clean_tokens, prompts.corrupted_tokens, prompts.answer_tokens   # [n, pos], [n, pos], [n, 2]
    ioi_texts(prompts, "checkpoints/toy_ioi.pt")       # the clean prompts as strings
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, Union

from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.data.ioi import (
    IOIBatch,
    TextEncoder,
    _encode_prompt,
    default_names,
    generate_ioi,
    require_single_tokens,
)
from ioi_superpose.data.templates import (
    DUPLICATED_IO_TEMPLATES,
    IOI_TEMPLATES,
    LONG_TEMPLATES,
    OBJECTS,
    PLACES,
)
from ioi_superpose.errors import ConfigError
from ioi_superpose.seeds import check_seed

if TYPE_CHECKING:  # models/ imports data/templates.py: import it lazily at run time, never at module load
    from ioi_superpose.models import HookedTransformer

ModelOrName = Union["HookedTransformer", str]
_KNOWN_TEMPLATES: tuple[str, ...] = IOI_TEMPLATES + LONG_TEMPLATES + DUPLICATED_IO_TEMPLATES


def ioi_prompts(
    model_or_name: ModelOrName,
    n: int = 64,
    corruption: Literal["name_swap", "abc"] = "name_swap",
    seed: int = 0,
    *,
    templates: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    equal_length: bool = True,
) -> IOIBatch:
    """`n` seeded clean/corrupted IOI prompt pairs for this model's tokenizer.

    Args:
        model_or_name: a `HookedTransformer` whose `model.tokenizer` is set (GPT-2 loaded by name), or
            the name / path you load the model from (`"gpt2-small"`, a local GPT-2 directory,
            `"checkpoints/toy_ioi.pt"`), whose tokenizer `ioi_superpose.models.load_tokenizer` finds
            offline. Toy checkpoints keep their tokenizer in the file, not on the model: pass the path.
            With a model, the prompts are checked against its vocabulary and context length and
            returned on its device; with a name, on the CPU.
        n: number of prompt pairs (>= 1).
        corruption: `name_swap` (the seed notebook's: S2 becomes the IO, so the answer flips) or
            `abc` (the IOI paper's: IO, S1 and S2 replaced by three other names).
        seed: fixes every prompt; the same arguments give the same tokens.
        templates: templates with [A] (IO), [B] (subject), [PLACE], [OBJECT] slots, ending in "to [A]"
            (default: the IOI paper's 15 BABA templates and their 15 ABBA mirrors).
        names: single-token first names (default: the IOI paper's names that are one token here).
        equal_length: keep only the templates of the most common prompt length for this tokenizer
            (ties: the shorter length), so all prompts have the same length, END is the last position
            of every row (`end_pos` constant) and no row is padded. With the defaults
            that is 16 tokens (BOS included) for GPT-2 and the toy word tokenizer alike: 12 of the 30
            templates for GPT-2, 14 for the toy. `False` uses every template: prompts are then
            right-padded after END and only tools that take `end_pos` read them correctly.

    Returns:
        An `IOIBatch`: `clean_tokens`, `corrupted_tokens` [n, pos]; `answer_tokens` [n, 2] (IO, S) for
        the clean prompt; `end_pos`, `io_pos`, `s1_pos`, `s2_pos`, `template_id` [n] (template ids
        index IOI_TEMPLATES + LONG_TEMPLATES + DUPLICATED_IO_TEMPLATES of data/templates.py; templates
        not among those get ids from 1000 on).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"ioi_prompts: n must be a positive integer (number of prompt pairs), got {n!r}.")
    if corruption not in ("name_swap", "abc"):
        raise ConfigError(f"ioi_prompts: corruption must be 'name_swap' or 'abc', got {corruption!r}.")
    check_seed("ioi_prompts: seed", seed)
    encoder, model = _encoder_and_model(model_or_name, "ioi_prompts")
    templates = list(IOI_TEMPLATES if templates is None else templates)
    if not templates:
        raise ConfigError("ioi_prompts: templates is empty; pass at least one template (or None for the IOI paper's).")
    bad = [t for t in templates if not isinstance(t, str) or not t.endswith(" [A]") or t.count("[B]") < 2]
    if bad:
        raise ConfigError(
            f"ioi_prompts: templates must be strings with two [B] (subject) slots that end in ' [A]' "
            f"(the IO, which the model predicts), e.g. {IOI_TEMPLATES[0]!r}; got {bad[:3]}."
        )
    names = default_names(encoder) if names is None else list(names)
    template_ids = [_template_id(t, i) for i, t in enumerate(templates)]
    if equal_length:
        templates, template_ids = _equal_length(encoder, templates, template_ids, names)
    prompts = generate_ioi(encoder, n, templates, template_ids, names, corruption, seed)
    if model is not None:
        _check_fits(model, prompts)
        prompts = prompts.to(model.cfg.device)
    return prompts


def ioi_texts(
    prompts: IOIBatch, model_or_name: ModelOrName, which: Literal["clean", "corrupted"] = "clean"
) -> list[str]:
    """The prompts as strings (BOS and padding dropped), decoded with the same tokenizer."""
    if which not in ("clean", "corrupted"):
        raise ConfigError(f"ioi_texts: which must be 'clean' or 'corrupted', got {which!r}.")
    encoder, _ = _encoder_and_model(model_or_name, "ioi_texts")
    return decode_prompts(encoder, prompts, which)


def decode_prompts(
    encoder: TextEncoder, prompts: ContrastBatch, which: Literal["clean", "corrupted"] = "clean"
) -> list[str]:
    """`ioi_texts` with the tokenizer itself: each row's tokens up to END, without BOS and padding."""
    tokens = (prompts.clean_tokens if which == "clean" else prompts.corrupted_tokens).cpu()
    start = 1 if encoder.bos_token_id is not None else 0
    return [encoder.decode(row[start : int(end) + 1].tolist()) for row, end in zip(tokens, prompts.end_pos.cpu())]


def _encoder_and_model(model_or_name: ModelOrName, caller: str) -> tuple[TextEncoder, "HookedTransformer | None"]:
    from ioi_superpose.models import HookedTransformer, load_tokenizer

    if isinstance(model_or_name, str):
        return load_tokenizer(model_or_name), None
    if isinstance(model_or_name, HookedTransformer):
        if model_or_name.tokenizer is None:
            raise ConfigError(
                f"{caller}: this model has no tokenizer (model.tokenizer is None; `load_frozen_model` attaches "
                f"the one a toy-IOI checkpoint stores). Pass the name or path you loaded it from instead, e.g. "
                f'{caller}("checkpoints/toy_ioi.pt", ...).'
            )
        return model_or_name.tokenizer, model_or_name
    raise ConfigError(
        f"{caller}: model_or_name must be a HookedTransformer or a model name / path string "
        f"(e.g. 'gpt2-small', 'checkpoints/toy_ioi.pt'), got {type(model_or_name).__name__}."
    )


def _template_id(template: str, position: int) -> int:
    return _KNOWN_TEMPLATES.index(template) if template in _KNOWN_TEMPLATES else 1000 + position


def _equal_length(
    encoder: TextEncoder, templates: list[str], template_ids: list[int], names: Sequence[str]
) -> tuple[list[str], list[int]]:
    """The templates of the most common prompt length (names, places and objects must be one token)."""
    require_single_tokens(encoder, PLACES, "places")
    require_single_tokens(encoder, OBJECTS, "objects")
    if not names:
        raise ConfigError("ioi_prompts: names is empty; pass single-token names (or None for the defaults).")
    words = {"A": names[0], "B": names[-1], "PLACE": PLACES[0], "OBJECT": OBJECTS[0]}
    lengths = [len(_encode_prompt(encoder, template, words)[0]) for template in templates]
    counts = Counter(lengths)
    length = min(counts, key=lambda value: (-counts[value], value))
    keep = [i for i, value in enumerate(lengths) if value == length]
    return [templates[i] for i in keep], [template_ids[i] for i in keep]


def _check_fits(model: "HookedTransformer", prompts: IOIBatch) -> None:
    top = int(max(prompts.clean_tokens.max(), prompts.corrupted_tokens.max()))
    if top >= model.cfg.d_vocab:
        raise ConfigError(
            f"ioi_prompts: token id {top} is outside the model's vocabulary (d_vocab {model.cfg.d_vocab}): "
            "the model's tokenizer does not match its embedding. Pass the model's own name or path."
        )
    if prompts.clean_tokens.shape[1] > model.cfg.n_ctx:
        raise ConfigError(
            f"ioi_prompts: prompts of {prompts.clean_tokens.shape[1]} tokens exceed the model's context "
            f"({model.cfg.n_ctx}); pass shorter templates."
        )

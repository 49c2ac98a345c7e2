"""Max-activating examples of the learned combination: over a seeded corpus of varied prompts, those on
which its patch moves the answer most and least.

The corpus is drawn by the datamodule's own generators (`IOIDataModule.draw`): in-distribution prompts and
every off-distribution set, with each corruption, `per_set` prompts each, every prompt tagged with the set it
came from. Each set is seeded by the name `max_activating/<set>/<corruption>` (`set_seed`, like the test
sets), so the corpus is a fixed function of `--data.seed` and holds fresh prompts, not the test sets'.

Per prompt, the fitted combination's own runs (`FittedCombination.reference` and `answer_logits`: any family, in
the fit's notion) give the clean, corrupted and patched logit differences IO − S at END, and

    move     = patched − base logit difference    (base: corrupted for denoising, clean for noising)
    recovery = (patched − corrupted) / (clean − corrupted)   (None where |clean − corrupted| < MIN_GAP)

Rows are ranked by the signed move, largest first. Denoising: a positive move pushes the corrupted prompt
towards IO, the clean answer; the top rows are where the patch restores IO most, the bottom rows where it
does least (a negative move pushes towards S). Noising: the patch should push the clean prompt away from IO;
the bottom rows (most negative) are where it breaks the behaviour most, the top rows where it breaks it least.

    corpus = build_corpus("checkpoints/toy_ioi.pt", per_set=64)       # or build_corpus(datamodule)
    table = max_activating_examples(fitted, corpus, k=10)             # system.fitted() of a trained module
    table.top(), table.bottom()           # its markdown: results.tables.max_activating_markdown(table)

After `fit`, `python -m ioi_superpose.train` writes `max_activating.md` and `max_activating.json` into the
run directory (options `--max_activating.k`, `--max_activating.per_set`, `--max_activating.corruptions`).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, get_args

import torch

from ioi_superpose.analyses.max_activating_rows import worst_recovered
from ioi_superpose.data.datamodule import OFF_DISTRIBUTION_SETS, IOIDataModule
from ioi_superpose.data.ioi import Corruption, IOIBatch
from ioi_superpose.data.prompts import decode_prompts
from ioi_superpose.data.splits import IN_DISTRIBUTION
from ioi_superpose.engine.metric import MIN_GAP, normalised_recovery
from ioi_superpose.errors import ConfigError
from ioi_superpose.fitting.fitted import FittedCombination

CORPUS_SETS: tuple[str, ...] = (IN_DISTRIBUTION, *OFF_DISTRIBUTION_SETS)
CORRUPTIONS: tuple[Corruption, ...] = get_args(Corruption)
SEED_PREFIX = "max_activating"


@dataclass
class CorpusPart:
    """The prompts of one (set, corruption) generator, with their texts."""

    set_name: str
    corruption: Corruption
    prompts: IOIBatch
    texts: list[str]
    """Clean prompts as the tokenizer decodes their tokens up to END (no BOS, no padding)."""
    corrupted_texts: list[str]
    answers: list[tuple[str, str]]
    """(IO, S) per prompt, decoded from `answer_tokens`."""


@dataclass
class Corpus:
    parts: list[CorpusPart]
    seed: int
    """`--data.seed`: every part's seed is derived from it and the part's name."""
    per_set: int
    skipped: dict[str, str] = field(default_factory=dict)
    """Sets that could not be drawn, and why."""

    def __len__(self) -> int:
        return sum(len(part.prompts) for part in self.parts)


def build_corpus(
    source: IOIDataModule | str,
    per_set: int = 64,
    corruptions: Sequence[Corruption] = CORRUPTIONS,
    sets: Sequence[str] = CORPUS_SETS,
) -> Corpus:
    """`per_set` prompts of each set in `sets` with each corruption, from the datamodule's generators.

    `source`: the run's datamodule (its templates, name split and seed), or a model name / path for a
    datamodule with default settings (`IOIDataModule(model_name=source)`). `held_out_names` is skipped, and
    said so, when the datamodule holds no names out (`--data.held_out_name_fraction 0`).
    """
    if per_set < 1:
        raise ConfigError(f"--max_activating.per_set must be >= 1 (prompts per set and corruption), got {per_set}.")
    unknown = [name for name in sets if name not in CORPUS_SETS]
    if unknown or not sets:
        raise ConfigError(f"Unknown or no corpus sets {list(unknown)}; choose from {list(CORPUS_SETS)}.")
    bad = [c for c in corruptions if c not in CORRUPTIONS]
    if bad or not corruptions:
        raise ConfigError(
            f"--max_activating.corruptions must list some of {list(CORRUPTIONS)}, got {list(corruptions)}."
        )
    datamodule = IOIDataModule(model_name=source) if isinstance(source, str) else source
    parts, skipped = [], {}
    for set_name in sets:
        for corruption in dict.fromkeys(corruptions):
            if set_name == "held_out_names" and datamodule.hparams.held_out_name_fraction == 0.0:
                skipped[set_name] = "--data.held_out_name_fraction is 0: no name is held out"
                continue
            prompts = datamodule.draw(set_name, per_set, corruption, seed_name=f"{SEED_PREFIX}/{set_name}/{corruption}")
            encoder = datamodule.encoder
            answers = [
                (encoder.decode([io]).strip(), encoder.decode([s]).strip()) for io, s in prompts.answer_tokens.tolist()
            ]
            texts, corrupted = decode_prompts(encoder, prompts), decode_prompts(encoder, prompts, "corrupted")
            parts.append(CorpusPart(set_name, corruption, prompts, texts, corrupted, answers))
    return Corpus(parts, int(datamodule.hparams.seed), per_set, skipped)


@dataclass(frozen=True)
class Example:
    """One prompt of the corpus under the learned combination's patch."""

    rank: int
    """1 = the largest move of the corpus."""
    set_name: str
    corruption: str
    index: int
    """Row of the prompt in its (set, corruption) part."""
    template_id: int
    prompt: str
    corrupted_prompt: str
    io: str
    s: str
    clean_logit_diff: float
    corrupted_logit_diff: float
    patched_logit_diff: float
    base_logit_diff: float
    move: float
    recovery: float | None
    """None where |clean − corrupted| < MIN_GAP: the model does not tell the two prompts apart."""


@dataclass
class MaxActivating:
    """Every prompt of a corpus, ranked by move (largest first), and the k at each end."""

    direction: str
    combination: str
    model_name: str
    k: int
    rows: list[Example]
    corpus_seed: int
    per_set: int
    skipped: dict[str, str]

    def top(self) -> list[Example]:
        """The k largest moves, largest first."""
        return self.rows[: self.k]

    def bottom(self) -> list[Example]:
        """The k smallest moves, smallest first."""
        return self.rows[::-1][: self.k]

    def worst_recovered(self) -> list[Example]:
        """The k prompts on which the patch fails most by the prompt's own recovery (prompts without a
        clean/corrupted gap left out): the lowest recoveries for denoising (the patch restores least of the prompt's
        own gap), the highest for noising (it destroys least). Unlike the bottom by move, a prompt the model itself
        gets wrong (a small or negative clean − corrupted gap) does not crowd these out."""
        return worst_recovered(self.rows, self.direction, self.k)

    def sign_convention(self) -> str:
        if self.direction == "denoising":
            return (
                "Denoising: the base run is the corrupted prompt and the patch brings in the clean heads, so a "
                "positive move pushes towards IO, the clean answer. The top rows are the prompts on which the patch "
                "restores IO most; the bottom rows those on which it does least (a negative move pushes towards S)."
            )
        return (
            "Noising: the base run is the clean prompt and the patch brings in the corrupted heads, so a negative "
            "move pushes away from IO, towards S. The bottom rows (most negative) are the prompts on which the patch "
            "breaks the behaviour most; the top rows those on which it breaks it least."
        )

    def by_set(self) -> list[dict[str, Any]]:
        """Per (set, corruption): prompts, mean / min / max move, median recovery and how many have none."""
        groups: dict[tuple[str, str], list[Example]] = {}
        for row in self.rows:
            groups.setdefault((row.set_name, row.corruption), []).append(row)
        out = []
        order = {name: i for i, name in enumerate(CORPUS_SETS)}
        for (set_name, corruption), rows in sorted(
            groups.items(), key=lambda item: (order[item[0][0]], CORRUPTIONS.index(item[0][1]))
        ):
            moves = [row.move for row in rows]
            recoveries = [row.recovery for row in rows if row.recovery is not None]
            out.append({
                "set": set_name, "corruption": corruption, "prompts": len(rows),
                "mean_move": statistics.fmean(moves), "min_move": min(moves), "max_move": max(moves),
                "median_recovery": statistics.median(recoveries) if recoveries else None,
                "no_recovery": len(rows) - len(recoveries),
            })  # fmt: skip
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "direction": self.direction,
            "combination": self.combination,
            "k": self.k,
            "n_prompts": len(self.rows),
            "per_set": self.per_set,
            "corpus_seed": self.corpus_seed,
            "seed_names": f"{SEED_PREFIX}/<set>/<corruption>",
            "min_gap_for_recovery": MIN_GAP,
            "sign_convention": self.sign_convention(),
            "skipped": self.skipped,
            "by_set": self.by_set(),
            "worst_recovered_ranks": [row.rank for row in self.worst_recovered()],
            "rows": [asdict(row) for row in self.rows],
        }


@torch.no_grad()
def max_activating_examples(
    fitted: FittedCombination, corpus: Corpus, k: int = 10, batch_size: int = 64
) -> MaxActivating:
    """Every corpus prompt's clean, corrupted and patched logit differences under the fitted combination as it is
    now (evaluation mode: hard-concrete gates deterministic), ranked by move.

    Runs on the device the combination is on, `batch_size` prompts at a time; each chunk is trimmed to its longest
    prompt and read at each prompt's own END, so prompts of different lengths are handled.
    """
    if k < 1:
        raise ConfigError(f"--max_activating.k must be >= 1 (rows at each end of the table), got {k}.")
    if batch_size < 1:
        raise ConfigError(f"--max_activating.batch_size must be >= 1, got {batch_size}.")
    unranked: list[dict[str, Any]] = []
    with fitted.evaluating():
        for part in corpus.parts:
            for start in range(0, len(part.prompts), batch_size):
                batch = part.prompts[start : start + batch_size].trimmed().to(fitted.device)
                reference = fitted.reference(batch)
                patched = reference.measure(fitted.answer_logits(batch, reference)).cpu()
                clean, corrupted = (reference.measure(logits).cpu() for logits in reference.clean_and_corrupted())
                base = reference.measure(reference.base_answer_logits).cpu()
                recovery = normalised_recovery(patched, corrupted, clean)
                for offset in range(len(batch)):
                    row = start + offset
                    gap = float(clean[offset] - corrupted[offset])
                    unranked.append({
                        "set_name": part.set_name, "corruption": part.corruption, "index": row,
                        "template_id": int(part.prompts.template_id[row]), "prompt": part.texts[row],
                        "corrupted_prompt": part.corrupted_texts[row],
                        "io": part.answers[row][0], "s": part.answers[row][1],
                        "clean_logit_diff": float(clean[offset]), "corrupted_logit_diff": float(corrupted[offset]),
                        "patched_logit_diff": float(patched[offset]), "base_logit_diff": float(base[offset]),
                        "move": float(patched[offset] - base[offset]),
                        "recovery": float(recovery[offset]) if abs(gap) >= MIN_GAP else None,
                    })  # fmt: skip
    # A stable sort: equal moves keep the corpus order.
    ranked = sorted(unranked, key=lambda row: -row["move"])
    return MaxActivating(
        direction=fitted.direction,
        combination=fitted.family,
        model_name=fitted.model_name,
        k=k,
        rows=[Example(rank=rank, **row) for rank, row in enumerate(ranked, start=1)],
        corpus_seed=corpus.seed,
        per_set=corpus.per_set,
        skipped=dict(corpus.skipped),
    )


class MaxActivatingOptions:
    """`--max_activating.*`: the table `fit` writes after training (`max_activating.md` / `.json`)."""

    def __init__(
        self,
        k: int = 10,
        per_set: int = 64,
        corruptions: tuple[Corruption, ...] = CORRUPTIONS,
        batch_size: int = 64,
    ) -> None:
        """
        Args:
            k: rows at each end of the markdown table (the JSON holds every prompt).
            per_set: prompts per set and corruption (in-distribution and every off-distribution generator);
                0 writes no table.
            corruptions: the corruptions each set is drawn with (`name_swap`, `abc`; both by default).
            batch_size: prompts per forward.
        """
        if k < 1:
            raise ConfigError(f"--max_activating.k must be >= 1 (rows at each end of the table), got {k}.")
        if per_set < 0:
            raise ConfigError(f"--max_activating.per_set must be >= 0 (0: no table), got {per_set}.")
        if batch_size < 1:
            raise ConfigError(f"--max_activating.batch_size must be >= 1, got {batch_size}.")
        bad = [c for c in corruptions if c not in CORRUPTIONS]
        if bad or not corruptions:
            raise ConfigError(
                f"--max_activating.corruptions must list some of {list(CORRUPTIONS)}, got {list(corruptions)}."
            )
        self.k, self.per_set, self.corruptions, self.batch_size = k, per_set, tuple(corruptions), batch_size

    def run(self, fitted: FittedCombination, datamodule: IOIDataModule) -> MaxActivating | None:
        """The table of the fitted combination as it is now on the run's corpus; None when `per_set` is 0."""
        if self.per_set == 0:
            return None
        corpus = build_corpus(datamodule, self.per_set, self.corruptions)
        return max_activating_examples(fitted, corpus, self.k, self.batch_size)

"""One call for notebooks: learn a head combination on given prompts with the same LightningModule, and
score fixed ones (`recovery_of`, from the engine)."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional, TypedDict, TypeVar

import lightning as L
import torch
from jaxtyping import Float, Int
from torch import Tensor

from ioi_superpose.analyses.post_fit import AfterFit, after_fit
from ioi_superpose.combinations.registry import REGISTRY, owners
from ioi_superpose.console import quiet_call
from ioi_superpose.data.answer_metrics import MetricName
from ioi_superpose.data.batch import ContrastBatch, PromptDataset, collate
from ioi_superpose.data.prompt_checks import check_token_tensor, end_positions_for
from ioi_superpose.data.splits import TRAIN_SET
from ioi_superpose.engine.metric import MIN_GAPS, answer_metric, has_gap
from ioi_superpose.engine.runs import check_token_ids, end_logits, recovery_of
from ioi_superpose.errors import ConfigError, SettingError
from ioi_superpose.fitting.settings import (
    BATCHABLE,
    FlatSetting,
    family_settings,
    flat_fields,
    flat_settings,
    settings_doc,
)
from ioi_superpose.models import HookedTransformer, freeze
from ioi_superpose.results.caveats import prune_caveat
from ioi_superpose.results.units import top_heads
from ioi_superpose.tasks.datamodule import check_roles_for_family, task_of
from ioi_superpose.training.non_finite import ZERO_GAP
from ioi_superpose.training.system import HeadSuperposition

__all__ = ["FitSettings", "LearnedCombination", "evaluate_combination", "learn_combination", "learn_combinations",
           "recovery_of"]  # fmt: skip
R = TypeVar("R")


@dataclass
class LearnedCombination:
    coefficients: Tensor
    """The learned weights in the family's shape: [n_layers, n_heads] (scalar; hard_concrete: the
    deterministic gates), [n_layers, n_heads, role] (per_position, roles `combinations.ROLES`) or
    [n_layers, n_heads, source_layer, source_head] (mixing)."""
    recovery: float
    """(patched − corrupted) / (clean − corrupted) of the mean logit difference on the given prompts."""
    clean_logit_diff: float
    corrupted_logit_diff: float
    patched_logit_diff: float
    l0: int
    """Units (heads, or (head, role) pairs) with |weight| above `l0_threshold`."""
    support: list[tuple[int, ...]]
    """Those units: (layer, head), (layer, head, role index) for per_position, (layer, head, source_layer,
    source_head) for mixing."""
    combination: str = "scalar"
    prune: dict | None = None
    """The minimal-set step's record (`pruning.PruneResult.to_dict`) when `prune_target` was given."""
    circuit: dict | None = None
    """With `circuit_criteria`: the learned head set's criteria per ablation (`circuit.CircuitScores.to_dict`)."""
    rotation: dict | None = None
    """rotation only: the dimension count and head loadings (`rotation.RotationCombination.analyse`)."""

    def top_heads(self, k: int = 10) -> list[dict[str, float | int]]:
        """The k heads of largest |α|, as {"layer", "head", "alpha"}."""
        return top_heads(self.coefficients, k=k)


@dataclass(frozen=True)
class FitRun:
    """The API's own settings of a fit, beside the model's (`fitting.settings.flat_settings`)."""

    steps: int = 200
    """Adam steps on the full batch of prompts."""
    seed: int = 0
    """seeds the run; also hard_concrete's gates and rotation's random start (the model's `gate_seed`)."""
    end_positions: Optional[Int[Tensor, " batch"]] = None  # noqa: UP045 (resolved at run time: jaxtyping)
    """[batch] each prompt's END, where the answers are read (right-padded prompts of different lengths:
    `ioi_prompts(..., equal_length=False).end_pos`). None: the last position, and rows that end in padding are
    refused."""
    answer_weights: Optional[Float[Tensor, "batch k"]] = None  # noqa: UP045
    """[batch, k] answer sets: `answer_tokens` [batch, k] hold each prompt's correct and incorrect answers, weighted
    +1/|correct|, −1/|incorrect|, 0 for padding (`data.answer_metrics.set_weights`), so the logit difference is
    mean(correct) − mean(incorrect). None: `answer_tokens` are the pair (correct, incorrect)."""
    task: Optional[str] = None  # noqa: UP045
    """A registered task (`tasks.registry`: ioi, induction, agreement, file …) whose `n_prompts` training prompts
    (seeded by `seed`) are learned on, instead of given tokens (pass none)."""
    task_options: Optional[dict[str, Any]] = None  # noqa: UP045
    """The task's own options (its class's arguments; the file task's `path`)."""
    n_prompts: int = 64
    """With `task`: how many training prompts to draw."""
    tokenizer: Any = None
    """With `task`: the tokenizer its prompts are made for (None: `model.tokenizer`)."""


def _family_settings(batchable: bool) -> tuple[str, ...]:
    """The families' own settings the API takes (every one, as registered: `fitting.settings.family_settings`): those
    of families a batched fit supports (`batchable`), or of the others; `gate_seed` is the API's `seed`."""
    names = [name for name in family_settings() if name != "gate_seed"]
    batched = {name for name in names if any(REGISTRY[family].units_are_heads for family in owners(name))}
    return tuple(name for name in names if (name in batched) == batchable)


SHARED_SETTINGS = ("objective", "direction", "l0_threshold", "l1_warmup_steps", "combination", "prune_target",
                   "ablation", "rest", *_family_settings(batchable=True))  # fmt: skip
"""The model's settings `learn_combination` and `learn_combinations` share (each defined, typed and documented once:
`fitting.settings`; a family added to the registry adds its own); `learn_combinations` takes λ, init, lr and the
seed per member."""
SINGLE_SETTINGS = ("l1", "lr", "init", *_family_settings(batchable=False), "circuit_criteria")
"""The model's settings only `learn_combination` takes (a batched fit supports no subspace family, no criteria)."""


def _api_settings(names: Sequence[str]) -> list[FlatSetting]:
    by_name = {setting.name: setting for setting in flat_settings()}
    return [by_name[name] for name in names]


_SHARED = [*_api_settings(SHARED_SETTINGS), *flat_fields(FitRun)]
FitSettings = TypedDict("FitSettings", {setting.name: setting.annotation for setting in _SHARED}, total=False)  # type: ignore[misc]  # noqa: UP013
FitSettings.__doc__ = (
    "Settings `learn_combination` and `learn_combinations` share: keyword arguments of both.\n\n"
    + settings_doc(_SHARED).removeprefix("Args:\n")
    + "\n\nA family's own settings (`temperature`, `mixing_target`, `rotation_*`) given with another family are "
    "refused."
)
FIT_DEFAULTS: dict[str, Any] = {setting.name: setting.default for setting in _SHARED}
"""The shared settings' defaults (`FitSettings` documents each)."""


def _takes_fit_settings(*own: str) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """`function`'s signature and help list the model's settings `own` and the shared settings as its keyword
    arguments, with their types and defaults (`fitting.settings`), and its docstring ends with their documentation."""

    def decorate(function: Callable[..., R]) -> Callable[..., R]:
        signature = inspect.signature(function)
        kept = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
        settings = [*_api_settings(own), *_SHARED]
        function.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*kept, *(setting.parameter() for setting in settings)]
        )
        # Indented as module-level code's docstring: the joined text dedents as one (`inspect.getdoc`).
        documented = settings_doc(settings).removeprefix("Args:\n")
        function.__doc__ = f"{(function.__doc__ or '').rstrip()}\n\n{documented}\n"
        return function

    return decorate


def _fit_settings(function: str, given: Mapping[str, Any], own: Sequence[str] = ()) -> dict[str, Any]:
    """The settings with their defaults; an unknown keyword is refused as Python refuses one."""
    defaults = {**{setting.name: setting.default for setting in _api_settings(own)}, **FIT_DEFAULTS}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise TypeError(f"{function}() got an unexpected keyword argument {unknown[0]!r}")
    return {**defaults, **given}


@_takes_fit_settings(*SINGLE_SETTINGS)
def learn_combination(
    model: HookedTransformer,
    clean_tokens: Int[Tensor, "batch pos"] | None = None,
    corrupted_tokens: Int[Tensor, "batch pos"] | None = None,
    answer_tokens: Int[Tensor, "batch k"] | None = None,
    **settings: Any,
) -> LearnedCombination:
    """Learn α[layer, head] on these prompts (full batch, `steps` Adam steps) and report its recovery.

    `answer_tokens` are (correct, incorrect) for the clean prompts, read at END (the last position unless
    `end_positions`), or answer sets with `answer_weights`. Or no tokens and `task="induction"` (any registered
    task): its prompts are drawn. The model is frozen in place (eval mode, no gradients) — it is never trained. The
    result's `rotation` holds rotation's dimension count and head loadings; `circuit`, with `circuit_criteria`, the
    learned head set's criteria under every ablation (`analyses.circuit`).
    """
    shared = _fit_settings("learn_combination", settings, SINGLE_SETTINGS)
    member = {name: shared.pop(name) for name in SINGLE_SETTINGS}
    # `seed` seeds hard_concrete's gates and rotation's random start; the other families draw nothing.
    member["gate_seed"] = shared["seed"] if shared["combination"] in owners("gate_seed") else None
    if member["rotation_layers"] is not None:
        member["rotation_layers"] = list(member["rotation_layers"])
    return _learn(model, (clean_tokens, corrupted_tokens, answer_tokens), [member], lambda k: API_NAMES, shared)[0]


@_takes_fit_settings()
def learn_combinations(
    model: HookedTransformer,
    clean_tokens: Int[Tensor, "batch pos"] | None = None,
    corrupted_tokens: Int[Tensor, "batch pos"] | None = None,
    answer_tokens: Int[Tensor, "batch k"] | None = None,
    members: Sequence[Mapping[str, float]] = (),
    *,
    max_rows: int | None = None,
    **settings: Any,
) -> list[LearnedCombination]:
    """`learn_combination` for K settings at once, in one batched forward of K × batch rows per step
    (`HeadSuperposition.batched`). `members`: K dicts of `l1`, `init`, `lr`, `gate_seed` (defaults: 1e-3,
    1.0, 0.05, `seed`); member k's result equals `learn_combination(..., **members[k])` (with
    `seed=gate_seed`) up to float rounding. `max_rows` caps the rows of one forward (None: all)."""
    if not members:
        raise ConfigError("members must hold at least one member's settings (a dict of l1, init, lr, gate_seed).")
    for k, member in enumerate(members):
        unknown = sorted(set(member) - set(BATCHABLE))
        if unknown:
            raise ConfigError(f"members[{k}] sets {unknown}; a member may only set {list(BATCHABLE)}.")
    shared = _fit_settings("learn_combinations", settings)
    defaults = {"l1": 1e-3, "init": 1.0, "lr": 0.05}
    if shared["combination"] in owners("gate_seed"):
        defaults["gate_seed"] = shared["seed"]  # `seed` seeds the family's own draws (a batched fit: hard_concrete)
    tokens = (clean_tokens, corrupted_tokens, answer_tokens)
    return _learn(model, tokens, [{**defaults, **member} for member in members],
                  lambda k: _member_names(k, members[k]), shared, batched=True, max_rows=max_rows)  # fmt: skip


def _learn(
    model: HookedTransformer,
    tokens: tuple[Tensor | None, Tensor | None, Tensor | None],
    members: Sequence[Mapping[str, Any]],
    names: Callable[[int], Mapping[str, str] | Callable[[str], str]],
    shared: dict[str, Any],
    batched: bool = False,
    max_rows: int | None = None,
) -> list[LearnedCombination]:
    """Fit one module per member (`batched`: all in one `HeadSuperposition.batched` fit; otherwise the one member
    alone) on the checked prompts, and evaluate each. `names(k)`: how member k's errors name its settings."""
    settings = dict(shared)
    steps, seed, end_positions = settings.pop("steps"), settings.pop("seed"), settings.pop("end_positions")
    answer_weights, task = settings.pop("answer_weights"), settings.pop("task")
    drawn = (settings.pop("task_options"), settings.pop("n_prompts"), settings.pop("tokenizer"))
    metric: MetricName = "logit_diff"  # given tokens are measured by the logit difference; a task by its own metric
    if task is not None:
        tokens, answer_weights, end_positions, metric = _task_tokens(model, task, *drawn, seed, tokens,
                                                                     settings["combination"])  # fmt: skip
    prompts, loader = _prompts(model, *tokens, steps, seed, end_positions, answer_weights, metric)
    systems = [_system(model, len(prompts), names(k), **settings, **member) for k, member in enumerate(members)]
    module = HeadSuperposition.batched(systems, max_rows=max_rows) if batched else systems[0]
    with quiet_call():  # no GPU/TPU or cache-size lines per call in a notebook
        _trainer(model, steps).fit(module, train_dataloaders=loader)
    results = []
    for system in systems:
        system.to(_device(model))
        # The work that follows a fit (pruning, criteria, rotation's count) on these prompts, as one batch.
        after = after_fit(system.fitted(), prompts, batch_size=len(prompts))
        results.append(_warn_shortfall(evaluate_combination(system, prompts, after)))
    return results


def _device(model: HookedTransformer) -> torch.device:
    return next(model.parameters()).device


def _prompts(
    model: HookedTransformer,
    clean_tokens: Tensor,
    corrupted_tokens: Tensor,
    answer_tokens: Tensor,
    steps: int,
    seed: int,
    end_positions: Tensor | None = None,
    answer_weights: Tensor | None = None,
    metric: MetricName = "logit_diff",
) -> tuple[ContrastBatch, torch.utils.data.DataLoader]:
    """Checked prompts and their one full-batch loader; seeds and freezes as every API fit does."""
    if clean_tokens is None or corrupted_tokens is None or answer_tokens is None:
        raise ConfigError("Give clean_tokens, corrupted_tokens and answer_tokens, or a task (task='induction').")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"steps must be an integer >= 1 (optimisation steps), got {steps!r}.")
    for name, tokens in (
        ("clean_tokens", clean_tokens),
        ("corrupted_tokens", corrupted_tokens),
        ("answer_tokens", answer_tokens),
    ):
        check_token_tensor(tokens, name)
        check_token_ids(model, tokens, name, prompts=name != "answer_tokens")
    if len(clean_tokens) == 0:
        raise ConfigError("clean_tokens holds no prompt (batch size 0); pass at least one prompt pair.")
    # (Answer sets are checked by `ContrastBatch`; a pair with one token twice is refused or warned about here.)
    pairs = answer_weights is None
    same = (answer_tokens[:, 0] == answer_tokens[:, 1]).nonzero().flatten().tolist() if pairs else []
    message = (
        f"answer_tokens rows {same[:8]}{' …' if len(same) > 8 else ''} hold the same token as correct and incorrect "
        "answer: their logit difference is 0 on every run. Each row must be (correct, incorrect), e.g. (IO, S)."
    )
    if len(same) == len(answer_tokens):  # no row can show an effect: recovery is 0/0
        raise ConfigError(message)
    if same:  # these rows only dilute the mean logit difference
        warnings.warn(message, stacklevel=4)  # _prompts ← _learn ← learn_combination(s) ← the caller
    ends = end_positions_for(model, clean_tokens, corrupted_tokens, end_positions)
    prompts = ContrastBatch(
        clean_tokens=clean_tokens.cpu(), corrupted_tokens=corrupted_tokens.cpu(), answer_tokens=answer_tokens.cpu(),
        end_pos=ends, index=torch.arange(len(clean_tokens)),
        answer_weights=None if answer_weights is None else answer_weights.float().cpu(), metric=metric,
    )  # fmt: skip
    L.seed_everything(seed, verbose=False)
    freeze(model)
    check_gap(model, prompts)
    loader = torch.utils.data.DataLoader(PromptDataset(prompts), batch_size=len(prompts), collate_fn=collate)
    return prompts, loader


def _task_tokens(
    model: HookedTransformer,
    name: str,
    options: dict[str, Any] | None,
    n_prompts: int,
    tokenizer: Any,
    seed: int,
    tokens: tuple[Tensor | None, ...],
    combination: str,
) -> tuple[tuple[Tensor, Tensor, Tensor], Tensor | None, Tensor, MetricName]:
    """The tokens, answer weights, END and metric of `n_prompts` training prompts of the task `name` (seeded by
    `seed`)."""
    if any(t is not None for t in tokens):
        raise ConfigError(f"task={name!r} draws its own prompts: pass no clean, corrupted or answer tokens with it.")
    options = dict(options or {})
    task = task_of(name, options.pop("path", None), options.pop("test_path", None), options)
    # (An unknown family is refused by the module, naming it, once the prompts are drawn.)
    check_roles_for_family(combination, getattr(REGISTRY.get(combination), "reads_roles", False), task)
    encoder = tokenizer if tokenizer is not None else model.tokenizer
    if encoder is None:
        raise ConfigError(f"task={name!r} needs the model's tokenizer: pass tokenizer= (e.g. ioi_superpose.models"
                          ".load_tokenizer('checkpoints/toy_ioi.pt') for a toy model).")  # fmt: skip
    batch = task.splits(encoder, {TRAIN_SET: n_prompts}, seed)[TRAIN_SET].batch
    tokens = (batch.clean_tokens, batch.corrupted_tokens, batch.answer_tokens)
    return tokens, batch.answer_weights, batch.end_pos, batch.metric


API_NAMES: dict[str, str] = {"gate_seed": "seed"}
"""Settings `learn_combination` takes under another name than the config field (`fitting/settings.py`)."""


def _member_names(k: int, member: Mapping[str, float]) -> Callable[[str], str]:
    """How `learn_combinations` names a setting in an error: `members[k]['l1']` when member k set it."""
    return lambda name: f"members[{k}][{name!r}]" if name in member else API_NAMES.get(name, name)


def _system(
    model: HookedTransformer, n_prompts: int, names: Mapping[str, str] | Callable[[str], str], **settings: Any
) -> HeadSuperposition:
    """The module of these settings; a `SettingError` names each setting as the API's caller passed it."""
    rename = names if callable(names) else (lambda name: names.get(name, name))
    try:
        system = HeadSuperposition(
            model_name=model.cfg.model_name, prune_prompts=n_prompts, preloaded_model=model, **settings
        )
    except SettingError as error:
        raise error.named(rename) from None
    system.api_arguments = True  # messages raised during the fit (a non-finite loss) name API arguments
    return system


@torch.no_grad()
def check_gap(model: HookedTransformer, prompts: ContrastBatch) -> None:
    """Recovery is a ratio over the clean − corrupted gap of the prompts' mean metric (`prompts.metric`): refuse
    prompts without one (the objective would be 0/0), warn when it is below `engine.metric.MIN_GAPS`."""
    weights, metric = prompts.answer_weights, prompts.metric
    clean, corrupted = (
        answer_metric(end_logits(model, tokens, prompts.end_pos, prompts.answer_tokens, metric), weights, metric).mean()
        for tokens in (prompts.clean_tokens, prompts.corrupted_tokens)
    )
    gap = float(clean - corrupted)
    what = "mean logit difference" if metric == "logit_diff" else f"mean {metric}"
    if abs(gap) < ZERO_GAP:
        raise ConfigError(
            f"The clean and corrupted prompts give the same {what} ({float(clean):.4g}; gap "
            f"{gap:.3g}): recovery, a ratio over that gap, is undefined. The corrupted prompts must change the "
            "answer the model prefers (e.g. swap or replace the names: ioi_prompts(..., corruption='abc')), and "
            "answer_tokens must be the clean prompt's (correct, incorrect)."
        )
    if not has_gap(float(clean), float(corrupted), metric):
        warnings.warn(
            f"The clean − corrupted gap of the {what} is only {gap:.3g} (< {MIN_GAPS[metric]}): recovery on "
            "these prompts is mostly noise.",
            stacklevel=3,
        )


def _warn_shortfall(result: LearnedCombination) -> LearnedCombination:
    shortfall = prune_caveat(result.prune, option="prune_target")
    if shortfall:
        warnings.warn(shortfall.removeprefix("warning: "), stacklevel=4)  # ← _learn ← learn_combination(s) ← caller
    return result


def _trainer(model: HookedTransformer, steps: int) -> L.Trainer:
    device = _device(model)
    return L.Trainer(
        max_steps=steps,
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=[device.index or 0] if device.type == "cuda" else 1,  # the model's own GPU
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
    )


@torch.no_grad()
def evaluate_combination(
    system: HeadSuperposition, prompts: ContrastBatch, after: AfterFit | None = None
) -> LearnedCombination:
    """Recovery and logit differences of `system`'s current α on `prompts` (one batch). `after`: what ran after its
    fit (`analyses.post_fit.after_fit`: the minimal-set step, criteria, rotation's count), recorded in the result."""
    system.eval()
    fitted = system.fitted()
    prompts = prompts.to(system.device)
    reference = fitted.reference(prompts)
    patched = fitted.answer_logits(prompts, reference)
    clean, corrupted = reference.clean_and_corrupted()
    after = AfterFit() if after is None else after
    return LearnedCombination(
        coefficients=fitted.combination.coefficients.detach().cpu().clone(),
        recovery=float(reference.recovery(patched)),
        clean_logit_diff=float(reference.measure(clean).mean()),
        corrupted_logit_diff=float(reference.measure(corrupted).mean()),
        patched_logit_diff=float(reference.measure(patched).mean()),
        l0=fitted.combination.l0(fitted.l0_threshold),
        support=fitted.combination.support(fitted.l0_threshold),
        combination=fitted.family,
        prune=None if after.prune is None else after.prune.to_dict(),
        rotation=after.rotation,
        circuit=after.circuit,
    )

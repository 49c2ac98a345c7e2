"""One call for notebooks: learn a head combination on given prompts with the same LightningModule, and
score fixed ones (`recovery_of`, from the engine)."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict, TypeVar, Unpack

import lightning as L
import torch
from jaxtyping import Int
from torch import Tensor

from ioi_superpose.console import quiet_call
from ioi_superpose.data.batch import ContrastBatch, PromptDataset, collate
from ioi_superpose.data.prompt_checks import check_token_tensor, end_positions_for
from ioi_superpose.engine.rest import Rest
from ioi_superpose.engine.runs import Direction, check_token_ids, end_logits, logit_diff, recovery_of
from ioi_superpose.errors import ConfigError, SettingError
from ioi_superpose.models import HookedTransformer, freeze
from ioi_superpose.results.caveats import prune_shortfall
from ioi_superpose.results.summary import MIN_GAP, top_heads
from ioi_superpose.training.config import BATCHABLE
from ioi_superpose.training.non_finite import ZERO_GAP
from ioi_superpose.training.objectives import ObjectiveName
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


class FitSettings(TypedDict, total=False):
    """Settings `learn_combination` and `learn_combinations` share: keyword arguments of both.

    objective: `logit_diff` (default) drives the normalised effect of the patch to 1, `kl` matches the source
        run's next-token distribution at END, `maximize` pushes the effect as high as it goes
        (`ioi_superpose.training.objectives`).
    direction: `denoising` (default) runs the corrupted prompts and patches in the clean ones' head outputs
        (heads sufficient for the behaviour); `noising` the reverse (heads necessary for it).
    steps: Adam steps on the full batch of prompts (default 200).
    bounded: keep every weight in [0, 1], projected after each step (default True).
    seed: seeds the run; also hard_concrete's gates and rotation's random start (default 0).
    l0_threshold: a unit counts towards L0 and the support when |weight| exceeds this (default 0.05).
    l1_warmup_steps: λ rises linearly from 0 to `l1` over this many steps (default 0: no warm-up).
    combination: the family: `scalar` (default) α[layer, head]; `per_position` α[layer, head, role] — here only
        the END/other roles, the prompts being plain token rows; `hard_concrete` a stochastic gate per head,
        seeded by `seed`; `mixing` a map across heads (`mixing_target`); `rotation` (`learn_combination` only)
        a learned orthogonal basis of each of `rotation_layers`' z with a mask.
    prune_target: R: end with the minimal-set step on these prompts (kept units at weight 1, effect ≥ R;
        `ioi_superpose.training.pruning`); a target it cannot reach is said in a warning and in
        `prune["reached"]` (default None: no step).
    temperature: hard_concrete only: the gates' temperature β (default None: 2/3).
    mixing_target: mixing only: patch only this layer's heads, each receiving from every head of this and
        earlier layers (default None: every layer receives from itself and all earlier layers).
    ablation: noising only: the patch source, `corrupted` (default), `resample`, `mean` or `zero`
        (`ioi_superpose.results.circuit`).
    end_positions: [batch] each prompt's END, where the answers are read (right-padded prompts of different
        lengths: `ioi_prompts(..., equal_length=False).end_pos`). Default None: the last position, and rows that
        end in padding are refused.
    rest: `free` (default; a cut: heads outside the set recompute) or `frozen` (a circuit: they keep their
        base-run z; `ioi_superpose.engine.rest`).

    A family's own settings (`temperature`, `mixing_target`, `rotation_*`) given with another family are refused.
    """

    objective: ObjectiveName
    direction: Direction
    steps: int
    bounded: bool
    seed: int
    l0_threshold: float
    l1_warmup_steps: int
    combination: str
    prune_target: float | None
    temperature: float | None
    mixing_target: int | None
    ablation: str
    end_positions: Int[Tensor, " batch"] | None
    rest: Rest


FIT_DEFAULTS: FitSettings = {
    "objective": "logit_diff", "direction": "denoising", "steps": 200, "bounded": True, "seed": 0,
    "l0_threshold": 0.05, "l1_warmup_steps": 0, "combination": "scalar", "prune_target": None, "temperature": None,
    "mixing_target": None, "ablation": "corrupted", "end_positions": None, "rest": "free",
}  # fmt: skip
"""The shared settings' defaults (`FitSettings` documents each)."""


def _takes_fit_settings(function: Callable[..., R]) -> Callable[..., R]:
    """`function`'s signature and help list the shared settings as its own keyword arguments, with their types
    and defaults, and its docstring ends with their documentation (`FitSettings`)."""
    signature = inspect.signature(function)
    own = [parameter for parameter in signature.parameters.values() if parameter.kind is not parameter.VAR_KEYWORD]
    # TypedDict keeps this module's string annotations as ForwardRefs: shown as their text, like the others.
    shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=FIT_DEFAULTS[name],
                                annotation=getattr(kind, "__forward_arg__", kind))
              for name, kind in FitSettings.__annotations__.items()]  # fmt: skip
    function.__signature__ = signature.replace(parameters=[*own, *shared])  # type: ignore[attr-defined]
    # Both docstrings are indented as module-level code's: the joined text dedents as one (`inspect.getdoc`).
    function.__doc__ = f"{(function.__doc__ or '').rstrip()}\n\n    {(FitSettings.__doc__ or '').strip()}\n"
    return function


def _fit_settings(function: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The shared settings with their defaults; an unknown keyword is refused as Python refuses one."""
    unknown = sorted(set(given) - set(FIT_DEFAULTS))
    if unknown:
        raise TypeError(f"{function}() got an unexpected keyword argument {unknown[0]!r}")
    return {**FIT_DEFAULTS, **given}


@_takes_fit_settings
def learn_combination(
    model: HookedTransformer,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupted_tokens: Int[Tensor, "batch pos"],
    answer_tokens: Int[Tensor, "batch 2"],
    *,
    l1: float = 1e-3,
    lr: float = 0.05,
    init: float = 1.0,
    rotation_layers: Sequence[int] | None = None,
    rotation_target: float | None = None,
    rotation_joint: bool | None = None,
    circuit_criteria: bool = False,
    **settings: Unpack[FitSettings],
) -> LearnedCombination:
    """Learn α[layer, head] on these prompts (full batch, `steps` Adam steps) and report its recovery.

    `answer_tokens` are (correct, incorrect) for the clean prompts, read at END (the last position unless
    `end_positions`). The model is frozen in place (eval mode, no gradients) — it is never trained.

    l1: weight λ of the family's sparsity penalty (L1; hard_concrete: expected L0; rotation: Σ mask).
    lr: Adam learning rate.
    init: every weight's initial value (1.0 starts from the full source run and prunes).
    rotation_layers: rotation only: the layers with a learned rotation (None: all).
    rotation_target: rotation only: the effect its dimension count is read for (the result's `rotation`
        holds that count and the head loadings).
    rotation_joint: rotation only: one R over all of `rotation_layers`, patched from fixed activations
        (`combinations/rotation_joint.py` says why that is not a causal patch of the later layers).
    circuit_criteria: score the learned head set with `circuit.circuit_scores` under every ablation (`circuit`).
    """
    shared = _fit_settings("learn_combination", settings)
    # `seed` seeds hard_concrete's gates and rotation's random start; the other families draw nothing.
    gate_seed = shared["seed"] if shared["combination"] in ("hard_concrete", "rotation") else None
    member = dict(l1=l1, lr=lr, init=init, gate_seed=gate_seed, circuit_criteria=circuit_criteria,
                  rotation_layers=None if rotation_layers is None else list(rotation_layers),
                  rotation_target=rotation_target, rotation_joint=rotation_joint)  # fmt: skip
    return _learn(model, (clean_tokens, corrupted_tokens, answer_tokens), [member], lambda k: API_NAMES, shared)[0]


@_takes_fit_settings
def learn_combinations(
    model: HookedTransformer,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupted_tokens: Int[Tensor, "batch pos"],
    answer_tokens: Int[Tensor, "batch 2"],
    members: Sequence[Mapping[str, float]],
    *,
    max_rows: int | None = None,
    **settings: Unpack[FitSettings],
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
    if shared["combination"] == "hard_concrete":
        defaults["gate_seed"] = shared["seed"]  # `seed` seeds the gates of hard_concrete only
    tokens = (clean_tokens, corrupted_tokens, answer_tokens)
    return _learn(model, tokens, [{**defaults, **member} for member in members],
                  lambda k: _member_names(k, members[k]), shared, batched=True, max_rows=max_rows)  # fmt: skip


def _learn(
    model: HookedTransformer,
    tokens: tuple[Tensor, Tensor, Tensor],
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
    prompts, loader = _prompts(model, *tokens, steps, seed, end_positions)
    systems = [_system(model, len(prompts), names(k), **settings, **member) for k, member in enumerate(members)]
    module = HeadSuperposition.batched(systems, max_rows=max_rows) if batched else systems[0]
    with quiet_call():  # no GPU/TPU or cache-size lines per call in a notebook
        _trainer(model, steps).fit(module, train_dataloaders=loader)
    return [_warn_shortfall(evaluate_combination(system.to(_device(model)), prompts)) for system in systems]


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
) -> tuple[ContrastBatch, torch.utils.data.DataLoader]:
    """Checked prompts and their one full-batch loader; seeds and freezes as every API fit does."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"steps must be an integer >= 1 (optimisation steps), got {steps!r}.")
    for name, tokens in (
        ("clean_tokens", clean_tokens),
        ("corrupted_tokens", corrupted_tokens),
        ("answer_tokens", answer_tokens),
    ):
        check_token_tensor(tokens, name)
        check_token_ids(model, tokens, name)
    if len(clean_tokens) == 0:
        raise ConfigError("clean_tokens holds no prompt (batch size 0); pass at least one prompt pair.")
    same = (answer_tokens[:, 0] == answer_tokens[:, 1]).nonzero().flatten().tolist()
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
    )  # fmt: skip
    L.seed_everything(seed, verbose=False)
    freeze(model)
    check_gap(model, prompts)
    loader = torch.utils.data.DataLoader(PromptDataset(prompts), batch_size=len(prompts), collate_fn=collate)
    return prompts, loader


API_NAMES: dict[str, str] = {"gate_seed": "seed"}
"""Settings `learn_combination` takes under another name than the config field (`training/config.py`)."""


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
    """Recovery is a ratio over the clean − corrupted gap of the mean logit difference: refuse prompts
    without one (the objective would be 0/0), warn when it is below `summary.MIN_GAP`."""
    clean = logit_diff(end_logits(model, prompts.clean_tokens, prompts.end_pos, prompts.answer_tokens)).mean()
    corrupted = logit_diff(end_logits(model, prompts.corrupted_tokens, prompts.end_pos, prompts.answer_tokens)).mean()
    gap = float(clean - corrupted)
    if abs(gap) < ZERO_GAP:
        raise ConfigError(
            f"The clean and corrupted prompts give the same mean logit difference ({float(clean):.4g}; gap "
            f"{gap:.3g}): recovery, a ratio over that gap, is undefined. The corrupted prompts must change the "
            "answer the model prefers (e.g. swap or replace the names: ioi_prompts(..., corruption='abc')), and "
            "answer_tokens must be the clean prompt's (correct, incorrect)."
        )
    if abs(gap) < MIN_GAP:
        warnings.warn(
            f"The clean − corrupted gap of the mean logit difference is only {gap:.3g} (< {MIN_GAP}): recovery on "
            "these prompts is mostly noise.",
            stacklevel=3,
        )


def _warn_shortfall(result: LearnedCombination) -> LearnedCombination:
    shortfall = prune_shortfall(result.prune, option="prune_target")
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
def evaluate_combination(system: HeadSuperposition, prompts: ContrastBatch) -> LearnedCombination:
    """Recovery and logit differences of `system`'s current α on `prompts` (one batch)."""
    system.eval()
    prompts = prompts.to(system.device)
    reference = system.reference(prompts)
    patched = system.loss_terms(prompts, reference)["answer_logits"]
    clean, corrupted = reference.clean_and_corrupted()
    threshold = system.hparams.l0_threshold
    return LearnedCombination(
        coefficients=system.combination.coefficients.detach().cpu().clone(),
        recovery=float(reference.recovery(patched)),
        clean_logit_diff=float(logit_diff(clean).mean()),
        corrupted_logit_diff=float(logit_diff(corrupted).mean()),
        patched_logit_diff=float(logit_diff(patched).mean()),
        l0=system.combination.l0(threshold),
        support=system.combination.support(threshold),
        combination=system.hparams.get("combination", "scalar"),
        prune=None if system.prune_result is None else system.prune_result.to_dict(),
        rotation=system.rotation_result,
        circuit=system.circuit_result,
    )

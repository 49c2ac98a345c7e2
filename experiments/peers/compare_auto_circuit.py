"""Our EAP-IG and head-level ACDC (`ioi_superpose.baselines.circuit`) against auto-circuit 1.0.1.

    bash experiments/peers/setup.sh                      # once: experiments/peers/.venv with auto-circuit
    experiments/peers/.venv/bin/python experiments/peers/compare_auto_circuit.py > experiments/reports/peers/auto_circuit.md

What is compared (auto-circuit's node-level graph: `patchable_model(model, factorized=False)`; its nodes are
points of the residual stream — after each attention layer (`resid_mid`, models with MLPs only) and after each
block (`resid_post`) — whose incoming edges come from the sublayer's heads (`hook_result`) or MLP and from the
stream below it; all positions at once, answers read at the last position):

- EAP-IG. auto-circuit's `mask_gradient_prune_scores(grad_function="logit", answer_function="avg_diff",
  integrated_grad_samples=k)`, batch.clean = our base tokens, batch.corrupt = our source tokens, against our
  `eap_ig_scores(..., interpolation="activations", steps=k + 1, endpoint=True, normalise=False)` times
  −(k + 1) (its loss is −M and it sums over its k + 1 mask values). Only the head → stream edges are
  heads; the residual and MLP edges have no head counterpart and are not compared. Our Hanna et al. interpolation
  (`interpolation="inputs"`) has no auto-circuit counterpart: its distance to auto-circuit is printed too.
- ACDC. auto-circuit's `acdc_prune_scores(tao_bases=[1], tao_exps=[e])` (KL, its default), batch.clean =
  our source tokens, batch.corrupt = our base tokens, visiting ONLY the head edges (the residual edges stay
  in the circuit) in a fixed order — by destination layer descending (its own sort), then head index
  descending (`shims.fixed_edge_order`) — against our `acdc(..., tau=10**e)` with `backward_order`. Removing
  the edge head → stream in auto-circuit sets that head's output to its corrupt-run value while every
  other head recomputes, which is our circuit notion; the kept sets are compared.
"""

from __future__ import annotations

import contextlib
import copy
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import shims  # noqa: F401  (before auto_circuit)
import torch
from auto_circuit.data import PromptDataLoader, PromptDataset
from auto_circuit.prune_algos.ACDC import acdc_prune_scores
from auto_circuit.prune_algos.mask_gradient import mask_gradient_prune_scores
from auto_circuit.utils.graph_utils import patchable_model

from ioi_superpose.baselines.circuit import acdc, eap_ig_scores
from ioi_superpose.data.batch import ContrastBatch
from ioi_superpose.data.datamodule import IOIDataModule
from ioi_superpose.engine.vocabulary import base_and_source
from ioi_superpose.groundtruth.planted import composition_case, decoy_case
from ioi_superpose.models import HookedTransformer, HookedTransformerConfig, freeze, load_frozen_model

REPO = Path(__file__).resolve().parents[2]
N_PROMPTS = 32
IG_SAMPLES = 50  # auto-circuit's "Integrated Edge Gradients (Logit Grad)" default
TAU_EXPS = (-3, -2, -1, 0)
DIRECTIONS = ("denoising", "noising")


def toy_ioi() -> tuple[str, torch.nn.Module, ContrastBatch]:
    """The shipped toy IOI model and the first N_PROMPTS validation prompts of the main job's data
    (experiments/toy_ioi.yaml) that are 16 tokens long: auto-circuit reads the answer at the last position,
    so the prompts must share one length."""
    path = str(REPO / "checkpoints" / "toy_ioi.pt")
    data = IOIDataModule(model_name=path, corruption="name_swap", n_train=64, n_val=256, n_test=16,
                         held_out_name_fraction=0.2, seed=0)  # fmt: skip
    data.setup("fit")
    val = data.splits["val"]
    rows = (val.end_pos == 15).nonzero().flatten()[:N_PROMPTS]
    batch = ContrastBatch.from_tokens(val.clean_tokens[rows, :16], val.corrupted_tokens[rows, :16],
                                      val.answer_tokens[rows])  # fmt: skip
    with contextlib.redirect_stdout(sys.stderr):  # TransformerLens prints "Moving model to device" on load
        model = load_frozen_model(path)
    return "toy IOI (checkpoints/toy_ioi.pt)", model, batch


def planted(make) -> tuple[str, torch.nn.Module, ContrastBatch]:
    case = make()
    p = case.prompts(N_PROMPTS, seed=0)
    return f"planted `{case.name}`", case.model, ContrastBatch.from_tokens(p.clean_tokens, p.corrupted_tokens,
                                                                           p.answer_tokens)  # fmt: skip


def random_mlp_model() -> tuple[str, torch.nn.Module, ContrastBatch]:
    """A random 2-layer model WITH MLPs and LayerNorm (GPT-2's block structure; tests/conftest.py's recipe):
    auto-circuit's node graph then has a stream node after each attention layer as well (`resid_mid`)."""
    cfg = HookedTransformerConfig(n_layers=2, n_heads=4, d_model=32, d_head=8, d_mlp=64, d_vocab=50, n_ctx=32,
                                  act_fn="gelu", normalization_type="LN", seed=0)  # fmt: skip
    model = HookedTransformer(cfg, move_to_device=False)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim > 1:
                parameter.mul_(3.0)
    generator = torch.Generator().manual_seed(0)
    clean = torch.randint(0, 50, (N_PROMPTS, 8), generator=generator)
    corrupted = torch.randint(0, 50, (N_PROMPTS, 8), generator=generator)
    corrupted[:, -1] = clean[:, -1]
    answers = torch.randint(0, 50, (N_PROMPTS, 2), generator=generator)
    return "random 2-layer model with MLPs", freeze(model), ContrastBatch.from_tokens(clean, corrupted, answers)


def loader(clean: torch.Tensor, corrupt: torch.Tensor, answers: torch.Tensor) -> PromptDataLoader:
    dataset = PromptDataset(list(clean), list(corrupt), [a[:1] for a in answers], [a[1:] for a in answers])
    return PromptDataLoader(dataset, seq_len=None, diverge_idx=0, batch_size=len(clean), shuffle=False)


def their_model(model: torch.nn.Module):
    """A patchable copy (auto-circuit rewrites the model in place); per-head outputs need hook_result."""
    copied = copy.deepcopy(model)
    copied.set_use_attn_result(True)
    return patchable_model(copied, factorized=False, slice_output="last_seq", seq_len=None, separate_qkv=False,
                           device=torch.device("cpu"))  # fmt: skip


def head_edges(ac_model) -> list:
    return [e for e in ac_model.edges if e.src.head_idx is not None]


def head_grid(ac_model, values: dict, shape: tuple[int, int]) -> torch.Tensor:
    out = torch.full(shape, float("nan"))
    for edge in head_edges(ac_model):
        out[int(edge.src.module_name.split(".")[1]), edge.src.head_idx] = float(values[edge])
    return out


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def compare_case(name: str, model, batch: ContrastBatch) -> list[str]:
    shape = (model.cfg.n_layers, model.cfg.n_heads)
    rows = []
    for direction in DIRECTIONS:
        base, source = base_and_source(batch.clean_tokens, batch.corrupted_tokens, direction)
        # EAP-IG: auto-circuit's clean batch is the run the gradients start from (our base).
        ac = their_model(model)
        theirs, t_theirs = timed(lambda: mask_gradient_prune_scores(
            ac, loader(base, source, batch.answer_tokens), None, grad_function="logit", answer_function="avg_diff",
            integrated_grad_samples=IG_SAMPLES))  # fmt: skip
        theirs = head_grid(ac, {e: e.prune_score(theirs) for e in head_edges(ac)}, shape)
        ours, t_ours = timed(
            lambda: eap_ig_scores(
                model,
                batch,
                direction,
                steps=IG_SAMPLES + 1,
                interpolation="activations",
                endpoint=True,
                normalise=False,
            )
        )
        ours = -(IG_SAMPLES + 1) * ours
        inputs, t_inputs = timed(
            lambda: eap_ig_scores(
                model, batch, direction, steps=IG_SAMPLES + 1, interpolation="inputs", endpoint=True, normalise=False
            )
        )
        inputs = -(IG_SAMPLES + 1) * inputs
        scale, delta = float(theirs.abs().max()), float((ours - theirs).abs().max())
        rows.append(
            f"| {name} | {direction} | EAP-IG, k = {IG_SAMPLES} | max abs Δ {delta:.1e} (largest score {scale:.3g}; "
            f"per point {delta / (IG_SAMPLES + 1):.1e}, relative {delta / scale:.0e}); inputs interpolation: "
            f"max abs Δ {float((inputs - theirs).abs().max()):.3g} | {t_ours:.2f} s (inputs: {t_inputs:.2f} s) "
            f"| {t_theirs:.2f} s |"
        )
        # ACDC: auto-circuit's clean batch is the input the circuit runs on (our source).
        for exp in TAU_EXPS:
            tau = 1 * 10**exp
            ac = their_model(model)
            with shims.fixed_edge_order(ac, key=lambda e: -e.src.head_idx, keep=lambda e: e.src.head_idx is not None):
                scores, t_theirs = timed(lambda: acdc_prune_scores(
                    ac, loader(source, base, batch.answer_tokens), None, tao_exps=[exp], tao_bases=[1]))  # fmt: skip
            their_kept = head_grid(ac, {e: e.prune_score(scores) == torch.inf for e in head_edges(ac)}, shape).bool()
            result, t_ours = timed(lambda: acdc(model, batch, direction, tau=tau))
            same = torch.equal(result.kept, their_kept)
            heads = ", ".join(f"{l}.{h}" for l, h in result.heads) or "none"
            their_heads = ", ".join(f"{l}.{h}" for l, h in their_kept.nonzero().tolist()) or "none"
            rows.append(
                f"| {name} | {direction} | ACDC, τ = {tau:g} | {'equal' if same else 'DIFFERENT'}: ours {{{heads}}}"
                + ("" if same else f", theirs {{{their_heads}}}")
                + f" | {t_ours:.2f} s | {t_theirs:.2f} s |"
            )
    return rows


ORDER_PROBE = """
import shims, torch
from auto_circuit.utils.graph_utils import patchable_model
from ioi_superpose.groundtruth.planted import composition_case
m = composition_case().model; m.set_use_attn_result(True)
ac = patchable_model(m, factorized=False, slice_output="last_seq", seq_len=None, separate_qkv=False)
print(" ".join(e.name for e in sorted(ac.edges, key=lambda x: x.dest.layer, reverse=True)))
"""


def default_orders() -> list[str]:
    """auto-circuit's own ACDC order in three fresh processes (same PYTHONHASHSEED=0 in each)."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    here = Path(__file__).resolve().parent
    return [subprocess.run([sys.executable, "-c", ORDER_PROBE], env=env, cwd=here, capture_output=True, text=True,
                           check=True).stdout.strip() for _ in range(3)]  # fmt: skip


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    from importlib.metadata import version

    rows = []
    for name, model, batch in (toy_ioi(), planted(composition_case), planted(decoy_case), random_mlp_model()):
        rows += compare_case(name, model, batch)
    orders = default_orders()
    print("# Peer check: EAP-IG and head-level ACDC against auto-circuit 1.0.1\n")
    print(__doc__.split("What is compared", 1)[1].join(["What is compared", ""]).strip() + "\n")
    print(
        f"`experiments/peers/.venv/bin/python experiments/peers/compare_auto_circuit.py` (Python "
        f"{platform.python_version()}, torch {version('torch')}, transformer_lens {version('transformer_lens')}, "
        f"auto-circuit {version('auto-circuit')}; one CPU thread; {N_PROMPTS} prompts per case, "
        "one batch). EAP-IG rows: largest |ours − theirs| over "
        "heads in auto-circuit's units (−Σ over its k + 1 mask values of ∂ mean logit diff / ∂ mask), then divided "
        "by k + 1 (our mean over points, `normalise=False`) and by the largest score; ACDC rows: "
        "the kept head sets. Times: ours | theirs (theirs includes its own ablation caching, not building the "
        "patchable model).\n"
    )
    print("| case | direction | method | agreement | ours | auto-circuit |")
    print("| --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    print(
        "\nauto-circuit's own ACDC order (`sorted(model.edges, key=dest.layer, reverse=True)` over a set), planted "
        "`composition`, three fresh processes with PYTHONHASHSEED=0:\n"
    )
    for order in orders:
        print(f"- {order}")
    print(
        f"\nSame in all three: {len(set(orders)) == 1}. The comparison above does not depend on it: it passes "
        "auto-circuit a sorted list (`shims.fixed_edge_order`)."
    )


if __name__ == "__main__":
    main()

"""auto-circuit 1.0.1's EAP, EAP-IG, ACDC and subnetwork probing on the trained models and prompts of
experiments/field_comparison.py (which reads the JSON this writes and takes every set from it):

    bash experiments/peers/setup.sh     # once
    experiments/peers/.venv/bin/python experiments/peers/field_peers.py [--checkpoints ...] [--tasks ...]

On auto-circuit's node-level graph (`patchable_model(factorized=False)`: compare_auto_circuit.py's), with the
prompts of `field_comparison.train_prompts` (one length; the answer read at the last position):

- EAP: `mask_gradient_prune_scores(grad_function="logit", answer_function="avg_diff", mask_val=0.0)` (its
  "Edge Attribution Patching" algorithm), clean batch = our base run, corrupt = our source run;
- EAP-IG: the same with `integrated_grad_samples=--ig-samples` (activation interpolation, its "Integrated Edge
  Gradients");
- subnetwork probing: `subnetwork_probing_prune_scores` with its shipped settings (learning rate 0.1, hard concrete,
  `--sp-epochs` epochs, λ 0.5), clean batch = our source run (the circuit runs on it), corrupt = our base run;
- ACDC as shipped: `acdc_prune_scores(tao_bases=[1], tao_exps=[-2])` (τ = 0.01, KL: our ACDC's default) over EVERY
  edge, residual-stream and MLP edges included, in its own order (`sorted(model.edges, key=dest.layer)` over a set:
  within a layer it follows `hash(None)`, so it can change between processes), clean = source, corrupt = base.
  Its kept heads are the heads whose edge survives; it may also have pruned residual-stream or MLP edges, which a
  head set cannot express (recorded: `acdc_pruned_other_edges`).

Each head's score is its one outgoing edge's (head → the stream after its attention layer). field_comparison ranks
them by |score| (auto-circuit's own convention for a circuit of the top edges).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import shims  # noqa: F401  (before auto_circuit)
import torch
from auto_circuit.data import PromptDataLoader, PromptDataset
from auto_circuit.prune_algos.ACDC import acdc_prune_scores
from auto_circuit.prune_algos.mask_gradient import mask_gradient_prune_scores
from auto_circuit.prune_algos.subnetwork_probing import subnetwork_probing_prune_scores

from ioi_superpose.engine.vocabulary import base_and_source

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "experiments"))
import field_comparison  # noqa: E402
from compare_auto_circuit import their_model  # noqa: E402  (the same patchable copy as the agreement check)


def loader(clean: torch.Tensor, corrupt: torch.Tensor, answers: torch.Tensor, weights) -> PromptDataLoader:
    """Answer sets: the tokens with positive weight are correct, negative incorrect (pairs: (correct, incorrect))."""
    if weights is None:
        correct, wrong = [a[:1] for a in answers], [a[1:] for a in answers]
    else:
        correct = [a[w > 0] for a, w in zip(answers, weights)]
        wrong = [a[w < 0] for a, w in zip(answers, weights)]
    dataset = PromptDataset(list(clean), list(corrupt), correct, wrong)
    return PromptDataLoader(dataset, seq_len=None, diverge_idx=0, batch_size=len(clean), shuffle=False)


def head_grid(ac, values, shape) -> list[list[float]]:
    out = torch.full(shape, float("nan"))
    for edge in ac.edges:
        if edge.src.head_idx is not None:
            out[int(edge.src.module_name.split(".")[1]), edge.src.head_idx] = float(edge.prune_score(values))
    return out.tolist()


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, round(time.perf_counter() - start, 2)


def one(model, batch, direction: str, args) -> dict:
    shape = (model.cfg.n_layers, model.cfg.n_heads)
    base, source = base_and_source(batch.clean_tokens, batch.corrupted_tokens, direction)
    weights = batch.answer_weights
    scores, seconds = {}, {}
    ac = their_model(model)
    gradients = loader(base, source, batch.answer_tokens, weights)
    eap, seconds["auto-circuit EAP"] = timed(lambda: mask_gradient_prune_scores(
        ac, gradients, None, grad_function="logit", answer_function="avg_diff", mask_val=0.0))  # fmt: skip
    scores["auto-circuit EAP"] = head_grid(ac, eap, shape)
    ig, seconds["auto-circuit EAP-IG"] = timed(lambda: mask_gradient_prune_scores(
        ac, gradients, None, grad_function="logit", answer_function="avg_diff",
        integrated_grad_samples=args.ig_samples))  # fmt: skip
    scores["auto-circuit EAP-IG"] = head_grid(ac, ig, shape)
    ac = their_model(model)
    circuit = loader(source, base, batch.answer_tokens, weights)
    sp, seconds["auto-circuit subnetwork probing"] = timed(lambda: subnetwork_probing_prune_scores(
        ac, circuit, None, learning_rate=0.1, epochs=args.sp_epochs, regularize_lambda=0.5,
        mask_fn="hard_concrete"))  # fmt: skip
    scores["auto-circuit subnetwork probing"] = head_grid(ac, sp, shape)
    ac = their_model(model)
    kept, seconds["auto-circuit ACDC"] = timed(lambda: acdc_prune_scores(ac, circuit, None, tao_exps=[-2],
                                                                          tao_bases=[1]))  # fmt: skip
    heads = [[int(e.src.module_name.split(".")[1]), e.src.head_idx] for e in ac.edges
             if e.src.head_idx is not None and e.prune_score(kept) == torch.inf]  # fmt: skip
    others = sorted(e.name for e in ac.edges if e.src.head_idx is None and e.prune_score(kept) != torch.inf)
    return {"scores": scores, "seconds": seconds, "acdc_heads": sorted(heads), "acdc_pruned_other_edges": others}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", nargs="+", default=list(field_comparison.CHECKPOINTS))
    parser.add_argument("--tasks", nargs="+", default=["ioi", "induction"])
    parser.add_argument("--directions", nargs="+", default=["denoising", "noising"])
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=24)
    parser.add_argument("--ig-samples", type=int, default=50)
    parser.add_argument("--sp-epochs", type=int, default=200)
    parser.add_argument("--out", default="experiments/reports/field/peers.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.exists() else {}
    for path in args.checkpoints:
        with contextlib.redirect_stdout(sys.stderr):  # TransformerLens prints "Moving model to device" on load
            model, data = field_comparison.load(path)
        name = Path(path).stem
        report.setdefault(name, {})
        for task in args.tasks:
            for direction in args.directions:
                for sample in range(args.samples):
                    batch = field_comparison.train_prompts(data, task, args.n_train, sample)
                    report[name][f"{task}/{direction}/{sample}"] = entry = one(model, batch, direction, args)
                    print(f"{name} {task} {direction} {sample}: {entry['seconds']}", flush=True)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

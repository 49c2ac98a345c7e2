"""Does each shipped toy checkpoint come back from its documented command, bit for bit?

    python experiments/check_shipped_checkpoints.py [--only toy_ioi toy_ioi_backups]

For each checkpoint in checkpoints/ (the command is the one its config and docs/toy-models.md name), the command runs
in a fresh copy of the repository (the real checkpoints/ is never touched) and the weights it writes are compared
with the shipped ones: equal, or the largest difference per tensor. Minutes per checkpoint (toy_ioi about a minute on
a quiet 2-core CPU, toy_ioi_redundant about 13). On 2026-12-07 (this machine, torch 2.13.0 CPU): toy_ioi_backups.pt
came back equal; toy_ioi.pt and toy_superposition_single.pt did not (their own commit's code gives today's weights
too, so the code is not what changed: see docs/toy-models.md).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.helpers.docs_blocks import environment, fresh_copy  # noqa: E402

CONFIGS = {
    "toy_ioi": "experiments/toy_ioi_model.yaml",
    "toy_superposition_single": "experiments/toy_superposition_single.yaml",
    "toy_superposition_conjunction": "experiments/toy_superposition_conjunction.yaml",
    "toy_ioi_redundant": "experiments/toy_ioi_redundant_model.yaml",
    "toy_ioi_backups": "experiments/toy_ioi_backups_model.yaml",
}


def compare(shipped: Path, retrained: Path) -> dict[str, float]:
    """The largest |difference| of every tensor that differs (empty: the same weights, bit for bit)."""
    old = torch.load(shipped, weights_only=False)["state_dict"]
    new = torch.load(retrained, weights_only=False)["state_dict"]
    if set(old) != set(new):
        return {f"tensors {sorted(set(old) ^ set(new))}": float("inf")}
    return {name: float((old[name].double() - new[name].double()).abs().max())
            for name in old if not torch.equal(old[name], new[name])}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    args = parser.parse_args()
    print("| checkpoint | command | seconds | same weights | largest difference |")
    print("| --- | --- | --- | --- | --- |")
    for name in args.only:
        with tempfile.TemporaryDirectory() as directory:
            copy = fresh_copy(REPO, Path(directory))
            command = [sys.executable, "-m", "ioi_superpose.train_toy", "fit", "--config", CONFIGS[name]]
            start = time.perf_counter()
            result = subprocess.run(command, cwd=copy, env=environment(copy), capture_output=True, text=True)
            seconds = time.perf_counter() - start
            if result.returncode != 0:
                print(f"| {name} | `{' '.join(command[1:])}` | {seconds:.0f} | failed (exit {result.returncode}) | |")
                continue
            differences = compare(REPO / "checkpoints" / f"{name}.pt", copy / "checkpoints" / f"{name}.pt")
            largest = max(differences.values(), default=0.0)
            print(f"| {name} | `python {' '.join(command[1:])}` | {seconds:.0f} | {'yes' if not differences else 'no'} | "
                  f"{largest:.3g} over {len(differences)} tensors |", flush=True)


if __name__ == "__main__":
    main()

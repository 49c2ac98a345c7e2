#!/usr/bin/env bash
# Builds experiments/peers/.venv: the project + auto-circuit 1.0.1, kept OUT of the project's own venv and CI
# (auto-circuit adds ~871 MB with JAX, and its `vscode-tqdm` dependency overwrites `tqdm`'s files).
# Usage: bash experiments/peers/setup.sh   (from anywhere; idempotent)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
python3 -m venv .venv
# shellcheck disable=SC1091
source .venv/bin/activate
pip install --quiet --upgrade pip
pip install --quiet torch==2.13.0          # first: a CPU build; an unpinned torch pulls a multi-GB CUDA build
pip install --quiet auto-circuit==1.0.1    # asks only transformer-lens>=1.13: pip picks 4.x here ...
pip install --quiet -e ../..                # ... and the project's pins bring it back to 3.9.0 (HookedTransformer)
# auto-circuit 1.0.1 fails at import under TransformerLens 3.9 / torch 2.13 without shims.py (see there).
python -c "import shims, auto_circuit.utils.graph_utils, auto_circuit.prune_algos.ACDC; print('auto-circuit imports with experiments/peers/shims.py')"

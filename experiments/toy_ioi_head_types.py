"""Head types of every head of the toy IOI model, the learned heads highlighted; writes
experiments/reports/toy_ioi_head_types/report.md.

    python experiments/toy_ioi_head_types.py      # seconds; reads the learned heads from the rotation experiment

Scores (`ioi_superpose.analyses.head_types`) on 256 clean toy IOI prompts (seed 0). Highlighted: the `scalar` run's support
in experiments/reports/toy_ioi_rotation/summaries.json (`python experiments/toy_ioi_rotation.py`); the last column is
the rotation run's kept dimensions per head (its `head_loading_sum`), when that file has one.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ioi_superpose.analyses.head_types import head_types
from ioi_superpose.data.prompts import ioi_prompts
from ioi_superpose.models import load_frozen_model
from ioi_superpose.results.tables import head_types_table

CHECKPOINT = "checkpoints/toy_ioi.pt"
SUMMARIES = Path("experiments/reports/toy_ioi_rotation/summaries.json")
OUT = Path("experiments/reports/toy_ioi_head_types")


def main() -> None:
    torch.set_num_threads(1)
    model = load_frozen_model(CHECKPOINT)
    prompts = ioi_prompts(CHECKPOINT, n=256, seed=0)
    scores = head_types(model, prompts)
    summaries = json.loads(SUMMARIES.read_text())
    selected = [tuple(unit) for unit in summaries["scalar"]["support"]]
    rotation = summaries.get("rotation, layers 0 and 1", {}).get("rotation")
    if rotation is not None:
        dims = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
        for layer, record in rotation["layers"].items():
            dims[int(layer)] = torch.tensor(record["head_loading_sum"])
        scores["rotation_dims"] = dims
    OUT.mkdir(parents=True, exist_ok=True)
    torch.save(scores, OUT / "head_types.pt")
    lines = [
        "# Head types of the toy IOI model",
        "",
        f"Produced by `python experiments/toy_ioi_head_types.py` on {CHECKPOINT}, 256 clean prompts (seed 0). "
        f"★ / bold: the heads of the learned `scalar` combination (denoising, name_swap: {selected}). Columns: "
        "TransformerLens's previous-token, duplicate-token and induction detector scores (share of attention on the "
        "pattern); `copying`: Σλ/Σ|λ| of W_E[names] W_V W_O W_U[:, names] (+1 copies names, −1 suppresses them); "
        "`copying_cosine`: that circuit's cosine with the identity (near 0 for a head that only reads names); "
        "`copying_top5`: share of names whose own logit is in that circuit row's top 5; `attn_end_*`: mean attention "
        "from END to IO, S1, S2; `rotation_dims`: the learned rotation's kept dimensions per head "
        "(experiments/reports/toy_ioi_rotation). Definitions: `ioi_superpose/analyses/head_types.py`.",
        "",
        head_types_table(scores, selected),
        "",
    ]
    (OUT / "report.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

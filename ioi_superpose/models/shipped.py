"""The toy models shipped in the repository's `checkpoints/`, found beside the package from any working directory.

Jupyter runs `experiments/walkthrough.ipynb` with the working directory `experiments/`, where a relative
`checkpoints/toy_ioi.pt` does not exist; `shipped_checkpoint("toy_ioi")` is the same file from anywhere.
"""

from __future__ import annotations

from pathlib import Path

from ioi_superpose.errors import ModelLoadError

CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"
"""`checkpoints/` of the source tree this package is imported from (an editable install or a checkout)."""


def shipped_checkpoint(name: str) -> str:
    """The path of `checkpoints/NAME.pt` (e.g. `"toy_ioi"`) beside the package, whatever the working directory."""
    path = CHECKPOINTS / f"{name.removesuffix('.pt')}.pt"
    if path.is_file():
        return str(path)
    shipped = sorted(p.stem for p in CHECKPOINTS.glob("*.pt"))
    if shipped:
        raise ModelLoadError(f"No shipped checkpoint {name!r} in {CHECKPOINTS}; shipped: {', '.join(shipped)}.")
    raise ModelLoadError(
        f"No checkpoints/ beside the package ({CHECKPOINTS} does not exist): the toy models ship with the source "
        "repository, not with an installed wheel. Clone the repository and install it with `pip install -e .`."
    )


def shipped_alternative(path: Path) -> Path | None:
    """For a toy checkpoint path that does not exist: the shipped file of that name, if there is one."""
    candidate = CHECKPOINTS / path.name
    return candidate if candidate.is_file() and candidate.resolve() != path.resolve() else None

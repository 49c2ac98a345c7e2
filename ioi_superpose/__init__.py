"""ioi_superpose: learn sparse combinations of attention heads that carry a behaviour."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ioi_superpose.api import LearnedCombination, learn_combination, learn_combinations, recovery_of

__all__ = ["LearnedCombination", "learn_combination", "learn_combinations", "recovery_of"]


def __getattr__(name: str) -> Any:
    """Load the notebook API on first use (PEP 562): `import ioi_superpose.results.report` then loads no
    Lightning or TransformerLens, while `from ioi_superpose import learn_combination` works as before."""
    if name in __all__:
        return getattr(importlib.import_module("ioi_superpose.api"), name)
    raise AttributeError(f"module 'ioi_superpose' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

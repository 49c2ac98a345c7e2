"""Contrast batches and IOI prompts. `ioi_prompts` is the one call a notebook needs.

The names below load on first use (PEP 562): a module that only needs the sets' names (`data.splits`, read by the
report, which loads no torch) imports this package without loading the prompt generator."""

from __future__ import annotations

import importlib
from typing import Any

_MODULES: dict[str, str] = {"IOIBatch": "ioi", "ioi_prompts": "prompts", "ioi_texts": "prompts"}
__all__ = ["IOIBatch", "ioi_prompts", "ioi_texts"]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return getattr(importlib.import_module(f"ioi_superpose.data.{_MODULES[name]}"), name)
    raise AttributeError(f"module 'ioi_superpose.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

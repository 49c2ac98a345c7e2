"""The two small fixes auto-circuit 1.0.1 needs under TransformerLens 3.9 and torch 2.13 (import this module
BEFORE anything from `auto_circuit`), and a deterministic edge order for its ACDC.

1. TransformerLens 3.9 renamed `HookedTransformerKeyValueCache` to `TransformerLensKeyValueCache` and removed
   the module `transformer_lens.past_key_value_caching` (auto_circuit/data.py and utils/graph_utils.py import
   the old names at import time): alias the class and register a stand-in module under the old name.
2. torch 2.13 no longer binds the submodule `torch.optim.adam` as an attribute of `torch.optim`, and
   auto-circuit calls `t.optim.adam.Adam(...)` (subnetwork probing, training utilities): bind it again.

ACDC's edge order: `acdc_prune_scores` visits `sorted(model.edges, key=dest.layer, reverse=True)`, and
`model.edges` is a `set` of frozen dataclasses whose hash includes `seq_idx=None`. `hash(None)` is derived
from None's address in CPython 3.11 (PYTHONHASHSEED does not fix it), so the order of edges within one
layer changes from process to process. `fixed_edge_order` hands ACDC a list in a chosen order instead
(sorted() is stable, so the within-layer order is the list's).
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import transformer_lens


def apply() -> None:
    """Install both shims (idempotent)."""
    if not hasattr(transformer_lens, "HookedTransformerKeyValueCache"):
        transformer_lens.HookedTransformerKeyValueCache = transformer_lens.TransformerLensKeyValueCache
    if "transformer_lens.past_key_value_caching" not in sys.modules:
        stand_in = types.ModuleType("transformer_lens.past_key_value_caching")
        stand_in.HookedTransformerKeyValueCache = transformer_lens.TransformerLensKeyValueCache
        stand_in.HookedTransformerKeyValueCacheEntry = transformer_lens.TransformerLensKeyValueCacheEntry
        sys.modules[stand_in.__name__] = stand_in
        transformer_lens.past_key_value_caching = stand_in
    if not hasattr(torch.optim, "adam"):
        torch.optim.adam = importlib.import_module("torch.optim.adam")


@contextmanager
def fixed_edge_order(model: Any, key: Callable[[Any], Any] | None = None, keep: Callable[[Any], bool] | None = None
                     ) -> Iterator[Sequence[Any]]:  # fmt: skip
    """Within the block, `model.edges` is a list sorted by `key` (default: the edge name), filtered by `keep`.

    ACDC then visits edges by destination layer (descending, its own sort) and, within a layer, in this list's
    order, the same in every process. The original set is restored on exit.
    """
    original = model.edges
    edges = sorted((e for e in original if keep is None or keep(e)), key=key or (lambda e: e.name))
    model.edges = edges
    try:
        yield edges
    finally:
        model.edges = original


apply()

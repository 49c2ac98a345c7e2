"""Writing results: every file appears whole or not at all."""

from __future__ import annotations

import json
import math
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


def finite_or_none(data: Any) -> Any:
    """`data` with every NaN or infinite float replaced by None (JSON has no NaN; most readers reject it)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: finite_or_none(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_or_none(value) for value in data]
    return data


def write_json(path: str | Path, data: Any) -> Path:
    """JSON with 2-space indents; NaN and infinities are written as null (see `finite_or_none`)."""
    text = json.dumps(finite_or_none(data), indent=2, default=str, allow_nan=False) + "\n"
    return atomic_write(path, lambda name: Path(name).write_text(text))

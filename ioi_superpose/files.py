"""Writing results: every file appears whole or not at all; a set of files (a report) all or nothing; an output
directory checked before any work."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ioi_superpose.errors import ConfigError


def atomic_write(path: str | Path, write: Callable[[str], Any]) -> Path:
    """Call `write(temporary_name)`, then rename the temporary file onto `path`.

    The temporary file sits in the same directory (a rename within one file system is atomic), so a
    crash never leaves a half-written file where a complete one is expected. The file gets the permissions any
    new file gets (0666 less the umask), not mkstemp's private 0600: results are shared with colleagues.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(handle)
    try:
        write(temporary)
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it
    os.umask(mask)
    return mask


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


def check_writable_dir(path: str | Path, option: str) -> Path:
    """Refuse, before any work, an output directory that cannot be written: a file in its place or on its way, or a
    place without write permission. Probed by creating (and removing) a file in the directory, or in its nearest
    existing parent when it does not exist yet, so it holds for read-only mounts and whoever the user is."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path} is a file; give a directory (new, or one to add to).")
    existing = next(parent for parent in (path, *path.parents) if parent.exists() or parent == Path(parent.anchor))
    if not existing.is_dir():
        raise ConfigError(f"{option} {path}: {existing} is a file, so the directory cannot be made there; give "
                          "another place.")  # fmt: skip
    try:
        handle, probe = tempfile.mkstemp(dir=existing, prefix=".write-check-")
        os.close(handle)
        os.remove(probe)
    except OSError as error:
        verb = "written" if existing == path else "created"
        raise ConfigError(f"{option} {path} cannot be {verb} ({existing}: {error.strerror}); give a directory you "
                          "can write to.") from None  # fmt: skip
    return path


@contextlib.contextmanager
def staged_directory(out: str | Path, last: Sequence[str] = ()) -> Iterator[Path]:
    """Write a set of files into `out` all or nothing: the caller writes them into a temporary directory (yielded),
    and only when it finishes are they moved into `out`, each by a rename (`last`, e.g. the report.md that links
    the others, at the end). A failure before that leaves `out` as it was: an earlier report's files stay whole,
    and a directory made for this write is removed again. Files of `out` that this write does not produce are left
    alone (the directory may hold other things: `--out experiments/reports`)."""
    out = Path(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=out, prefix=".staging-"))
    try:
        yield stage
        files = [path for path in stage.rglob("*") if path.is_file()]
        files.sort(key=lambda path: path.relative_to(stage).as_posix() in last)  # stable: `last` at the end
        for path in files:
            target = out / path.relative_to(stage)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if created and not any(out.iterdir()):
            out.rmdir()
        raise
    shutil.rmtree(stage, ignore_errors=True)

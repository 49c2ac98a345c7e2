"""Atomic writes (`ioi_superpose.files`): all or nothing, with the permissions any new file gets."""

from __future__ import annotations

import os
import stat

import pytest

from ioi_superpose.files import atomic_write, write_json


def test_a_written_file_has_the_permissions_of_any_new_file(tmp_path):
    previous = os.umask(0o022)
    try:
        written = write_json(tmp_path / "summary.json", {"a": 1})
        plain = tmp_path / "plain.txt"
        plain.write_text("x")  # what open() gives under the same umask
    finally:
        os.umask(previous)
    assert stat.S_IMODE(written.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o644


def test_a_failed_write_leaves_neither_the_file_nor_a_temporary(tmp_path):
    def fail(name: str) -> None:
        open(name, "w").write("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "out.pt", fail)
    assert list(tmp_path.iterdir()) == []

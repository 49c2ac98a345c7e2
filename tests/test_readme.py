"""The README's "In a notebook" snippet runs as written, on the toy model it names (offline)."""

from __future__ import annotations

import re

from tests.helpers import REPO as ROOT


def readme_snippet(heading: str = "## In a notebook") -> str:
    """The first ```python block under `heading` in README.md (so the test follows the README as written)."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(heading) + len(heading) :]
    section = section[: section.index("\n## ")] if "\n## " in section else section
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, f"no ```python block under {heading!r} in README.md"
    return match.group(1)


def test_readme_notebook_snippet_runs(monkeypatch, capsys):
    code = readme_snippet()
    assert 'MODEL = "checkpoints/toy_ioi.pt"' in code  # runs offline as is; the GPT-2 line is a comment
    monkeypatch.chdir(ROOT)  # the snippet's paths are relative to the repo root
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    namespace: dict = {}
    exec(compile(code, "README.md:In a notebook", "exec"), namespace)
    result = namespace["result"]
    assert result.coefficients.shape == (2, 4)
    assert result.recovery >= 0.9
    assert {head["layer"] for head in result.top_heads(5)} == {0}  # the layer-0 cut (see the walkthrough)
    assert "tensor" in capsys.readouterr().out

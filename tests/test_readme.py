"""The documentation's "In a notebook" snippet (docs/getting-started.md) runs as written, on the toy model it names
(offline), from any working directory, and its recovery is what TransformerLens hooks alone give."""

from __future__ import annotations

import re

import pytest
import torch

from tests.helpers import REPO as ROOT


def readme_snippet(heading: str = "## In a notebook", page: str = "docs/getting-started.md") -> str:
    """The first ```python block under `heading` in `page` (so the test follows the page as written)."""
    text = (ROOT / page).read_text()
    section = text[text.index(heading) + len(heading) :]
    section = section[: section.index("\n## ")] if "\n## " in section else section
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, f"no ```python block under {heading!r} in {page}"
    return match.group(1)


def test_readme_notebook_snippet_runs(monkeypatch, capsys, tmp_path):
    code = readme_snippet()
    assert 'MODEL = shipped_checkpoint("toy_ioi")' in code  # runs offline as is; the GPT-2 line is a comment
    monkeypatch.chdir(tmp_path)  # a notebook's working directory is anywhere: the snippet finds the shipped model
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    namespace: dict = {}
    exec(compile(code, "docs/getting-started.md:In a notebook", "exec"), namespace)
    result = namespace["result"]
    assert result.coefficients.shape == (2, 4)
    assert result.recovery >= 0.9
    assert {head["layer"] for head in result.top_heads(5)} == {0}  # the layer-0 cut (see the walkthrough)
    # Its last three lines are the result: α, the recovery, the top heads (loading messages, if any, come before).
    out = "\n" + capsys.readouterr().out
    assert out.endswith(f"\n{result.coefficients}\n{result.recovery}\n{result.top_heads(5)}\n")
    # The recovery it reports, re-derived with TransformerLens hooks alone: every head's z moved from the
    # corrupted run towards the clean one by its α, the mean logit difference at END (the last position).
    model, prompts = namespace["model"], namespace["prompts"]
    _, clean_cache = model.run_with_cache(prompts.clean_tokens)
    alpha = result.coefficients.to(torch.float32)

    def move(z, hook):
        return z + alpha[hook.layer()][None, None, :, None] * (clean_cache[hook.name] - z)

    def mean_logit_diff(logits):
        end = logits[:, -1]
        return (end.gather(-1, prompts.answer_tokens[:, :1]) - end.gather(-1, prompts.answer_tokens[:, 1:])).mean()

    with torch.no_grad():
        clean = mean_logit_diff(model(prompts.clean_tokens))
        corrupted = mean_logit_diff(model(prompts.corrupted_tokens))
        patched = mean_logit_diff(
            model.run_with_hooks(prompts.corrupted_tokens, fwd_hooks=[(lambda name: name.endswith("hook_z"), move)])
        )
    assert float((patched - corrupted) / (clean - corrupted)) == pytest.approx(result.recovery, abs=1e-4)

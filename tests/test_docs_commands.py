"""Every command block of README.md and of the documentation runs as written, from a fresh clone, in order (smaller
settings only where the page says so: `tests/helpers/docs_blocks.py`), with a quiet console: no Lightning GPU/TPU
lines or litlogger tip, no TransformerLens device moves, no dependency's deprecation warning, and the README's main
job in at most 16 lines (13 today; 36 before). The options page is the parser's."""

from __future__ import annotations

from ioi_superpose.cli import options_page
from tests.helpers import REPO
from tests.helpers.docs_blocks import REPLACE, blocks, fresh_copy, run

NOISE = ("GPU available", "TPU available", "litlogger", "Seed set to", "Moving model to device", "Changing model dtype",
         "DeprecationWarning", "is deprecated", "args parameter is intended", "Trainable params")  # fmt: skip
MAIN_JOB = "python -m ioi_superpose.train fit --config experiments/toy_ioi.yaml"


def test_every_docs_test_directive_is_known_and_said_in_the_pages_text():
    found = blocks(REPO)  # an unknown directive raises, naming the page
    assert len(found) >= 10 and {block.page for block in found} >= {"README.md", "docs/getting-started.md"}
    for block in found:
        if block.skip_reason is not None:
            assert len(block.skip_reason) > 10, f"{block.where}: say why the block is not run"
        if REPLACE.search(block.directive or ""):
            text = (REPO / block.page).read_text().splitlines()
            before = " ".join(text[max(0, block.line - 8) : block.line])
            assert "tests run" in before, f"{block.where}: the page must say the tests run it with other settings"
            block.runnable()  # every replacement's target is in the block


def test_every_command_block_runs_as_written_from_a_fresh_clone_in_order(tmp_path):
    clone = fresh_copy(REPO, tmp_path / "clone")
    ran: set[tuple[str, str]] = set()
    for block in blocks(REPO):
        code = block.runnable()
        if block.skip_reason is not None or (block.lang, code) in ran:
            continue
        ran.add((block.lang, code))
        result = run(block, clone)
        if block.expected_error is not None:
            errors = [line for line in result.stdout.splitlines() if line.startswith("error:")]
            assert result.returncode != 0 and len(errors) == 1 and block.expected_error in errors[0], (
                f"{block.where}: expected one error line with {block.expected_error!r}\n{result.stdout[-3000:]}")
        else:
            assert result.returncode == 0, f"{block.where} failed (exit {result.returncode}):\n{result.stdout[-4000:]}"
        noise = [line for line in result.stdout.splitlines() if any(text in line for text in NOISE)]
        assert noise == [], f"{block.where} printed dependency noise:\n" + "\n".join(noise)
        if block.page == "README.md" and MAIN_JOB in code:
            assert "Learned α: L0 = 4 heads" in result.stdout and len(result.stdout.splitlines()) <= 16, result.stdout
    assert len(ran) >= 8


def test_the_options_page_is_generated_from_the_parser_the_cli_reads():
    assert (REPO / "docs" / "options.md").read_text() == options_page.markdown(), (
        "docs/options.md is stale: python -m ioi_superpose.cli.options_page")

"""Every command block of README.md and of the documentation runs as written, from a fresh clone, in order (smaller
settings only where the page says so: `tests/helpers/docs_blocks.py`), with a quiet console: no Lightning GPU/TPU
lines or litlogger tip, no TransformerLens device moves, no dependency's deprecation warning, and the README's main
job prints its documented figures in at most 16 lines (13 today; 36 before). The options page is the parser's.

The blocks run page by page, each page in a fresh copy of its own (`page_groups`: the README's blocks open Getting
started's, and Concepts, which reads the main job's run, follows them), one test per group, so that pytest-xdist (`-n auto`) spreads the pages over the cores: the documented
commands are the slowest part of the suite. Within a page a command documented twice (the main job, in the README
and in Getting started) runs once."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ioi_superpose.cli import options_page
from tests.helpers import REPO
from tests.helpers.docs_blocks import REPLACE, Block, blocks, fresh_copy, page_groups, run

NOISE = ("GPU available", "TPU available", "litlogger", "Seed set to", "Moving model to device", "Changing model dtype",
         "DeprecationWarning", "is deprecated", "args parameter is intended", "Trainable params")  # fmt: skip
MAIN_JOB = ("bash", "python -m ioi_superpose.train fit --config experiments/toy_ioi.yaml")
MAIN_JOB_FIGURES = (
    "Learned α: L0 = 4 heads (8 heads in the model), val recovery 0.983; test recovery in_distribution 0.988, "
    "held_out_templates 0.986, held_out_names 0.989, duplicated_io 0.909, long_templates 0.980, baba_only 0.982, "
    "abba_only 0.987, no_preposition 0.903, objects_as_names n/a (clean ≈ corrupted)"
)
"""The main job's line as the README and DESIGN.md quote it (every figure of it: none may change)."""


def documented_runs(group: list[Block], clone: Path) -> list[tuple[Block, subprocess.CompletedProcess]]:
    """Every runnable block of one page group, run once, in order, in `clone` (a fresh copy), with what it printed."""
    ran: set[tuple[str, str]] = set()
    results = []
    for block in group:
        if block.skip_reason is not None or block.command() in ran:
            continue
        ran.add(block.command())
        results.append((block, run(block, clone)))
    return results


GROUPS = page_groups(blocks(REPO))


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


def test_a_command_documented_twice_runs_once():
    readme, page = Block("README.md", 1, "bash", f"{MAIN_JOB[1]}   # run: offline\n", None), Block(
        "docs/getting-started.md", 1, "bash", f"{MAIN_JOB[1]}\n", None)  # fmt: skip
    assert readme.command() == page.command() == MAIN_JOB
    assert Block("a", 1, "bash", "python -m x --flag 1\n", None).command() != page.command()


def test_every_page_has_commands_and_the_main_job_opens_getting_started():
    runnable = [block for group in GROUPS.values() for block in group if block.skip_reason is None]
    assert len(runnable) >= 8
    assert [block.command() for block in GROUPS["docs/getting-started.md"][:1]] == [MAIN_JOB]  # the README's


@pytest.mark.parametrize("page", sorted(GROUPS))
def test_every_command_block_runs_as_written_from_a_fresh_clone_in_order_quietly(page, tmp_path):
    results = documented_runs(GROUPS[page], fresh_copy(REPO, tmp_path / "clone"))
    for block, result in results:
        if block.expected_error is not None:
            errors = [line for line in result.stdout.splitlines() if line.startswith("error:")]
            assert result.returncode != 0 and len(errors) == 1 and block.expected_error in errors[0], (
                f"{block.where}: expected one error line with {block.expected_error!r}\n{result.stdout[-3000:]}")
        else:
            assert result.returncode == 0, f"{block.where} failed (exit {result.returncode}):\n{result.stdout[-4000:]}"
        noise = [line for line in result.stdout.splitlines() if any(text in line for text in NOISE)]
        assert noise == [], f"{block.where} printed dependency noise:\n" + "\n".join(noise)
    if page == "docs/getting-started.md":
        # The main job (run once, though the README and Getting started both give it) prints its figures on one screen.
        (main_job,) = [result for block, result in results if block.command() == MAIN_JOB]
        assert MAIN_JOB_FIGURES in main_job.stdout and len(main_job.stdout.splitlines()) <= 16, main_job.stdout


def test_the_options_page_is_generated_from_the_parser_the_cli_reads():
    assert (REPO / "docs" / "options.md").read_text() == options_page.markdown(), (
        "docs/options.md is stale: python -m ioi_superpose.cli.options_page")

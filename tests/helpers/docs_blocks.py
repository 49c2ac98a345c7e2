"""The command blocks of README.md and of the documentation pages (in mkdocs.yml's order), and how to run them as a
user would: in a fresh copy of the repository, one after another, as written.

A block is a ```bash or ```python fence. An HTML comment right above it may say how the tests treat it (visible text
beside the block must say so too, e.g. "the tests run it with one epoch"):

    <!-- docs-test: skip (REASON) -->                 not run (the test suite itself; a notebook its own test runs)
    <!-- docs-test: replace "OLD" "NEW" -->           run with OLD replaced by NEW (smaller settings)
    <!-- docs-test: expect-error "TEXT" -->           must fail with one `error:` line containing TEXT

`pip install` lines are not run (CI's own install is the README's). The blocks run by page
(`page_groups`), each page in a fresh copy; a block whose command ran before in its page (comments and spacing aside:
`Block.command`) is not run again (its outputs are there).
Used by tests/test_docs_commands.py and experiments/command_times.py.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

FENCE = re.compile(r"(?:<!-- docs-test: (?P<directive>.*?) -->\n)?```(?P<lang>bash|python)\n(?P<code>.*?)```", re.S)
REPLACE = re.compile(r'replace "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)"')
EXPECT_ERROR = re.compile(r'^expect-error "(.*)"$')
SKIP = re.compile(r"^skip \((.+)\)$")


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    lang: str
    code: str
    directive: str | None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def skip_reason(self) -> str | None:
        match = SKIP.match(self.directive or "")
        return match.group(1) if match else None

    @property
    def expected_error(self) -> str | None:
        match = EXPECT_ERROR.match(self.directive or "")
        return match.group(1) if match else None

    def runnable(self) -> str:
        """The code as the tests run it: replacements applied, `pip install` lines left out."""
        code = self.code
        for old, new in REPLACE.findall(self.directive or ""):
            if old not in code:
                raise ValueError(f"{self.where}: the docs-test replacement {old!r} is not in the block")
            code = code.replace(old, new)
        if self.lang == "bash":
            code = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith("pip install"))
        return code

    def command(self) -> tuple[str, str]:
        """What the block runs, comments and spacing aside (`# run: offline` beside a command is the same command)."""
        code = self.runnable()
        if self.lang == "bash":
            code = "\n".join(COMMENT.sub("", line) for line in code.splitlines())
        return self.lang, " ".join(code.split())


COMMENT = re.compile(r"(?:^|\s)#.*$")
"""A shell comment: `#` at the start of a line or after a space, to the end of the line (the blocks quote no `#`)."""


def pages(repo: Path) -> list[str]:
    """README.md, then every page of the documentation in mkdocs.yml's order."""
    nav = yaml.safe_load((repo / "mkdocs.yml").read_text())["nav"]
    return ["README.md", *(f"docs/{next(iter(entry.values()))}" for entry in nav)]


def blocks(repo: Path) -> list[Block]:
    found = []
    for page in pages(repo):
        text = (repo / page).read_text()
        for match in FENCE.finditer(text):
            directive = match.group("directive")
            if directive and not (SKIP.match(directive) or EXPECT_ERROR.match(directive) or REPLACE.search(directive)):
                raise ValueError(f"{page}: unknown docs-test directive {directive!r}")
            found.append(Block(page, text[: match.start()].count("\n") + 1, match.group("lang"), match.group("code"),
                               directive))  # fmt: skip
    return found


GETTING_STARTED = "docs/getting-started.md"
READS_MAIN_JOB = ("README.md", "docs/concepts.md")
"""Pages that run with Getting started, in its copy: the README's blocks open it (its main job is the run the page
goes on to evaluate), and Concepts' max-activating snippet reads that run's `runs/toy_ioi/version_0`."""


def page_groups(found: list[Block]) -> dict[str, list[Block]]:
    """The blocks by page, each page's in order: a page's commands may use what its earlier commands wrote, never
    another page's, except the pages of `READS_MAIN_JOB`, which run in Getting started's group (the README's first).
    Each group runs in a fresh copy of its own, so pytest-xdist spreads the groups over the cores."""
    groups: dict[str, list[Block]] = {}
    for block in found:  # README.md first, then mkdocs.yml's order: Getting started comes before Concepts
        groups.setdefault(GETTING_STARTED if block.page in READS_MAIN_JOB else block.page, []).append(block)
    return groups


def fresh_copy(repo: Path, destination: Path) -> Path:
    """The files a fresh clone has (tracked and new, not ignored) copied to `destination`."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repo,
                            capture_output=True, check=True).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = repo / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


def environment(copy: Path) -> dict[str, str]:
    """The copy's package first on the path (also for the console script), offline, one torch thread per process."""
    return {**os.environ, "PYTHONPATH": str(copy), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}  # fmt: skip


def run(block: Block, copy: Path, timeout: float = 3600) -> subprocess.CompletedProcess:
    """Run `block` in `copy` as the tests do (bash with -e, or python), stdout and stderr together."""
    code = block.runnable()
    command = ["bash", "-eo", "pipefail", "-c", code] if block.lang == "bash" else [sys.executable, "-c", code]
    return subprocess.run(command, cwd=copy, env=environment(copy), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)  # fmt: skip

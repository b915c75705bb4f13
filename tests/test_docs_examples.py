"""Every ``python`` and ``bash`` block of README.md and docs/ runs, page by page, so a broken
example fails the suite. Which fences run and which are only shown is in
:mod:`docs_pages` (``console`` blocks, the commands with a ``$`` prompt, are not run).

Each page runs in its own process (a page may register a data set or change torch's
settings) with an empty folder as the current folder.
"""

import subprocess
import sys
from pathlib import Path

import pytest
from docs_pages import ROOT, blocks, pages, runnable
from zoo_subprocess import zoo_env

RUNNABLE = [p for p in pages() if runnable(p)]


@pytest.mark.parametrize("page", RUNNABLE, ids=[str(p.relative_to(ROOT)) for p in RUNNABLE])
def test_the_code_of_the_page_runs(page, tmp_path):
    result = subprocess.run(
        [sys.executable, str(Path(__file__).parent / "docs_pages.py"), str(page)],
        cwd=tmp_path,
        env=zoo_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]


def test_each_worked_example_has_code_that_runs():
    examples = sorted((ROOT / "docs" / "examples").glob("*.md"))
    assert {p.stem for p in examples} >= {
        "train_by_name",
        "own_guide",
        "reproduce_row",
        "anneal_vae",
        "gmm_csv",
    }
    for page in examples:
        assert runnable(page), f"{page.name} has no block that runs"


def test_shell_blocks_are_either_run_or_marked_as_not_run():
    """A shell command is in a ``bash`` block (run) or a ``console`` block with a ``$`` prompt
    on each command (not run); a ``sh`` or ``shell`` fence would be neither."""
    for page in pages():
        for language, code, line in blocks(page):
            assert language not in ("sh", "shell", "zsh"), f"{page}:{line}: use bash or console"
            if language == "console":
                lines = code.splitlines()
                # a line after one ending in a backslash continues that command
                commands = [
                    c
                    for i, c in enumerate(lines)
                    if c.strip() and not c.startswith("#")
                    and not (i and lines[i - 1].rstrip().endswith("\\"))
                ]  # fmt: skip
                assert all(c.startswith("$ ") for c in commands), f"{page}:{line}: $ prompts"


def test_pages_that_show_long_commands_do_not_run_them():
    """The full-size rows and the benchmarks are shown, never run: none is in a bash block."""
    long = ("experiment=vae_fashion_mnist", "experiment=bnn_fashion_mnist", "benchmarks/")
    for page in pages():
        for language, code, line in runnable(page):
            if language == "bash":
                assert not any(word in code for word in long), f"{page}:{line}"

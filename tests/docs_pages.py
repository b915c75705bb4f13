"""The code blocks of the documentation's pages, and a runner that executes one page's.

Which blocks run is decided by the fence's language, nothing else:

- ```` ```python ````: run, in the order of the page, in one namespace per page;
- ```` ```bash ````: run by ``bash -euo pipefail``; a failing command fails the page;
- anything else is shown only: ```` ```console ```` for commands with a ``$`` prompt that are
  not run (full-size runs, benchmarks, installs: minutes to hours), ```` ```text ```` for
  output, ```` ```{include} ```` and other directives.

A page's blocks share one empty folder as the current folder. Files that a page includes
(``results/README.md``, whose commands make full-size rows) are not pages of ``docs/`` and are
not scanned. ``python tests/docs_pages.py PAGE`` runs one page in the current folder.
"""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```([^\s`]*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
RUN = ("python", "bash")


def pages() -> list[Path]:
    """README.md and every markdown page of docs/, generated and build folders left out."""
    found = sorted(p for p in (ROOT / "docs").rglob("*.md") if p.parts[-2] not in ("_build", "_generated"))
    return [ROOT / "README.md", *found]


def blocks(page: Path) -> list[tuple[str, str, int]]:
    """``(language, code, line)`` of each fenced block of ``page``, in order."""
    text = page.read_text()
    return [
        (m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1) for m in FENCE.finditer(text)
    ]


def runnable(page: Path) -> list[tuple[str, str, int]]:
    return [b for b in blocks(page) if b[0] in RUN]


def run_page(page: Path) -> None:
    """Runs the page's blocks in the current folder; raises at the first that fails."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    namespace: dict = {"__name__": "__main__"}
    for language, code, line in runnable(page):
        start = time.perf_counter()
        where = f"{page.relative_to(ROOT)}:{line}"
        if language == "python":
            # line numbers of a traceback are the page's
            exec(compile("\n" * line + code, str(page), "exec"), namespace)
        else:
            result = subprocess.run(["bash", "-euo", "pipefail", "-c", code], env=env)
            if result.returncode != 0:
                raise SystemExit(f"{where}: the bash block exited with {result.returncode}")
        print(f"docs_pages: {where} {language} block ran in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # this checkout's zoo, whatever is installed
    run_page(Path(sys.argv[1]).resolve())

"""Mutation testing of one critical module with mutmut, in a copy of the checkout.

Usage (from the repository root; nice: it keeps both cores busy for minutes)::

    nice -n 19 .venv/bin/python benchmarks/mutation/run.py schedules
    nice -n 19 .venv/bin/python benchmarks/mutation/run.py schedules --show   # survivors' diffs

Each entry of ``modules.toml`` names the files to mutate and the fast tests that guard them,
and optionally ``functions``: only those functions and methods (``all_finite``,
``Trainer.resume``; ``*`` as a wildcard) of a single mutated file are mutated and counted.
The run happens in ``$TMPDIR/zoo-mutation/<name>`` (a copy of zoo/, conf/, tests/ and
pyproject.toml, with a ``[tool.mutmut]`` section for that entry), so the shared checkout never
holds a ``mutants/`` folder or a half-mutated file, and two entries can be run one after the
other without mixing their results. It prints mutmut's counts and the survival rate.

mutmut itself only takes its settings from the ``pyproject.toml`` of the folder it runs in,
which is why each entry gets its own copy rather than one section in ours.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]
MODULES = Path(__file__).with_name("modules.toml")
COPIED = ("zoo", "conf", "tests", "pyproject.toml", "README.md")


def mutmut_section(entry: dict) -> str:
    """The ``[tool.mutmut]`` section for one entry: the whole package is copied (so that the
    mutated module is imported from the copy), only ``mutate`` is mutated."""
    return "\n".join(
        [
            "",
            "[tool.mutmut]",
            'source_paths = ["zoo"]',
            f"only_mutate = {[m if m.endswith('.py') else m + '/*' for m in entry['mutate']]!r}",
            f"pytest_add_cli_args_test_selection = {entry['tests']!r}",
            # the copy's own pytest options plus: stop at the first failure, no warnings noise
            'pytest_add_cli_args = ["-x", "-q", "-p", "no:randomly", "-W", "ignore"]',
            'also_copy = ["conf", "README.md"]',
            # a mutant that never ends (remaining += k in a while loop) burns CPU until its
            # timeout: three times the clean run's duration, not mutmut's fifteen
            "timeout_multiplier = 3.0",
            "timeout_constant = 5.0",
            "",
        ]
    ).replace("'", '"')


def prepare(name: str, entry: dict) -> Path:
    work = Path(tempfile.gettempdir()) / "zoo-mutation" / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for item in COPIED:
        source = ROOT / item
        if source.is_dir():
            shutil.copytree(source, work / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, work / item)
    with open(work / "pyproject.toml", "a") as f:
        f.write(mutmut_section(entry))
    return work


def mutmut(work: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).with_name("mutmut")), *args],
        cwd=work,
        # one torch thread: mutmut forks a child per mutant from a process that has run torch,
        # and a forked child that uses torch's thread pool waits forever (a false "timeout")
        env={**os.environ, "ZOO_HYPOTHESIS_PROFILE": "derandomized", "OMP_NUM_THREADS": "1"},
        text=True,
        capture_output=True,
    )


def mutant_patterns(entry: dict) -> list[str]:
    """mutmut's names of the mutants of ``entry["functions"]``, as ``fnmatch`` patterns:
    ``zoo.train.x_all_finite__mutmut_*`` for a function, ``zoo.train.xǁTrainerǁresume__mutmut_*``
    for a method (mutmut's own mangling); empty (every mutant) without ``functions``."""
    functions = entry.get("functions", [])
    if not functions:
        return []
    if len(entry["mutate"]) != 1 or not entry["mutate"][0].endswith(".py"):
        raise SystemExit("modules.toml: 'functions' needs 'mutate' to name exactly one .py file")
    module = entry["mutate"][0].removesuffix(".py").replace("/", ".")
    patterns = []
    for function in functions:
        owner, _, name = function.rpartition(".")
        mangled = f"x\u01c1{owner}\u01c1{name}" if owner else f"x_{name}"
        patterns.append(f"{module}.{mangled}__mutmut_*")
    return patterns


def selected(results: str, patterns: list[str]) -> str:
    """The lines of ``mutmut results`` whose mutant matches one of ``patterns`` (all without)."""
    if not patterns:
        return results
    return "\n".join(
        line
        for line in results.splitlines()
        if any(fnmatch.fnmatch(line.rsplit(":", 1)[0].strip(), p) for p in patterns)
    )


def counts(results: str) -> dict[str, int]:
    """mutmut's ``results --all true`` lines (``name: status``) counted by status."""
    tally: dict[str, int] = {}
    for line in results.splitlines():
        if ":" in line:
            status = line.rsplit(":", 1)[1].strip()
            tally[status] = tally.get(status, 0) + 1
    return tally


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="an entry of modules.toml")
    parser.add_argument("--children", type=int, default=2, help="mutants tested at once")
    parser.add_argument("--show", action="store_true", help="print each survivor's diff")
    args = parser.parse_args()
    entries = tomllib.loads(MODULES.read_text())
    if args.name not in entries:
        parser.error(f"{args.name!r} is not in {MODULES.name}: {', '.join(entries)}")
    patterns = mutant_patterns(entries[args.name])
    work = prepare(args.name, entries[args.name])
    run = mutmut(work, "run", "--max-children", str(args.children), *patterns)
    if run.returncode != 0:
        print(run.stdout[-4000:], run.stderr[-4000:], sep="\n")
        return run.returncode
    results = selected(mutmut(work, "results", "--all", "true").stdout, patterns)
    tally = counts(results)
    total = sum(tally.values())
    survived = tally.get("survived", 0) + tally.get("no tests", 0)
    print(f"{args.name}: {total} mutants, {tally}")
    if total:
        print(f"{args.name}: survival rate {survived / total:.1%} (survived or untested)")
    for line in results.splitlines():
        status = line.rsplit(":", 1)[-1].strip()
        if status in ("survived", "no tests"):
            mutant = line.rsplit(":", 1)[0].strip()
            print(f"  {status}: {mutant}")
            if args.show:
                print(mutmut(work, "show", mutant).stdout)
    print(f"(mutmut's folder: {work})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

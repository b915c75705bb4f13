"""The ``>>>`` examples in the docstrings of the modules on the API pages run and print what
they show, since the API reference (docs/api) renders them as code: a broken one would rot
there unseen. Each module's examples run in an empty current folder, torch's and Pyro's
random streams seeded first. An example marked ``# doctest: +SKIP`` is shown and not run:
those of MNIST and Fashion-MNIST need the full data sets, which the suite does not download.
"""

import doctest
import importlib
import pkgutil

import pyro
import pytest
from test_docs_docstrings import api_modules


def modules_with_examples() -> list[str]:
    """The API pages' modules and, for packages, their submodules (where the imported names
    are defined)."""
    names = []
    for name in api_modules():
        module = importlib.import_module(name)
        names.append(name)
        for sub in pkgutil.iter_modules(getattr(module, "__path__", [])):
            if not sub.name.startswith("_") and sub.name != "__main__":
                names.append(f"{name}.{sub.name}")
    finder = doctest.DocTestFinder()
    return sorted(
        n for n in dict.fromkeys(names) if any(t.examples for t in finder.find(importlib.import_module(n)))
    )


@pytest.mark.parametrize("name", modules_with_examples())
def test_the_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in doctest.DocTestFinder().find(module):
        pyro.set_rng_seed(0)
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed"

"""Sphinx configuration of the zoo's documentation.

Build: ``sphinx-build -W -b html docs docs/_build/html`` (``pip install -e ".[docs]"``).
The API pages come from the docstrings (autodoc, napoleon); the config reference is generated
from the settings classes and conf/ by ``_ext/zoo_config.py``; the results page includes
``results/README.md``, which ``python -m zoo.report`` writes.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's zoo, not an installed one
sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "zoo"
author = "the zoo team"
copyright = "the zoo team"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "myst_parser",
    "zoo_config",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
# pydantic settings classes: their fields are documented on the config reference page
autodoc_pydantic_skip = ("model_config", "model_fields", "model_computed_fields")
nitpicky = False

html_theme = "alabaster"
html_theme_options = {"description": "probabilistic programs in Pyro", "fixed_sidebar": True}
html_static_path = []


def skip_pydantic_internals(app, what, name, obj, skip, options):
    if name in autodoc_pydantic_skip:
        return True
    return None


def own_comment_over_wrapped_docstring(app, what, name, obj, options, lines):
    """``zoo.handlers.linear`` and ``conv2d`` are torch functions made effectful: their
    ``__doc__`` is torch's (with references to torch's own docs); the zoo's ``#:`` comment
    where they are defined says what they are, so it replaces torch's text."""
    if not (getattr(obj, "__wrapped__", None) and "torch" in getattr(obj, "__module__", "")):
        return
    import pkgutil

    from sphinx.pycode import ModuleAnalyzer

    package, short = name.rsplit(".", 1)
    module = sys.modules[package]
    candidates = [package] + [
        f"{package}.{m.name}" for m in pkgutil.iter_modules(getattr(module, "__path__", []))
    ]
    for candidate in candidates:
        found = ModuleAnalyzer.for_module(candidate).find_attr_docs().get(("", short))
        if found:
            lines[:] = list(found)
            return


def setup(app):
    app.connect("autodoc-skip-member", skip_pydantic_internals)
    app.connect("autodoc-process-docstring", own_comment_over_wrapped_docstring)

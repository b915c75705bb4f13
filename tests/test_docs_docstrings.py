"""Every public name of the modules on the API pages has a docstring, so that the API
reference (docs/api, built by autodoc) has no empty entry.

A module's public names are its ``__all__``, or where it has none, the classes and functions
it defines whose names do not start with an underscore. A class counts with its own
docstring (not one inherited from pydantic's ``BaseModel`` or ``object``); its public methods
and properties count with their own or the one they override (``inspect.getdoc``).
"""

import importlib
import inspect
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).parents[1] / "docs"


def api_modules() -> list[str]:
    """The modules the API pages document (``.. automodule::`` in docs/api/*.md)."""
    found = []
    for page in sorted((DOCS / "api").glob("*.md")):
        found += re.findall(r"^\.\. automodule:: ([\w.]+)", page.read_text(), flags=re.M)
    return found


def public_names(module) -> list[str]:
    if hasattr(module, "__all__"):
        return [n for n in module.__all__ if not n.startswith("__")]
    return [
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__ == module.__name__
    ]


def undocumented(module) -> list[str]:
    missing = []
    for name in public_names(module):
        value = getattr(module, name)
        if not (inspect.isclass(value) or inspect.isfunction(value)):
            continue  # data: documented by a #: comment where it is defined, or not at all
        if inspect.isclass(value):
            if not value.__dict__.get("__doc__"):
                missing.append(name)
            for attribute, member in vars(value).items():
                if attribute.startswith("_"):
                    continue
                function = member.fget if isinstance(member, property) else member
                function = getattr(function, "__func__", function)
                if inspect.isfunction(function) and not inspect.getdoc(getattr(value, attribute)):
                    missing.append(f"{name}.{attribute}")
        elif not inspect.getdoc(value):
            missing.append(name)
    return missing


def test_the_api_pages_document_the_public_modules():
    assert {"zoo.guides", "zoo.handlers", "zoo.schedules", "zoo.models", "zoo.train",
            "zoo.data", "zoo.pretrained", "zoo.loggers", "zoo.metrics"} <= set(api_modules())


@pytest.mark.parametrize("name", api_modules())
def test_every_public_name_has_a_docstring(name):
    module = importlib.import_module(name)
    assert inspect.getdoc(module), f"{name} has no module docstring"
    assert undocumented(module) == [], f"{name}: no docstring on {undocumented(module)}"

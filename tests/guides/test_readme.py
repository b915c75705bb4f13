"""The README's "Use a zoo guide in your own model" examples run as written."""

import re
from pathlib import Path

import pytest

README = Path(__file__).parents[2] / "README.md"
SECTION = "## Use a zoo guide in your own model"


def examples() -> list[str]:
    text = README.read_text()
    section = text[text.index(SECTION) :]
    section = section[: section.index("\n## ", len(SECTION))]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_section_has_one_example_per_guide_and_one_of_saving():
    blocks = examples()
    assert len(blocks) == 4
    for name in ("MeanField", "BayesByBackprop", "AmortizedNormal", "save_guide"):
        assert any(name in block for block in blocks), name


@pytest.mark.parametrize("index", range(4))
def test_example_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example that wrote to the current folder would land here
    exec(compile(examples()[index], f"README example {index + 1}", "exec"), {})

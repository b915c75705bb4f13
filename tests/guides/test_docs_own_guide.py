"""The examples of docs/examples/own_guide.md (once the README's "Use a zoo guide in your own
model" section) run as written and give the right posterior."""

import re
from pathlib import Path

import pytest
import torch

PAGE = Path(__file__).parents[2] / "docs" / "examples" / "own_guide.md"


def examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)


def test_the_section_has_one_example_per_guide_and_one_of_saving():
    blocks = examples()
    assert len(blocks) == 4
    for name in ("MeanField", "BayesByBackprop", "AmortizedNormal", "save_guide"):
        assert any(name in block for block in blocks), name


def eight_schools_posterior(ns):
    median, (low, high) = ns["guide"].median()["mu"], ns["guide"].quantiles([0.05, 0.95])["mu"]
    assert 2.0 < median < 7.0  # the posterior mean of mu is about 4.4
    assert low < median < high and ns["guide"].median()["tau"] > 0
    assert ns["y_new"].shape == (100, 8)


def regression_weights_near_least_squares(ns):
    x, y = ns["x"], ns["y"]
    design = torch.cat([x, torch.ones(len(x), 1)], dim=1)
    solution = torch.linalg.lstsq(design, y[:, None]).solution.squeeze(-1)  # w (3,), b
    median = ns["guide"].median()
    assert torch.allclose(median["fc.weight"].squeeze(0), solution[:3], atol=0.05)
    assert torch.allclose(median["fc.bias"], solution[3:], atol=0.05)


def amortized_codes(ns):
    assert ns["z"].shape == (64, 2) and ns["z"].isfinite().all()


def saved_guide_near_the_posterior_mean(ns):
    x = ns["x"]
    # Normal(0, 10) prior, unit noise: the posterior mean is sum(x) / (n + 1 / 100)
    assert ns["loaded"].median()["loc"].item() == pytest.approx(
        x.sum().item() / (len(x) + 0.01), abs=0.1
    )


CHECKS = [
    eight_schools_posterior,
    regression_weights_near_least_squares,
    amortized_codes,
    saved_guide_near_the_posterior_mean,
]


@pytest.mark.parametrize("index", range(4))
def test_example_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an example that wrote to the current folder would land here
    namespace = {}
    exec(compile(examples()[index], f"own_guide.md example {index + 1}", "exec"), namespace)
    CHECKS[index](namespace)

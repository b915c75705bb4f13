"""MeanField's refusals name the guide's class, the site and what to do, word for word."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from zoo.guides import MeanField


def model(x):
    with pyro.plate("k", len(x)):
        pyro.sample("m", dist.Normal(0.0, 1.0))
        pyro.sample("s", dist.LogNormal(0.0, 1.0))


def message(call):
    with pytest.raises(ValueError) as error:
        call()
    return str(error.value)


def test_a_summary_of_a_guide_not_set_up_asks_for_the_models_arguments():
    assert message(MeanField(model).median) == (
        "MeanField is not set up yet and the model needs arguments: "
        "pass them (guide.median(x)) or call the guide once"
    )


def test_a_site_asked_for_before_set_up_says_how_to_set_up():
    assert message(lambda: MeanField(model).distribution("m")) == (
        "MeanField is not set up yet: call it (or setup) with the model's "
        "arguments before asking for site 'm'"
    )


def test_an_unknown_site_is_named_with_the_guides_sites():
    guide = MeanField(model)
    guide(torch.zeros(2))
    assert message(lambda: guide.distribution("q")) == (
        "MeanField has no latent site 'q'; its sites: m, s"
    )

"""BayesByBackprop's refusals word for word: each names the guide's class and the site."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from zoo.guides import BayesByBackprop


def model():
    pyro.sample("weight", dist.Normal(torch.zeros(2), 1.0).to_event(1))
    pyro.sample("bias", dist.Normal(0.0, 1.0))


def refusal(call):
    with pytest.raises(ValueError) as error:
        call()
    return str(error.value)


def test_a_site_asked_before_set_up():
    assert refusal(lambda: BayesByBackprop(model).distribution("weight")) == (
        "BayesByBackprop is not set up yet: call it (or setup) with the model's arguments "
        "before asking for site 'weight'"
    )


def test_a_site_the_model_does_not_have():
    guide = BayesByBackprop(model).setup()
    assert refusal(lambda: guide.distribution("unknown")) == (
        "BayesByBackprop has no latent site 'unknown'; its sites: weight, bias"
    )


@pytest.mark.parametrize("init_scale", [0.0, -0.1, float("inf"), float("nan")])
def test_an_init_scale_that_is_not_a_finite_positive_number(init_scale):
    assert refusal(lambda: BayesByBackprop(model, init_scale=init_scale)) == (
        f"init_scale must be a finite number > 0 or None, got {init_scale!r}"
    )


def test_a_small_positive_init_scale_is_taken():
    guide = BayesByBackprop(model, init_scale=1e-3).setup()
    scale = guide.get_posterior()["weight"].base_dist.scale
    assert torch.allclose(scale, torch.full((2,), 1e-3))

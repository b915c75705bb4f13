"""MeanField refuses settings that cannot work, word for word: an init_scale that is not > 0
(0 included), a family that does not exist, families for sites the model does not have."""

import pyro
import pyro.distributions as dist
import pytest

from zoo.guides import MeanField


def model():
    pyro.sample("m", dist.Normal(0.0, 1.0))


def message(call):
    with pytest.raises(ValueError) as error:
        call()
    return str(error.value)


@pytest.mark.parametrize("scale", [0.0, -0.1])
def test_an_init_scale_not_above_zero_is_refused(scale):
    assert message(lambda: MeanField(model, init_scale=scale)) == (
        f"init_scale must be > 0, got {scale!r}"
    )


def test_an_unknown_family_is_refused_with_the_valid_ones():
    assert message(lambda: MeanField(model, families={"m": "gamma"})) == (
        "families['m'] = 'gamma' is not a family; valid: "
        "normal, lognormal, dirichlet, beta, transformed_normal"
    )


def test_families_for_sites_the_model_does_not_have_are_refused_at_set_up():
    guide = MeanField(model, families={"nope": "normal", "m": "normal"})
    assert message(guide) == "families names sites the model does not have: ['nope']"


def test_the_family_table_is_empty_until_set_up():
    guide = MeanField(model)
    assert guide.family == {}
    guide()
    assert guide.family == {"m": "normal"}

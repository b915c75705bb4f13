"""BayesByBackprop takes the model's arguments by keyword as well as by position in every
call (the guide, median, sample_latent), also as the first call that sets it up, hands
them to ``create_plates``, and samples a site inside a plate within that plate."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from zoo.guides import BayesByBackprop

X = torch.randn(5, 2)


def plated_model(x):
    """A latent per row (in the data plate) and one global latent."""
    scale = pyro.sample("scale", dist.Normal(0.0, 1.0))
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(torch.zeros(len(x)), 1.0))
        pyro.sample("x", dist.Normal(z + scale, 1.0).expand([len(x)]).to_event(0), obs=x[:, 0])


def test_the_first_call_may_pass_the_arguments_by_keyword():
    assert BayesByBackprop(plated_model)(x=X)["z"].shape == (5,)
    assert BayesByBackprop(plated_model).median(x=X)["z"].shape == (5,)
    assert BayesByBackprop(plated_model).sample_latent(x=X)["z"].shape == (5,)


def test_sample_latent_sets_the_guide_up_from_positional_arguments():
    draw = BayesByBackprop(plated_model).sample_latent(X)
    assert set(draw) == {"scale", "z"} and draw["z"].shape == (5,)


def test_create_plates_gets_the_arguments_by_keyword():
    def create_plates(x):
        return pyro.plate("data", len(x))

    guide = BayesByBackprop(plated_model, create_plates=create_plates)
    trace = pyro.poutine.trace(guide).get_trace(x=X)
    assert [f.name for f in trace.nodes["z"]["cond_indep_stack"]] == ["data"]


def test_a_site_in_a_plate_is_sampled_inside_that_plate():
    trace = pyro.poutine.trace(BayesByBackprop(plated_model)).get_trace(X)
    assert [f.name for f in trace.nodes["z"]["cond_indep_stack"]] == ["data"]
    assert trace.nodes["scale"]["cond_indep_stack"] == ()


def test_a_model_that_refuses_the_keywords_given_raises_its_own_type_error():
    # the arguments were given: the model's TypeError is the user's to see, not "not set up"
    with pytest.raises(TypeError):
        BayesByBackprop(plated_model).median(y=X)


def test_a_guide_asked_before_set_up_without_arguments_says_what_to_do():
    with pytest.raises(ValueError) as error:
        BayesByBackprop(plated_model).median()
    assert str(error.value) == (
        "BayesByBackprop is not set up yet and the model needs arguments: pass them "
        "(guide.median(x)) or call the guide once"
    )


def test_fan_in_is_the_last_dim_of_a_weight_of_three_dims():
    def model():
        pyro.sample("w", dist.Normal(torch.zeros(2, 1, 100), 1.0).to_event(3))

    w = BayesByBackprop(model).median()["w"]
    # U(-1/sqrt(100), 1/sqrt(100)): the bound of a 100-input layer, not of its 1 output
    assert w.abs().max() <= 0.1
    assert w.abs().max() > 0.09  # 200 draws reach near the bound


def test_a_site_in_a_plate_keeps_the_plate_as_a_batch_dim():
    guide = BayesByBackprop(plated_model)
    guide(X)
    z = guide.distribution("z")
    assert (z.batch_shape, z.event_shape) == ((5,), ())

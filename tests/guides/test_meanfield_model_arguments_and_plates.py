"""MeanField hands the model's arguments, positional or keyword, to the model when it sets
itself up and to ``create_plates`` at every call (``guide``, ``median``, ``sample_latent``),
and takes ``create_plates``'s plates as one plate or a list."""

import pyro
import pyro.distributions as dist
import torch

from zoo.guides import MeanField


def model(x):
    with pyro.plate("k", len(x)):
        pyro.sample("m", dist.Normal(0.0, 1.0))


def plates_of(x):
    """The model's plate, sized by the data: it needs the model's argument."""
    return pyro.plate("k", len(x))


def test_a_first_call_by_keyword_sets_the_guide_up():
    assert MeanField(model)(x=torch.zeros(4))["m"].shape == (4,)


def test_median_by_keyword_sets_the_guide_up():
    assert MeanField(model).median(x=torch.zeros(4))["m"].shape == (4,)


def test_sample_latent_hands_positional_arguments_to_create_plates():
    guide = MeanField(model, create_plates=plates_of)
    assert guide.sample_latent(torch.zeros(4))["m"].shape == (4,)


def test_sample_latent_hands_keyword_arguments_to_create_plates():
    guide = MeanField(model, create_plates=plates_of)
    assert guide.sample_latent(x=torch.zeros(4))["m"].shape == (4,)


def test_create_plates_may_return_a_list_of_plates():
    made = []

    def plates(x):
        made.append(pyro.plate("k", len(x)))
        return [made[-1]]

    trace = pyro.poutine.trace(MeanField(model, create_plates=plates)).get_trace(torch.zeros(4))
    assert made and trace.nodes["m"]["value"].shape == (4,)
    assert trace.nodes["m"]["cond_indep_stack"][0].name == "k"

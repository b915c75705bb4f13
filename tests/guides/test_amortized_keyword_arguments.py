"""AmortizedNormal takes the model's arguments by keyword as well as by position, in every
call (the guide, distribution, median, get_posterior, sample_latent; with ``encoder_inputs``,
since the default input is the first positional argument), and passes them to the plates of
the AutoGuideList it sits in."""

import hashlib

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.autoguide import AutoGuideList
from torch import nn

from zoo.guides import AmortizedNormal


def model(x):
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(torch.zeros(len(x), 2), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True), 1.0).to_event(1), obs=x)


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(1, 4)

    def forward(self, x):
        return self.net(x).chunk(2, dim=-1)


X = torch.randn(3, 1)


def by_keyword(**settings):
    """A guide for calls by keyword: the default encoder input is the first positional one."""
    return AmortizedNormal(model, Encoder(), encoder_inputs=lambda x: (x,), **settings)


def test_every_call_takes_the_models_arguments_by_keyword():
    plates = by_keyword(create_plates=lambda x: pyro.plate("data", len(x)))
    assert plates(x=X)["z"].shape == (3, 2)
    assert by_keyword()(x=X)["z"].shape == (3, 2)
    assert by_keyword().distribution(x=X).batch_shape == (3,)
    assert by_keyword().median(x=X)["z"].shape == (3, 2)
    assert by_keyword().get_posterior(x=X)["z"].batch_shape == (3,)
    assert by_keyword().sample_latent(x=X)["z"].shape == (3, 2)


def test_inside_an_autoguidelist_the_lists_plates_get_the_arguments():
    guide = AutoGuideList(model, create_plates=lambda x: pyro.plate("data", len(x)))
    guide.append(AmortizedNormal(model, Encoder()))
    assert guide(X)["z"].shape == (3, 2)


def test_create_plates_may_return_a_list_of_plates():
    guide = AmortizedNormal(model, Encoder(), create_plates=lambda x: [pyro.plate("data", len(x))])
    trace = pyro.poutine.trace(guide).get_trace(X)
    assert trace.nodes["z"]["cond_indep_stack"][0].name == "data"


def test_a_missing_site_is_refused_also_when_called_by_keyword():
    guide = AmortizedNormal(model, Encoder(), site="w", encoder_inputs=lambda x: (x,))
    with pytest.raises(ValueError) as error:
        guide(x=X)
    assert (
        str(error.value) == "the model has no sample site 'w'; its sample sites: ['data', 'z', 'x']"
    )


def test_the_param_store_name_is_the_digest_of_site_event_dim_and_encoder_class():
    guide = AmortizedNormal(model, Encoder())
    guide(X)
    digest = hashlib.sha256(b"z:1:Encoder").hexdigest()[:10]
    assert guide._pyro_name.startswith(f"AmortizedNormal_{digest}")

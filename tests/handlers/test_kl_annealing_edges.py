"""Edges of the KL-annealing handler that mutation testing found untested: the default beta,
a tensor beta, a ``poutine.condition`` given a trace, sequential enumeration, and the exact
words of the refusal of a handler applied outside it (a user reads them to fix the order)."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import config_enumerate

from zoo.handlers import KLAnnealingMessenger, kl_annealing

X = torch.tensor([0.3, -1.2])


def model():
    z = pyro.sample("z", dist.Normal(0.0, 1.0))
    with pyro.plate("data", len(X)):
        pyro.sample("x", dist.Normal(z, 0.5))


def test_beta_is_one_by_default():
    assert KLAnnealingMessenger().beta == 1.0
    assert kl_annealing().beta == 1.0


def test_a_scalar_tensor_beta_is_taken_as_its_number():
    annealer = KLAnnealingMessenger(torch.tensor(0.25))
    assert annealer.beta == 0.25 and type(annealer.beta) is float


def test_a_beta_of_the_wrong_type_is_named_in_the_refusal():
    with pytest.raises(TypeError, match="^Expected beta to be a number but got str$"):
        KLAnnealingMessenger("0.5")


def test_a_site_conditioned_outside_by_a_trace_counts_as_observed():
    data = poutine.trace(model).get_trace()  # condition accepts a trace as well as a dict
    del data.nodes["z"]
    trace = poutine.trace(poutine.condition(kl_annealing(model, beta=0.1), data=data)).get_trace()
    assert trace.nodes["x"]["is_observed"]
    assert trace.nodes["x"]["scale"] == 1.0
    assert trace.nodes["z"]["scale"] == pytest.approx(0.1)


@pytest.mark.parametrize("how", ["parallel", "sequential"])
def test_a_site_marked_for_enumeration_keeps_its_scale(how):
    def mixture():
        k = pyro.sample("k", dist.Categorical(torch.ones(2) / 2), infer={"enumerate": how})
        pyro.sample("x", dist.Normal(k.float(), 1.0), obs=torch.tensor(0.0))

    with kl_annealing(beta=0.1):
        trace = poutine.trace(mixture).get_trace()
    assert trace.nodes["k"]["scale"] == 1.0


def test_enumeration_marked_outside_is_refused_with_the_order_to_use():
    def latent_only():
        pyro.sample("k", dist.Categorical(torch.ones(2) / 2))

    outside = config_enumerate(kl_annealing(latent_only, beta=0.1), default="parallel")
    expected = (
        "site 'k' became observed or enumerated in a handler applied outside kl_annealing, "
        "after kl_annealing had scaled it: apply that handler inside, e.g. "
        "kl_annealing(config_enumerate(model)) rather than config_enumerate(kl_annealing(model))"
    )
    with pytest.raises(ValueError) as refusal:
        poutine.trace(outside).get_trace()
    assert str(refusal.value).splitlines()[0] == expected  # Pyro adds the trace's shapes below


def test_unobserving_outside_is_refused_saying_the_site_was_left_alone():
    def observed():
        pyro.sample("x", dist.Normal(0.0, 1.0), obs=torch.tensor(0.5))

    with pytest.raises(ValueError) as refusal:
        poutine.trace(poutine.uncondition(kl_annealing(observed, beta=0.1))).get_trace()
    assert str(refusal.value).startswith(
        "site 'x' became latent in a handler applied outside kl_annealing, after kl_annealing "
        "had left it: apply that handler inside"
    )

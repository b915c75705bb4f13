"""The sites a MeanField cannot cover are refused by name with what to do instead, word for
word: a discrete site, a site in a subsampled or a sequential plate, a family off the support.
And the param store name is the digest of the sites and shapes it covers (a param store saved
by one version of the zoo loads into the next only if this text stays the same)."""

import hashlib

import pyro
import pyro.distributions as dist
import pytest
import torch

from zoo.guides import MeanField


def message(call):
    with pytest.raises(ValueError) as error:
        call()
    return str(error.value)


def test_a_discrete_site():
    def model():
        pyro.sample("count", dist.Poisson(2.0))

    assert message(MeanField(model)) == (
        f"site 'count' is discrete (Poisson, support {dist.Poisson(2.0).support}); a mean-field "
        "guide covers continuous sites: mark it for enumeration (infer={'enumerate': "
        "'parallel'}, with TraceEnum_ELBO), or block it out of this guide "
        "(poutine.block(model, hide=[...])) and give it another one in an AutoGuideList"
    )


def test_a_site_in_a_subsampled_plate():
    def model():
        with pyro.plate("data", 100, subsample_size=5):
            pyro.sample("h", dist.Normal(0.0, 1.0))

    assert message(MeanField(model)) == (
        "site 'h' is in the subsampled plate 'data': a mean-field guide has global "
        "parameters; use an amortized guide for local latents"
    )


def test_a_site_in_a_sequential_plate():
    def model():
        for i in pyro.plate("steps", 2):
            pyro.sample(f"h_{i}", dist.Normal(0.0, 1.0))

    assert message(MeanField(model)) == (
        "site 'h_0' is in a sequential plate; use vectorized plates"
    )


def test_a_family_off_the_support():
    def model():
        pyro.sample("rate", dist.LogNormal(0.0, 1.0))

    support = dist.LogNormal(0.0, 1.0).support
    assert message(MeanField(model, families={"rate": "normal"})) == (
        f"family 'normal' does not fit site 'rate' with support {support}; "
        "valid: lognormal, transformed_normal"
    )


def test_the_param_store_name_is_the_digest_of_the_sites_and_shapes():
    def model():
        pyro.sample("m", dist.Normal(0.0, 1.0))
        pyro.sample("w", dist.Dirichlet(torch.ones(3)))

    guide = MeanField(model)
    guide()
    digest = hashlib.sha256(b"m:();w:(3,)").hexdigest()[:10]
    assert guide._pyro_name.startswith(f"MeanField_{digest}")

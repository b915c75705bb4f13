"""The sites a MeanField covers: an auxiliary site (``infer={"is_auxiliary": True}``, which
Pyro's reparameterizers sample for their own use) is left out, and a model with no latent site
at all is refused word for word."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from zoo.guides import MeanField


def test_auxiliary_sites_are_left_out():
    def model():
        pyro.sample("helper", dist.Normal(0.0, 1.0), infer={"is_auxiliary": True})
        pyro.sample("m", dist.Normal(0.0, 1.0))

    guide = MeanField(model)
    assert set(guide()) == {"m"} and guide.family == {"m": "normal"}


def test_a_model_without_latent_sites_is_refused():
    def observed_only():
        pyro.sample("x", dist.Normal(0.0, 1.0), obs=torch.tensor(0.5))

    with pytest.raises(ValueError) as error:
        MeanField(observed_only)()
    assert str(error.value) == "the model has no latent sample sites for a mean-field guide"

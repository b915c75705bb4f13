"""Factors of sites inside a plate keep the plate as a batch dim: the mean-field loss with no
data is the sum over the plate of each element's closed-form KL, computed by hand."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import TraceMeanField_ELBO

from zoo.guides import MeanField


def kl_normal(m, s):
    """KL(Normal(m, s) || Normal(0, 1)), also KL(LogNormal(m, s) || LogNormal(0, 1))."""
    return -math.log(s) + (s**2 + m**2) / 2 - 0.5


def test_lognormal_factors_in_a_plate_sum_their_kls():
    def model():
        with pyro.plate("k", 3):
            pyro.sample("s", dist.LogNormal(0.0, 1.0))

    locs, scales = [0.3, -0.2, 0.5], [0.5, 0.8, 1.2]
    guide = MeanField(model)
    guide()
    guide.initialize("s", torch.tensor(locs).exp(), scale=torch.tensor(scales))
    assert guide.distribution("s").batch_shape == (3,)
    expected = sum(kl_normal(m, s) for m, s in zip(locs, scales))
    assert TraceMeanField_ELBO().loss(model, guide) == pytest.approx(expected, rel=1e-5)


def test_dirichlet_factors_in_a_plate_sum_their_kls():
    prior = torch.tensor([[1.0, 2.0, 3.0], [2.0, 2.0, 2.0]])

    def model():
        with pyro.plate("k", 2):
            pyro.sample("w", dist.Dirichlet(prior))

    guide = MeanField(model)
    guide()
    guide.initialize("w", torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]]), scale=0.2)
    q = guide.distribution("w")
    assert q.batch_shape == (2,) and q.event_shape == (3,)
    # 1 / 0.2^2 = 25 in all, shared out by the mean
    alpha = 25 * torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    expected = torch.distributions.kl_divergence(
        torch.distributions.Dirichlet(alpha), torch.distributions.Dirichlet(prior)
    ).sum()
    assert TraceMeanField_ELBO().loss(model, guide) == pytest.approx(expected.item(), rel=1e-5)

"""AmortizedNormal on a model that is not the zoo's."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

from zoo.guides import AmortizedNormal


def factor_model(x):
    """x_i = W z_i + noise: a linear-Gaussian latent factor model."""
    w = torch.tensor([[1.0], [-2.0], [0.5]])
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(torch.zeros(len(x), 1), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z @ w.T, 0.3).to_event(1), obs=x)


class LinearEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.loc = nn.Linear(3, 1)
        self.raw_scale = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return self.loc(x), self.raw_scale.expand(len(x), 1)


def test_trains_to_the_exact_posterior_of_a_linear_gaussian_model():
    w = torch.tensor([[1.0], [-2.0], [0.5]])
    z = torch.randn(400, 1)
    x = z @ w.T + 0.3 * torch.randn(400, 3)
    guide = AmortizedNormal(
        factor_model,
        LinearEncoder(),
        site="z",
        scale="softplus",
        create_plates=lambda x: pyro.plate("data", len(x)),
    )
    svi = pyro.infer.SVI(
        factor_model, guide, pyro.optim.Adam({"lr": 0.02}), pyro.infer.Trace_ELBO()
    )
    for _ in range(1500):
        svi.step(x)
    # posterior: precision 1 + w'w / s^2, mean = cov * w' x / s^2
    precision = 1 + (w.T @ w).item() / 0.09
    loc = guide.median(x)["z"]
    assert torch.allclose(loc, (x @ w) / 0.09 / precision, atol=0.05)
    assert guide.distribution(x).base_dist.scale[0].item() == pytest.approx(
        precision**-0.5, rel=0.1
    )


def test_two_guides_do_not_share_parameters_through_the_param_store():
    a = AmortizedNormal(
        factor_model, LinearEncoder(), create_plates=lambda x: pyro.plate("data", len(x))
    )
    b = AmortizedNormal(
        factor_model, LinearEncoder(), create_plates=lambda x: pyro.plate("data", len(x))
    )
    x = torch.randn(4, 3)
    a(x), b(x)
    store = pyro.get_param_store()
    assert len(store) == 6  # three parameters each
    assert store.param_name(a.encoder.loc.weight) != store.param_name(b.encoder.loc.weight)


def test_missing_or_observed_site_is_refused_with_the_site_names():
    with pytest.raises(ValueError, match="no sample site 'w'.*'z'"):
        AmortizedNormal(factor_model, LinearEncoder(), site="w")(torch.randn(2, 3))
    with pytest.raises(ValueError, match="'x' is observed"):
        AmortizedNormal(factor_model, LinearEncoder(), site="x")(torch.randn(2, 3))


def test_mean_posterior_and_sample_latent_describe_the_batch():
    x = torch.randn(6, 3)
    guide = AmortizedNormal(
        factor_model, LinearEncoder(), create_plates=lambda x: pyro.plate("data", len(x))
    )
    median = guide.median(x)["z"]
    assert torch.equal(guide.mean(x)["z"], median)
    assert torch.equal(guide.quantiles([0.5], x)["z"][0], median)
    q = guide.get_posterior(x)["z"]
    assert torch.equal(q.mean, median)
    assert guide.sample_latent(x)["z"].shape == (6, 1)

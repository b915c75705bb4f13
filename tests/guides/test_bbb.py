"""Bayes by Backprop: its parameterization, its initialization, and the closed-form KL that
TraceMeanField_ELBO finds for its sites."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F
from pyro.nn import PyroModule, PyroSample

from zoo.guides import BayesByBackprop

PRIOR_SIGMA = 0.5


def linear_net(n_in=4, n_out=3):
    net = PyroModule[torch.nn.Linear](n_in, n_out)
    net.weight = PyroSample(dist.Normal(0.0, PRIOR_SIGMA).expand([n_out, n_in]).to_event(2))
    net.bias = PyroSample(dist.Normal(0.0, PRIOR_SIGMA).expand([n_out]).to_event(1))
    return net


def test_initialization_follows_the_bbb_convention():
    net = linear_net(n_in=100, n_out=50)
    guide = BayesByBackprop(net).setup(torch.zeros(1, 100))
    weight = guide.median()["weight"]
    assert weight.shape == (50, 100)
    assert weight.abs().max() <= 1 / math.sqrt(100)  # nn.Linear's bound
    assert weight.std() > 0.5 / math.sqrt(3 * 100)  # spread over the interval, not zeros
    assert torch.equal(guide.median()["bias"], torch.zeros(50))  # the prior mean
    for name in ("weight", "bias"):
        rho = getattr(guide.rhos, name)
        assert rho.min() >= -5 and rho.max() <= -4
        sigma = F.softplus(rho)
        assert 0.0067 < sigma.min() and sigma.max() < 0.0182


def test_sites_are_independent_normals_with_softplus_scales():
    net = linear_net()
    guide = BayesByBackprop(net, init_rho=(-1.0, -1.0))
    trace = pyro.poutine.trace(guide).get_trace(torch.zeros(2, 4))
    fn = trace.nodes["weight"]["fn"]
    assert isinstance(fn, dist.Independent) and isinstance(fn.base_dist, dist.Normal)
    assert fn.event_shape == (3, 4) and fn.batch_shape == ()
    assert torch.allclose(fn.base_dist.scale, torch.full((3, 4), math.log1p(math.exp(-1.0))))


def test_trace_mean_field_elbo_gives_the_closed_form_kl():
    """With no data the loss is the KL alone: under TraceMeanField_ELBO it must be the
    closed form, with no Monte Carlo noise."""
    net = linear_net()
    guide = BayesByBackprop(net, init_rho=(-2.0, 1.0))
    x = torch.zeros(2, 4)
    guide(x)
    expected = 0.0
    for name in ("weight", "bias"):
        mu = getattr(guide.locs, name).detach()
        sigma = F.softplus(getattr(guide.rhos, name)).detach()
        # KL(N(mu, s^2) || N(0, p^2)) = log(p / s) + (s^2 + mu^2) / (2 p^2) - 1/2, summed
        kl = torch.log(PRIOR_SIGMA / sigma) + (sigma**2 + mu**2) / (2 * PRIOR_SIGMA**2) - 0.5
        expected += kl.sum().item()
    losses = [pyro.infer.TraceMeanField_ELBO().loss(net, guide, x) for _ in range(3)]
    assert losses == pytest.approx([expected] * 3, rel=1e-5)
    monte_carlo = [pyro.infer.Trace_ELBO().loss(net, guide, x) for _ in range(3)]
    assert len(set(monte_carlo)) == 3  # Trace_ELBO estimates the same KL by sampling


def test_quantiles_are_normal_quantiles():
    net = linear_net()
    guide = BayesByBackprop(net).setup(torch.zeros(1, 4))
    q = guide.quantiles([0.1, 0.5, 0.9])["weight"]
    assert q.shape == (3, 3, 4)
    assert torch.allclose(q[1], guide.median()["weight"])
    sigma = F.softplus(guide.rhos.weight).detach()
    assert torch.allclose(q[2] - q[1], 1.2815516 * sigma, rtol=1e-4)


def test_two_guides_keep_their_own_parameters():
    net = linear_net()
    a = BayesByBackprop(net).setup(torch.zeros(1, 4))
    b = BayesByBackprop(net).setup(torch.zeros(1, 4))
    a(torch.zeros(1, 4))
    b(torch.zeros(1, 4))
    assert not torch.equal(a.median()["weight"], b.median()["weight"])
    names = list(pyro.get_param_store().keys())
    assert len(names) == len(set(names)) == 8


def test_svi_fits_a_linear_regression():
    torch.manual_seed(0)
    net = linear_net(n_in=2, n_out=1)
    x = torch.randn(200, 2)
    y = x @ torch.tensor([1.5, -2.0]) + 0.1 * torch.randn(200)

    def model(x, y):
        loc = net(x).squeeze(-1)
        with pyro.plate("data", len(x)):
            pyro.sample("y", dist.Normal(loc, 0.1), obs=y)

    guide = BayesByBackprop(model)
    svi = pyro.infer.SVI(
        model, guide, pyro.optim.Adam({"lr": 0.05}), pyro.infer.TraceMeanField_ELBO()
    )
    for _ in range(300):
        svi.step(x, y)
    assert torch.allclose(guide.median()["weight"], torch.tensor([[1.5, -2.0]]), atol=0.05)


def test_refuses_a_constrained_site():
    def model():
        pyro.sample("scale", dist.LogNormal(0.0, 1.0))

    with pytest.raises(ValueError, match="real-valued"):
        BayesByBackprop(model).setup()


def test_refuses_a_bad_init_rho():
    with pytest.raises(ValueError, match="init_rho"):
        BayesByBackprop(linear_net(), init_rho=(-4.0, -5.0))


# ---- the AutoGuide surface ----------------------------------------------------------------


def net_model(net):
    def model(x, y=None):
        loc = net(x).sum(-1)
        with pyro.plate("data", len(x)):
            pyro.sample("y", dist.Normal(loc, 1.0), obs=y)

    return model


def test_summaries_take_the_models_arguments_before_the_first_call():
    """median(*args) ignored its arguments and failed on a guide never called."""
    x, y = torch.randn(5, 4), torch.randn(5)
    guide = BayesByBackprop(net_model(linear_net()))
    median = guide.median(x, y)
    assert median["weight"].shape == (3, 4)
    assert torch.equal(guide.quantiles([0.5], x, y)["weight"][0], median["weight"])
    assert torch.equal(guide.mean(x, y)["bias"], median["bias"])
    posterior = guide.get_posterior(x, y)
    assert set(posterior) == {"weight", "bias"}
    assert posterior["weight"].base_dist.scale.shape == (3, 4)
    assert guide.sample_latent(x, y)["weight"].shape == (3, 4)


def test_unknown_sites_and_missing_arguments_are_named():
    guide = BayesByBackprop(net_model(linear_net()))
    with pytest.raises(ValueError, match="not set up yet.*'weight'"):
        guide.distribution("weight")
    with pytest.raises(ValueError, match="not set up yet and the model needs arguments"):
        guide.median()
    guide(torch.randn(5, 4), torch.randn(5))
    with pytest.raises(ValueError, match="no latent site 'unknown'; its sites: weight, bias"):
        guide.distribution("unknown")


def test_init_scale_sets_every_sigma_as_in_autonormal():
    guide = BayesByBackprop(net_model(linear_net()), init_scale=0.05)
    sigma = guide.get_posterior(torch.randn(5, 4), torch.randn(5))["weight"].base_dist.scale
    assert torch.allclose(sigma, torch.full((3, 4), 0.05))

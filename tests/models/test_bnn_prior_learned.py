"""prior_scale=learned: one prior sigma per layer, a parameter the ELBO trains (empirical Bayes).

For a Gaussian guide q(w) = N(mu, s^2) and the prior N(0, sigma^2), the closed-form ELBO's
derivative in sigma is sum over the layer's weights and bias of (mu^2 + s^2) / sigma^3 -
1 / sigma, zero at sigma^2 = mean(mu^2 + s^2): the tests compare Pyro's gradient with that.
"""

import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceMeanField_ELBO

from zoo.models import BNN
from zoo.models.bnn import BNNSettings, initial_prior_sigma


def learned_bnn(**settings):
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    bnn = BNN(6, 3, hidden_dims=[4], prior_scale="learned", prior_sigma=0.8, **settings)
    x, y = torch.randn(10, 6), torch.randint(3, (10,))
    bnn.guide(x, y)  # sets the guide up
    return bnn, x, y


def prior_scales(bnn, x, y) -> dict[str, float]:
    trace = poutine.trace(bnn.model).get_trace(x, y)
    return {
        name: float(site["fn"].base_dist.scale.detach().flatten()[0])
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and name.startswith("layers.")
    }


def test_each_layer_has_one_sigma_for_weight_and_bias_started_at_the_fan_in_rule():
    bnn, x, y = learned_bnn()
    scales = prior_scales(bnn, x, y)
    assert scales["layers.0.weight"] == scales["layers.0.bias"]
    assert scales["layers.0.weight"] == pytest.approx(initial_prior_sigma(0.8, 6))
    assert scales["layers.1.weight"] == pytest.approx(0.8 * math.sqrt(2 / 4))
    trace = poutine.trace(bnn.model).get_trace(x, y)
    params = [n for n, site in trace.nodes.items() if site["type"] == "param"]
    assert params == ["layers.0.prior_sigma", "layers.1.prior_sigma"]


@pytest.mark.parametrize("sigma", [0.05, 0.3, 2.0])
def test_the_elbo_gradient_in_sigma_is_the_closed_form_one(sigma):
    bnn, x, y = learned_bnn()
    for layer in bnn.layers:
        layer.prior_sigma = torch.tensor(sigma)
    posterior = bnn.approximation.get_posterior(x, y)
    loss = TraceMeanField_ELBO().differentiable_loss(bnn.model, bnn.guide, x, y)
    store = pyro.get_param_store()
    for i in range(2):
        unconstrained = store._params[f"layers.{i}.prior_sigma"]
        (grad,) = torch.autograd.grad(loss, unconstrained, retain_graph=True)
        second_moments = torch.cat(
            [
                (q.base_dist.loc**2 + q.base_dist.scale**2).flatten()
                for name, q in posterior.items()
                if name.startswith(f"layers.{i}.")
            ]
        )
        d_elbo_d_sigma = (second_moments / sigma**3 - 1 / sigma).sum()
        # loss = -ELBO, and sigma = exp(u) under the positive constraint: d/du = sigma d/dsigma
        assert grad.item() == pytest.approx(-(d_elbo_d_sigma * sigma).item(), rel=1e-4)


def test_training_moves_each_sigma_towards_the_second_moment_of_its_layer():
    bnn, x, y = learned_bnn()
    optim = pyro.optim.Adam({"lr": 0.05})
    svi = pyro.infer.SVI(bnn.model, bnn.guide, optim, TraceMeanField_ELBO())
    for _ in range(300):
        svi.step(x, y)
    posterior = bnn.approximation.get_posterior(x, y)
    for i, layer in enumerate(bnn.layers):
        moments = torch.cat(
            [
                (q.base_dist.loc**2 + q.base_dist.scale**2).flatten()
                for name, q in posterior.items()
                if name.startswith(f"layers.{i}.")
            ]
        )
        assert float(layer.prior_sigma) == pytest.approx(moments.mean().sqrt().item(), rel=0.1)


def test_a_learned_scale_needs_the_gaussian_prior():
    with pytest.raises(ValueError, match="it needs prior=gaussian, not scale_mixture"):
        BNNSettings(prior="scale_mixture", prior_scale="learned")
    with pytest.raises(ValueError, match="prior_scale=learned needs prior=gaussian"):
        BNN(6, 3, hidden_dims=[4], prior="scale_mixture", prior_scale="learned")


@pytest.mark.parametrize("guide", ["map", "ensemble"])
def test_a_learned_scale_needs_a_distribution_over_the_weights(guide):
    with pytest.raises(ValueError, match=f"it needs guide=bbb, not {guide}"):
        BNNSettings(prior_scale="learned", guide=guide)

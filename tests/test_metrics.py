"""The ELBO parts and the importance-weighted log-likelihood on a model whose evidence is
known in closed form: z ~ N(0, 1), x | z ~ N(z, s^2), so x ~ N(0, 1 + s^2) and the
posterior is N(x / (1 + s^2), s^2 / (1 + s^2))."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from zoo.metrics import elbo_parts, importance_log_likelihood

S = 0.5
X = torch.tensor([[0.3], [-1.2], [2.0], [0.7]])


def model(x):
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(torch.zeros(len(x), 1), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z, S).to_event(1), obs=x)


def exact_guide(x):
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal(x / (1 + S**2), math.sqrt(S**2 / (1 + S**2))).to_event(1))


def poor_guide(x):
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal(torch.zeros_like(x), 1.5).to_event(1))


def log_evidence(x):
    return dist.Normal(0.0, math.sqrt(1 + S**2)).log_prob(x).squeeze(-1)


def test_importance_weights_with_the_exact_posterior_give_the_evidence_for_any_k():
    estimate = importance_log_likelihood(model, exact_guide, X, num_samples=3, chunk_size=2)
    assert estimate.shape == (len(X),)
    assert torch.allclose(estimate, log_evidence(X), atol=1e-5)


def test_importance_weights_with_a_poor_guide_approach_the_evidence_as_k_grows():
    truth = log_evidence(X)
    few = importance_log_likelihood(model, poor_guide, X, num_samples=1)
    many = importance_log_likelihood(model, poor_guide, X, num_samples=20000, chunk_size=5000)
    assert torch.allclose(many, truth, atol=0.02)
    assert (few - truth).abs().mean() > (many - truth).abs().mean()


def test_elbo_parts_sum_to_the_evidence_under_the_exact_posterior():
    # the reconstruction term is a one-sample estimate: its mean over draws is exact
    draws = [elbo_parts(model, exact_guide, X) for _ in range(2000)]
    elbo = sum(r - k for r, k in draws) / len(draws)
    assert elbo == pytest.approx(log_evidence(X).sum().item(), abs=0.05)
    expected_kl = torch.distributions.kl_divergence(
        dist.Normal(X / (1 + S**2), math.sqrt(S**2 / (1 + S**2))), dist.Normal(0.0, 1.0)
    ).sum()
    assert draws[0][1] == pytest.approx(expected_kl.item(), rel=1e-5)  # closed form: no noise

"""``elbo_parts`` against a hand computation on a model with two latent and two observed sites,
interleaved, one latent pair with a closed-form KL and one without, and a keyword argument.

The VAE, the only caller today, has one latent and one observed site, each pair with a
registered KL, and passes no keyword: a sum that kept only the last site, a loop that stopped
at the first observed site, or a Monte Carlo term of the wrong sign passed every test before
this one.
"""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions.kl import kl_divergence

from zoo.metrics import elbo_parts

S = 0.5
X1, X2 = torch.tensor(0.9), torch.tensor(-1.1)
SHIFT = 0.8  # a keyword argument that both the model and the guide must receive
Q1 = dist.Normal(0.3 + SHIFT, 0.7)  # q(z1): its KL to N(0, 1) has a closed form
Q2 = dist.Normal(-0.4, 0.6)  # q(z2): torch registers no KL to a Student t


def model(x1, x2, *, shift):
    z1 = pyro.sample("z1", dist.Normal(0.0, 1.0))
    pyro.sample("x1", dist.Normal(z1 + shift, S), obs=x1)  # an observed site before a latent
    z2 = pyro.sample("z2", dist.StudentT(3.0, 0.0, 1.0))
    pyro.sample("x2", dist.Normal(z2, S), obs=x2)


def recording_guide(draws: dict):
    def guide(x1, x2, *, shift):
        assert shift == SHIFT
        draws["z1"] = pyro.sample("z1", dist.Normal(0.3 + shift, 0.7))
        draws["z2"] = pyro.sample("z2", Q2)

    return guide


def test_the_monte_carlo_pair_has_no_closed_form_kl():
    with pytest.raises(NotImplementedError):
        kl_divergence(Q2, dist.StudentT(3.0, 0.0, 1.0))


def test_elbo_parts_sum_every_site_with_the_closed_form_or_the_monte_carlo_kl():
    draws: dict = {}
    reconstruction, kl = elbo_parts(model, recording_guide(draws), X1, X2, shift=SHIFT)
    z1, z2 = draws["z1"], draws["z2"]
    log_p_x1, log_p_x2 = dist.Normal(z1 + SHIFT, S).log_prob(X1), dist.Normal(z2, S).log_prob(X2)
    expected_kl = kl_divergence(Q1, dist.Normal(0.0, 1.0)) + (
        Q2.log_prob(z2) - dist.StudentT(3.0, 0.0, 1.0).log_prob(z2)
    )
    assert reconstruction == pytest.approx((log_p_x1 + log_p_x2).item(), rel=1e-6)
    assert kl == pytest.approx(expected_kl.item(), rel=1e-6)

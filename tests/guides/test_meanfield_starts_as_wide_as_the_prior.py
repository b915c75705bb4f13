"""A Beta or Dirichlet factor starts at its mean as wide as the prior: the total concentration
T with var_i = m_i (1 - m_i) / (T + 1) equal to the prior's variance (summed over a
Dirichlet's categories), else a flat start (T = the number of categories). Each case is
computed by hand from the prior's variance formula."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions.transforms import SigmoidTransform, StickBreakingTransform

from zoo.guides import MeanField


def concentrations(guide, name):
    """A Beta factor's (concentration1, concentration0), a Dirichlet's concentration."""
    q = guide.distribution(name)
    q = getattr(q, "base_dist", q)
    if guide.family[name] == "beta":
        return q.concentration1.detach(), q.concentration0.detach()
    return q.concentration.detach()


def beta_site(prior):
    def model():
        pyro.sample("p", prior)

    return model


def test_a_beta_factor_has_the_priors_variance_at_its_own_mean():
    """Beta(2, 2): variance ab / ((a + b)^2 (a + b + 1)) = 4 / 80 = 0.05. At mean 0.2 the
    spread m (1 - m) is 0.16, so T = 0.16 / 0.05 - 1 = 2.2: concentrations 0.44 and 1.76."""
    guide = MeanField(beta_site(dist.Beta(2.0, 2.0)), init_values={"p": torch.tensor(0.2)})
    guide()
    c1, c0 = concentrations(guide, "p")
    assert c1.item() == pytest.approx(0.44, rel=1e-4)
    assert c0.item() == pytest.approx(1.76, rel=1e-4)
    assert guide.distribution("p").variance.item() == pytest.approx(0.05, rel=1e-4)


def test_dirichlet_factors_in_a_plate_each_take_their_own_priors_summed_variance():
    """Started at the uniform mean (init_to_feasible), the spread summed over 3 categories is
    3 (1/3)(2/3) = 2/3. Dirichlet(a), a0 = sum a: var_i = a_i (a0 - a_i) / (a0^2 (a0 + 1)).
    [1, 2, 3]: (5 + 8 + 9) / 252 = 22/252, T = (2/3) (252/22) - 1 = 146/22.
    [2, 2, 2]: 24/252, T = 7 - 1 = 6. Each category gets T / 3."""
    prior = torch.tensor([[1.0, 2.0, 3.0], [2.0, 2.0, 2.0]])

    def model():
        with pyro.plate("groups", 2):
            pyro.sample("w", dist.Dirichlet(prior))

    guide = MeanField(model)
    guide()
    expected = torch.tensor([146 / 22 / 3, 6 / 3]).unsqueeze(-1).expand(2, 3)
    assert torch.allclose(concentrations(guide, "w"), expected, rtol=1e-4)


def test_priors_without_a_variance_start_flat():
    """A logistic-normal prior has no variance in closed form: the Beta starts at T = 2 (here
    Beta(1, 1) at mean 1/2), the Dirichlet at T = 3 categories (all ones at the uniform mean)."""

    def model():
        pyro.sample("p", dist.TransformedDistribution(dist.Normal(0.0, 1.0), SigmoidTransform()))
        pyro.sample(
            "w",
            dist.TransformedDistribution(
                dist.Normal(torch.zeros(2), 1.0).to_event(1), StickBreakingTransform()
            ),
        )

    guide = MeanField(model)
    guide()
    assert guide.family == {"p": "beta", "w": "dirichlet"}
    c1, c0 = concentrations(guide, "p")
    assert (c1.item(), c0.item()) == pytest.approx((1.0, 1.0), rel=1e-5)
    assert torch.allclose(concentrations(guide, "w"), torch.ones(3), rtol=1e-5)


def test_a_prior_wider_than_any_beta_of_the_start_mean_starts_flat():
    """Beta(0.5, 0.5): variance 0.25 / 2 = 0.125, more than the spread 0.05 * 0.95 = 0.0475 of
    any Beta of mean 0.05 (T would be negative): T = 2, concentrations 0.1 and 1.9."""
    guide = MeanField(beta_site(dist.Beta(0.5, 0.5)), init_values={"p": torch.tensor(0.05)})
    guide()
    c1, c0 = concentrations(guide, "p")
    assert (c1.item(), c0.item()) == pytest.approx((0.1, 1.9), rel=1e-4)


def test_a_start_almost_as_wide_as_the_spread_is_kept_at_a_total_of_a_hundredth():
    """Beta(0.1, 0.1): variance 0.01 / (0.04 * 1.2) = 0.208333; at mean 0.3 the spread is 0.21,
    T = 0.21 / 0.208333 - 1 = 0.008, raised to 0.01: concentrations 0.003 and 0.007."""
    guide = MeanField(beta_site(dist.Beta(0.1, 0.1)), init_values={"p": torch.tensor(0.3)})
    guide()
    c1, c0 = concentrations(guide, "p")
    assert (c1.item(), c0.item()) == pytest.approx((0.003, 0.007), rel=1e-3)

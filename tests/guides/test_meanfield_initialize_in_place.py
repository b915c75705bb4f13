"""MeanField.initialize sets the existing parameters (an optimizer built on them trains the
new values), takes a Beta's or Dirichlet's total concentration as given, and computes it in
the site's dtype."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from zoo.guides import MeanField


def beta_model(dtype=torch.float32):
    def model():
        pyro.sample("p", dist.Beta(torch.tensor(2.0, dtype=dtype), torch.tensor(3.0, dtype=dtype)))

    return model


def concentrations(guide):
    q = guide.distribution("p")
    return q.concentration1.detach(), q.concentration0.detach()


def test_initialize_sets_the_parameters_an_optimizer_already_holds():
    guide = MeanField(beta_model())
    guide()
    held = list(guide.parameters())
    guide.initialize("p", torch.tensor(0.25), total_concentration=8.0)
    assert all(a is b for a, b in zip(held, guide.parameters()))
    assert held[0].exp().item() == pytest.approx(2.0, rel=1e-5)  # 0.25 * 8
    assert held[1].exp().item() == pytest.approx(6.0, rel=1e-5)


def test_a_given_total_concentration_is_shared_out_by_the_mean():
    guide = MeanField(beta_model())
    guide()
    guide.initialize("p", torch.tensor(0.2), total_concentration=10)
    c1, c0 = concentrations(guide)
    assert (c1.item(), c0.item()) == pytest.approx((2.0, 8.0), rel=1e-5)


def test_a_double_precision_site_gets_its_total_in_double_precision():
    """0.1 and 0.3 have no exact float32 value: a total made in float32 is off by 1e-8."""
    guide = MeanField(beta_model(torch.float64))
    guide()
    mean = torch.tensor(0.2, dtype=torch.float64)
    guide.initialize("p", mean, total_concentration=0.1)
    c1, _ = concentrations(guide)
    assert c1.dtype == torch.float64
    assert c1.item() == pytest.approx((mean * 0.1).item(), rel=1e-12)
    guide.initialize("p", mean, scale=0.3)
    c1, _ = concentrations(guide)
    assert c1.item() == pytest.approx((mean / 0.3**2).item(), rel=1e-12)

"""A Beta or Dirichlet factor started on the boundary of its support (an init value of 0 or 1,
a vertex of the simplex) moves the start 1e-6 inside, so every concentration is finite and
positive: Beta(2, 3) has variance 6 / 150 = 0.04, so at mean 1e-6 the prior-wide total is
about 1e-6 / 0.04 - 1 < 0, and the flat start T = 2 applies."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from zoo.guides import MeanField


def beta_model():
    pyro.sample("p", dist.Beta(2.0, 3.0))


@pytest.mark.parametrize("start,expected", [(0.0, (2e-6, 2.0)), (1.0, (2.0, 2e-6))])
def test_a_beta_started_at_an_end_of_the_interval_starts_just_inside(start, expected):
    guide = MeanField(beta_model, init_values={"p": torch.tensor(start)})
    guide()
    q = guide.distribution("p")
    c1, c0 = q.concentration1.item(), q.concentration0.item()
    # 2% : in float32, 1 - 1e-6 rounds to 1 - 1.013e-6 (the spacing near 1 is 6e-8)
    assert (c1, c0) == pytest.approx(expected, rel=0.02)


def test_a_dirichlet_started_at_a_vertex_keeps_every_concentration_positive():
    def model():
        pyro.sample("w", dist.Dirichlet(torch.ones(3)))

    guide = MeanField(model, init_values={"w": torch.tensor([1.0, 0.0, 0.0])})
    guide()
    guide.initialize("w", torch.tensor([1.0, 0.0, 0.0]), total_concentration=4.0)
    alpha = guide.distribution("w").concentration
    assert torch.allclose(alpha, torch.tensor([4.0, 4e-6, 4e-6]), rtol=1e-3)

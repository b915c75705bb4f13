"""The scale-mixture density against a direct computation, for any parameters (hypothesis).

``log(pi N(x | loc, s1) + (1 - pi) N(x | loc, s2))`` is computed in double precision from the
two normal densities themselves, where they do not underflow; far in the tails the mixture
is the wider component's log density plus log of its weight.
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from zoo.distributions import ScaleMixtureNormal

EXAMPLES = settings(max_examples=80)
scales = st.floats(math.exp(-8), math.exp(3))
weights = st.floats(0.0, 1.0)


def normal_density(x, loc, scale):
    return math.exp(-(((x - loc) / scale) ** 2) / 2) / (scale * math.sqrt(2 * math.pi))


def log_prob(x, loc, scale1, scale2, pi, dtype=torch.float64):
    d = ScaleMixtureNormal(
        torch.tensor(loc, dtype=dtype),
        torch.tensor(scale1, dtype=dtype),
        torch.tensor(scale2, dtype=dtype),
        torch.tensor(pi, dtype=dtype),
    )
    return d.log_prob(torch.tensor(x, dtype=dtype)).item()


@EXAMPLES
@given(
    loc=st.floats(-10, 10),
    scale1=scales,
    scale2=scales,
    pi=weights,
    z=st.floats(-30, 30),
)
def test_log_density_is_the_log_of_the_weighted_sum_of_the_two_densities(
    loc, scale1, scale2, pi, z
):
    x = loc + z * max(scale1, scale2)  # within 30 sd of the wider component
    direct = pi * normal_density(x, loc, scale1) + (1 - pi) * normal_density(x, loc, scale2)
    if direct < 1e-250:  # out of double range: the formula itself cannot be evaluated
        return
    assert log_prob(x, loc, scale1, scale2, pi) == pytest.approx(math.log(direct), abs=1e-9)


@EXAMPLES
@given(scale1=st.floats(0.5, 5.0), scale2=st.floats(1e-3, 0.05), pi=st.floats(0.01, 0.99))
def test_far_in_the_tails_the_wide_component_remains(scale1, scale2, pi):
    x = 40 * scale1  # the narrow component's density is exp(-(40 s1 / s2)^2 / 2): zero in doubles
    wide = math.log(pi) - (x / scale1) ** 2 / 2 - math.log(scale1 * math.sqrt(2 * math.pi))
    assert log_prob(x, 0.0, scale1, scale2, pi) == pytest.approx(wide, rel=1e-12)
    assert math.isfinite(log_prob(x, 0.0, scale1, scale2, pi, dtype=torch.float32))


@settings(max_examples=20)
@given(loc=st.floats(-3, 3), scale1=st.floats(0.1, 3.0), scale2=st.floats(0.1, 3.0), pi=weights)
def test_the_density_integrates_to_one(loc, scale1, scale2, pi):
    width = 12 * max(scale1, scale2)
    grid = torch.linspace(loc - width, loc + width, 20001, dtype=torch.float64)
    d = ScaleMixtureNormal(
        torch.tensor(loc, dtype=torch.float64),
        scale1,
        scale2,
        torch.tensor(pi, dtype=torch.float64),
    )
    assert torch.trapezoid(d.log_prob(grid).exp(), grid).item() == pytest.approx(1.0, abs=1e-6)


@settings(max_examples=20)
@given(pi=weights, scale1=scales, scale2=scales, seed=st.integers(0, 2**16))
def test_expanded_batches_give_the_density_of_each_element(pi, scale1, scale2, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 4, generator=g, dtype=torch.float64)
    d = ScaleMixtureNormal(torch.tensor(0.0, dtype=torch.float64), scale1, scale2, pi)
    batch = d.expand((3, 4)).log_prob(x)
    assert batch.shape == (3, 4)
    for (i, j), value in zip(
        torch.cartesian_prod(torch.arange(3), torch.arange(4)).tolist(), batch.flatten().tolist()
    ):
        assert value == pytest.approx(log_prob(x[i, j].item(), 0.0, scale1, scale2, pi), abs=1e-12)

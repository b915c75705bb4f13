"""Each Normal-based factor starts centred on its init value: the median is the value given
(a LogNormal's below 1 too, a transformed Normal's through its transform), a LogNormal started
at 0 has a finite log-loc, and the scale is exact in the site's dtype."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F

from zoo.guides import MeanField


def model():
    pyro.sample("m", dist.Normal(0.0, 1.0))
    pyro.sample("s", dist.HalfNormal(1.0))  # support [0, inf): 0 is a feasible start
    pyro.sample("u", dist.Uniform(-1.0, 2.0))


START = {"m": torch.tensor(-0.7), "s": torch.tensor(0.25), "u": torch.tensor(1.5)}


def test_the_median_of_every_factor_is_its_init_value():
    guide = MeanField(model, init_values=START)
    guide()
    assert guide.family == {"m": "normal", "s": "lognormal", "u": "transformed_normal"}
    median = guide.median()
    for name, value in START.items():
        assert median[name].item() == pytest.approx(value.item(), rel=1e-5), name


def test_a_lognormal_started_at_zero_has_a_finite_log_loc():
    guide = MeanField(model, init_values={"s": torch.tensor(0.0)})
    guide()
    assert guide.s_loc.item() == pytest.approx(math.log(1e-30), rel=1e-5)


def test_a_double_precision_site_gets_its_scale_in_double_precision():
    def double():
        pyro.sample("m", dist.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0))

    guide = MeanField(double, init_scale=0.3)
    guide()
    assert F.softplus(guide.m_scale_raw).item() == pytest.approx(0.3, rel=1e-12)
    guide.initialize("m", torch.tensor(0.0, dtype=torch.float64), scale=0.1)
    assert F.softplus(guide.m_scale_raw).item() == pytest.approx(0.1, rel=1e-12)


def test_an_init_value_given_as_a_number_takes_the_sites_dtype():
    def double():
        pyro.sample("m", dist.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0))

    guide = MeanField(double, init_values={"m": 0.1})
    guide()
    assert guide.m_loc.dtype == torch.float64 and guide.m_loc.item() == 0.1

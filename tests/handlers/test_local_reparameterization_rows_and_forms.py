"""Local reparameterization's noise is per row, the bias's too; a bias passed by keyword is
the same bias as one passed by position; ``local_reparameterization(fn)`` wraps ``fn``."""

import math

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine

from zoo.handlers import linear, local_reparameterization


def sampled_layer(q_w, q_b=None, bias_by_keyword=False):
    """x -> linear(x, w, b), w ~ q_w and b ~ q_b drawn at sample sites (b a plain tensor or
    None when q_b is not a distribution)."""

    def layer(x):
        w = pyro.sample("w", q_w.to_event(2))
        b = pyro.sample("b", q_b.to_event(1)) if isinstance(q_b, dist.Normal) else q_b
        return linear(x, w, bias=b) if bias_by_keyword else linear(x, w, b)

    return layer


def test_two_rows_get_independent_noise_the_bias_included():
    """By hand: rows n and m of y = x W^T + b are sampled independently, so their covariance
    over draws is 0; drawing the bias once for the batch would make it sigma_b^2 (here 4,
    against a variance of 4.02: a correlation near 1)."""
    torch.manual_seed(0)
    x = torch.randn(2, 3)
    q_w = dist.Normal(torch.randn(1, 3), 0.1)
    q_b = dist.Normal(torch.randn(1), 2.0)
    draws = 4000
    with local_reparameterization():
        y = torch.stack([sampled_layer(q_w, q_b)(x)[:, 0] for _ in range(draws)])  # (S, 2)
    variance = (x**2 @ (q_w.scale**2).T).squeeze(-1) + q_b.scale**2
    assert torch.allclose(y.var(0), variance, rtol=5 * math.sqrt(2 / draws))
    correlation = torch.corrcoef(y.T)[0, 1]
    assert abs(correlation) < 5 / math.sqrt(draws)


def test_a_bias_by_keyword_is_the_bias_by_position():
    x = torch.randn(4, 3)
    q_w = dist.Normal(torch.randn(2, 3), 0.5)
    for q_b in (dist.Normal(torch.randn(2), 1.0), torch.tensor([100.0, -100.0])):
        outputs = []
        for by_keyword in (False, True):
            pyro.set_rng_seed(0)
            with local_reparameterization():
                outputs.append(sampled_layer(q_w, q_b, by_keyword)(x))
        assert torch.equal(outputs[0], outputs[1])


def test_local_reparameterization_wraps_a_function_as_well():
    """``local_reparameterization(fn)`` is ``fn`` under the handler: the same seed gives the
    output of the context manager, not the layer at the drawn weights."""
    x = torch.randn(1, 3).expand(8, 3)
    layer = sampled_layer(dist.Normal(torch.randn(2, 3), 0.5))
    pyro.set_rng_seed(1)
    with poutine.trace() as tracer:
        wrapped = local_reparameterization(layer)(x)
    pyro.set_rng_seed(1)
    with local_reparameterization():
        managed = layer(x)
    assert torch.equal(wrapped, managed)
    assert not torch.allclose(wrapped, F.linear(x, tracer.trace.nodes["w"]["value"]))
    assert not torch.allclose(wrapped[0].expand_as(wrapped), wrapped)  # noise per row

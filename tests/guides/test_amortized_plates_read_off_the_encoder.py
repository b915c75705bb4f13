"""AmortizedNormal without ``create_plates`` reads each of the site's plates off the encoder's
output: every plate of a site in two plates (not only the first), and a plate of size one
where the encoder's output has no batch dim for it (it broadcasts, as in the model)."""

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from zoo.guides import AmortizedNormal


class GridEncoder(nn.Module):
    """x of shape (channels, rows) -> loc and raw scale of that shape."""

    def __init__(self):
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return x + self.shift, torch.zeros_like(x)


def grid_model(x):
    # a latent per (channel, row): the site lives in two plates
    with pyro.plate("rows", x.shape[1], dim=-1), pyro.plate("channels", x.shape[0], dim=-2):
        z = pyro.sample("z", dist.Normal(torch.zeros_like(x), 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def frames(trace, site):
    return {(f.name, f.size, f.dim) for f in trace.nodes[site]["cond_indep_stack"]}


def test_a_site_in_two_plates_is_drawn_in_both():
    x = torch.randn(3, 4)
    guide = AmortizedNormal(grid_model, GridEncoder())
    trace = pyro.poutine.trace(guide).get_trace(x)
    assert frames(trace, "z") == {("rows", 4, -1), ("channels", 3, -2)}
    model_trace = pyro.poutine.trace(grid_model).get_trace(x)
    assert frames(trace, "z") == frames(model_trace, "z")
    # and the ELBO of the pair is defined: Pyro checks that the guide's plates are the model's
    loss = pyro.infer.Trace_ELBO().differentiable_loss(grid_model, guide, x)
    assert torch.isfinite(loss)


class SqueezingEncoder(nn.Module):
    """x of shape (1, 2), a batch of one -> loc and raw scale of shape (2,): no batch dim."""

    def __init__(self):
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(2))

    def forward(self, x):
        loc = x[0] + self.shift
        return loc, torch.zeros_like(loc)


def one_point_model(x):
    with pyro.plate("data", len(x), dim=-1):
        z = pyro.sample("z", dist.Normal(torch.zeros(len(x), 2), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)


def test_an_encoder_output_without_the_plates_dim_gets_a_plate_of_size_one():
    x = torch.tensor([[0.5, -1.0]])
    guide = AmortizedNormal(one_point_model, SqueezingEncoder())
    trace = pyro.poutine.trace(guide).get_trace(x)
    assert frames(trace, "z") == {("data", 1, -1)}
    assert trace.nodes["z"]["value"].shape == (1, 2)
    loss = pyro.infer.Trace_ELBO().differentiable_loss(one_point_model, guide, x)
    assert torch.isfinite(loss)

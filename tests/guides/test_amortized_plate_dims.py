"""AmortizedNormal puts the site in the model's own plate dims: a data plate at dim -2 (a
model with a plate of its own at dim -1 inside) is mirrored at dim -2, whether the guide reads
its size off the encoder's output or draws the model's random subsample."""

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from zoo.guides import AmortizedNormal


class Encoder(nn.Module):
    """x of shape (rows, 1, 1) -> loc and raw scale of shape (rows, 1, 2)."""

    def __init__(self):
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(2))

    def forward(self, x):
        loc = x.expand(len(x), 1, 2) + self.shift
        return loc, torch.zeros_like(loc)


def model(x, subsample_size=None):
    with pyro.plate("data", len(x), subsample_size=subsample_size, dim=-2) as rows:
        z = pyro.sample("z", dist.Normal(torch.zeros(len(rows), 1, 2), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True), 1.0).to_event(1), obs=x[rows])


def test_a_plate_read_off_the_encoder_keeps_the_models_dim():
    x = torch.randn(5, 1, 1)
    trace = pyro.poutine.trace(AmortizedNormal(model, Encoder())).get_trace(x)
    frame = trace.nodes["z"]["cond_indep_stack"][0]
    assert (frame.name, frame.size, frame.dim) == ("data", 5, -2)
    assert trace.nodes["z"]["value"].shape == (5, 1, 2)


def test_a_random_subsample_keeps_the_models_dim():
    x = torch.randn(8, 1, 1)
    trace = pyro.poutine.trace(AmortizedNormal(model, Encoder())).get_trace(x, 3)
    frame = trace.nodes["z"]["cond_indep_stack"][0]
    assert (frame.name, frame.size, frame.dim) == ("data", 3, -2)

"""AmortizedNormal against hand computations with a fixed encoder: q(z | x) = Normal(loc(x),
exp(raw) or softplus(raw)) with the site's event dim, its quantiles loc + scale * Phi^-1(q),
the encoder's inputs (the model's first argument, ``encoder_inputs``, the rows of a
subsample), and a data plate sized by each batch."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

from zoo.guides import AmortizedNormal


def model(x, c=None):
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(torch.zeros(len(x), 2), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True), 1.0).to_event(1), obs=x)


class FixedEncoder(nn.Module):
    """loc = (x, 2x), raw scale = (-1, 0.5) for every row; records what it was given."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))
        self.seen = []

    def forward(self, x, *rest):
        self.seen.append((x, *rest))
        loc = torch.cat([x, 2 * x], -1)
        return loc, torch.tensor([-1.0, 0.5]).expand(len(x), 2)


X = torch.tensor([[0.5], [-1.0], [2.0]])


@pytest.mark.parametrize(
    "scale,expected",
    [
        ("exp", [math.exp(-1.0), math.exp(0.5)]),
        ("softplus", [math.log1p(math.exp(-1.0)), math.log1p(math.exp(0.5))]),
    ],
)
def test_q_is_a_normal_of_the_encoders_loc_and_scale(scale, expected):
    guide = AmortizedNormal(model, FixedEncoder(), scale=scale)
    q = guide.distribution(X)
    assert q.event_shape == (2,) and q.batch_shape == (3,)
    assert torch.allclose(q.base_dist.loc, torch.cat([X, 2 * X], -1))
    assert torch.allclose(q.base_dist.scale, torch.tensor(expected).expand(3, 2))


def test_quantiles_are_loc_plus_scale_times_the_normal_quantile():
    guide = AmortizedNormal(model, FixedEncoder())
    levels = [0.1586553, 0.5, 0.8413447]  # Phi(-1), Phi(0), Phi(1)
    q = guide.quantiles(levels, X)["z"]
    loc, scale = torch.cat([X, 2 * X], -1), torch.tensor([math.exp(-1.0), math.exp(0.5)])
    assert q.shape == (3, 3, 2)
    for k, sd in enumerate([-1.0, 0.0, 1.0]):
        assert torch.allclose(q[k], loc + sd * scale, atol=1e-5)


def test_an_unknown_scale_is_refused_with_the_valid_ones():
    with pytest.raises(ValueError) as error:
        AmortizedNormal(model, FixedEncoder(), scale="relu")
    assert str(error.value) == "scale must be one of ['exp', 'softplus'], got 'relu'"


def test_encoder_inputs_choose_what_the_encoder_sees():
    encoder = FixedEncoder()
    c = torch.ones(3, 1)
    guide = AmortizedNormal(model, encoder, encoder_inputs=lambda x, c: (x, c))
    guide(X, c)
    assert len(encoder.seen[-1]) == 2
    assert encoder.seen[-1][0] is X and encoder.seen[-1][1] is c


def test_a_subsample_from_create_plates_gives_the_encoder_those_rows():
    encoder = FixedEncoder()
    rows = torch.tensor([2, 0])
    label, weights, scalar = "not a tensor", torch.ones(5), torch.tensor(2.0)
    per_row = torch.tensor([10.0, 11.0, 12.0])
    guide = AmortizedNormal(
        model,
        encoder,
        create_plates=lambda x, *rest: pyro.plate("data", len(x), subsample=rows),
        encoder_inputs=lambda x, *rest: (x, label, weights, scalar, per_row),
    )
    z = guide(X)["z"]
    seen = encoder.seen[-1]
    assert torch.equal(seen[0], X[rows]) and z.shape == (2, 2)
    assert torch.equal(seen[4], torch.tensor([12.0, 10.0]))  # one value per row: subsampled
    # what does not have a row per data point is passed as it is
    assert seen[1] is label and seen[2] is weights and seen[3] is scalar


def test_without_create_plates_the_plate_takes_each_batchs_size():
    guide = AmortizedNormal(model, FixedEncoder())
    guide(X)
    trace = pyro.poutine.trace(guide).get_trace(torch.zeros(5, 1))
    frame = trace.nodes["z"]["cond_indep_stack"][0]
    assert trace.nodes["z"]["value"].shape == (5, 2) and (frame.name, frame.size) == ("data", 5)

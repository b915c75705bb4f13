"""A site whose support names fewer event dims than the site has (as Pyro's ImproperUniform
does): the transformed-Normal factor still has the site's batch and event shapes, so it sits
in the site's plates."""

import pyro
import pyro.distributions as dist
import torch

from zoo.guides import MeanField


class SimplexRows(dist.Independent):
    """Rows of simplex vectors, event shape (rows, categories), whose support is the simplex
    of one row (event dim 1)."""

    @property
    def support(self):
        return self.base_dist.support


def model():
    with pyro.plate("k", 2):
        pyro.sample("w", SimplexRows(dist.Dirichlet(torch.ones(2, 4, 3)), 1))


def test_the_factor_takes_the_sites_event_dims_and_stays_in_its_plate():
    guide = MeanField(model, families={"w": "transformed_normal"})
    values = guide()
    q = guide.distribution("w")
    assert (q.batch_shape, q.event_shape) == ((2,), (4, 3))
    assert values["w"].shape == (2, 4, 3)
    assert torch.allclose(values["w"].sum(-1), torch.ones(2, 4))

"""BayesByBackprop on a subsampled plate (parameters for every row, as AutoNormal keeps
them, each subsample reading its own rows), on float64 sites, and its param store name."""

import hashlib

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions import constraints

from zoo.guides import BayesByBackprop

ROWS = 10


def rows_model(idx):
    """A latent 2 x 3 matrix per row of a data set of ROWS rows, of which ``idx`` are drawn
    (two event dims: the plate's dim is then the first of three, not the first of two)."""
    with pyro.plate("data", ROWS, subsample=idx):
        pyro.sample("z", dist.Normal(torch.zeros(len(idx), 2, 3), 1.0).to_event(2))


def rows_guide():
    return BayesByBackprop(rows_model, create_plates=lambda idx: pyro.plate("data", ROWS, subsample=idx))


def test_a_subsampled_plate_gets_parameters_for_every_row_repeating_the_first_subsample():
    guide = rows_guide().setup(torch.tensor([1, 3, 5, 7]))
    loc, rho = guide.locs.z, guide.rhos.z
    assert loc.shape == rho.shape == (ROWS, 2, 3)
    # periodic_repeat along the plate's dim (-3 for two event dims): rows 4-7 repeat 0-3
    assert torch.equal(loc[4:8], loc[0:4]) and torch.equal(loc[8:], loc[0:2])


def test_each_subsample_is_drawn_from_its_own_rows():
    guide = rows_guide().setup(torch.tensor([1, 3, 5, 7]))
    with torch.no_grad():
        guide.locs.z.copy_(torch.arange(6.0 * ROWS).reshape(ROWS, 2, 3))
    idx = torch.tensor([0, 9])
    fn = pyro.poutine.trace(guide).get_trace(idx).nodes["z"]["fn"]
    rows = torch.arange(6.0 * ROWS).reshape(ROWS, 2, 3)[[0, 9]]
    assert torch.equal(fn.base_dist.loc, rows)
    assert fn.base_dist.scale.shape == (2, 2, 3)  # the scales' rows too


def test_a_float64_site_gets_float64_parameters():
    def model():
        pyro.sample("w", dist.Normal(torch.zeros(3, 4, dtype=torch.float64), 1.0).to_event(2))

    guide = BayesByBackprop(model).setup()
    assert guide.median()["w"].dtype == torch.float64  # the fan-in draw is float32 at first


def test_an_init_loc_fn_of_the_wrong_shape_is_refused_naming_both_shapes():
    def model():
        pyro.sample("w", dist.Normal(torch.zeros(2), 1.0).to_event(1))

    guide = BayesByBackprop(model, init_loc_fn=lambda site: torch.zeros(3))
    with pytest.raises(ValueError) as error:
        guide.setup()
    assert str(error.value) == "init_loc_fn gave shape (3,) for site 'w' of shape (2,)"


def test_a_positive_site_is_refused_naming_its_support():
    def model():
        pyro.sample("noise", dist.LogNormal(0.0, 1.0))

    with pytest.raises(ValueError) as error:
        BayesByBackprop(model).setup()
    assert str(error.value) == (
        f"site 'noise' has support {constraints.positive}; BayesByBackprop covers "
        "real-valued sites only (model a positive quantity by its logarithm)"
    )


def test_the_param_store_name_is_the_digest_of_the_sites_and_their_shapes():
    def model():
        pyro.sample("weight", dist.Normal(torch.zeros(2, 3), 1.0).to_event(2))
        pyro.sample("bias", dist.Normal(0.0, 1.0))

    guide = BayesByBackprop(model).setup()
    digest = hashlib.sha256(b"weight:(2, 3);bias:()").hexdigest()[:10]
    assert guide._pyro_name.startswith(f"BayesByBackprop_{digest}")


def test_sample_latent_draws_the_rows_of_the_subsample_it_is_given():
    # the arguments reach create_plates also once the guide is set up
    guide = rows_guide().setup(torch.tensor([1, 3, 5, 7]))
    assert guide.sample_latent(torch.tensor([0, 9]))["z"].shape == (2, 2, 3)
    assert guide.sample_latent(idx=torch.tensor([2]))["z"].shape == (1, 2, 3)

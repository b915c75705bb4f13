"""The full-covariance GMM: its ELBO against a hand computation on a tiny data set, the fast
evaluation against torch's MultivariateNormal, the mean-field guide on the LKJ site, and the
refusals."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceEnum_ELBO

from zoo.data import load_dataset
from zoo.errors import ConfigError
from zoo.models import GMM
from zoo.models.gmm import initial_components

X = torch.tensor([[0.0, 0.5], [1.0, 1.2], [3.0, -1.0], [2.5, -0.4], [0.2, 0.1]])


def full_model(k=2, form="mixture"):
    model = GMM(2, k, form=form, covariance="full", correlation_concentration=2.0)
    pyro.set_rng_seed(3)
    model.start_at(initial_components(X, k), num_points=len(X))
    return model


def log_normal_by_hand(x, loc, cov):
    """log N(x | loc, cov) for one 2-D point, with the 2 x 2 inverse and determinant."""
    (a, b), (c, d) = cov.tolist()
    det = a * d - b * c
    inverse = torch.tensor([[d, -b], [-c, a]]) / det
    diff = x - loc
    return -0.5 * diff @ inverse @ diff - 0.5 * math.log(det) - math.log(2 * math.pi)


def lkj_2d_log_density(tril, eta):
    """LKJCholesky(2, eta) at L = [[1, 0], [r, sqrt(1 - r^2)]]: the density of the free
    element r is (1 - r^2)^(eta - 1) / B(eta, eta) / 2^(2 eta - 1) (a Beta(eta, eta) on
    (r + 1) / 2), times the Jacobian of r -> L, which is 1 for its one free number."""
    r = tril[1, 0]
    log_beta = math.lgamma(eta) * 2 - math.lgamma(2 * eta)
    return (eta - 1) * torch.log1p(-(r**2)) - log_beta - (2 * eta - 1) * math.log(2)


@pytest.mark.parametrize("form", ["mixture", "enumerated"])
def test_the_elbo_of_one_guide_draw_equals_a_hand_computation(form):
    model = full_model(form=form)
    elbo = Trace_ELBO() if form == "mixture" else TraceEnum_ELBO(max_plate_nesting=1)
    pyro.set_rng_seed(11)
    loss = elbo.loss(model.model, model.guide, X)
    pyro.set_rng_seed(11)  # the same draw, recorded
    draw = poutine.trace(model.guide).get_trace(X)
    theta = {name: draw.nodes[name]["value"] for name in model.parameter_sites}
    log_q = sum(draw.nodes[name]["fn"].log_prob(theta[name]).sum() for name in theta)

    weights, locs, scales, tril = (theta[n] for n in ("weights", "locs", "scales", "corr_cholesky"))
    log_lik = 0.0
    for x in X:
        terms = []
        for k in range(2):
            corr = tril[k] @ tril[k].T
            cov = torch.diag(scales[k]) @ corr @ torch.diag(scales[k])
            terms.append(weights[k].log() + log_normal_by_hand(x, locs[k], cov))
        log_lik = log_lik + torch.logsumexp(torch.stack(terms), 0)
    log_prior = (
        dist.Dirichlet(torch.ones(2)).log_prob(weights)
        + dist.Normal(0.0, 1.0).log_prob(locs).sum()
        + dist.LogNormal(math.log(0.5), 1.0).log_prob(scales).sum()
        + sum(lkj_2d_log_density(tril[k], 2.0) for k in range(2))
    )
    assert loss == pytest.approx(-(log_lik + log_prior - log_q).item(), rel=1e-5)


def test_the_lkj_density_by_hand_is_torchs():
    # the hand formula of the test above, checked once against torch at a few correlations
    for r in (-0.9, 0.0, 0.3, 0.8):
        tril = torch.tensor([[1.0, 0.0], [r, math.sqrt(1 - r * r)]])
        expected = dist.LKJCholesky(2, torch.tensor(2.0)).log_prob(tril)
        assert lkj_2d_log_density(tril, 2.0).item() == pytest.approx(expected.item(), abs=1e-5)


def test_the_fast_component_log_probs_equal_torchs_multivariate_normal():
    torch.manual_seed(0)
    s, k, d = 3, 4, 3
    params = {
        "weights": torch.distributions.Dirichlet(torch.ones(k)).sample((s,)),
        "locs": 100 + torch.randn(s, k, d),  # far from the origin: the shift must hold
        "scales": torch.rand(s, k, d) + 0.5,
        "corr_cholesky": dist.LKJCholesky(d, 1.0).sample((s, k)),
    }
    x = 100 + torch.randn(50, d)
    fast = GMM._component_log_probs(x, params)  # (S, N, K)
    tril = params["scales"].unsqueeze(-1) * params["corr_cholesky"]
    mvn = torch.distributions.MultivariateNormal(
        params["locs"].unsqueeze(1), scale_tril=tril.unsqueeze(1)
    )  # batch (S, 1, K)
    direct = params["weights"].log().unsqueeze(1) + mvn.log_prob(x[None, :, None, :])
    assert torch.allclose(fast, direct, atol=1e-3)


def test_the_guide_factor_of_the_correlations_starts_at_the_data_and_stays_valid():
    data = load_dataset("old_faithful")
    pyro.set_rng_seed(0)
    model = GMM.build(data, covariance="full", restarts=2, restart_steps=0)
    assert model.posterior.family["corr_cholesky"] == "transformed_normal"
    tril = model.posterior_mean()["corr_cholesky"]  # (2, 2, 2), unit rows
    assert tril.shape == (2, 2, 2)
    assert torch.allclose((tril**2).sum(-1), torch.ones(2, 2), atol=1e-5)
    # both components of Old Faithful have a positive correlation of eruptions and waiting
    corr = tril @ tril.transpose(-1, -2)
    assert (corr[:, 0, 1] > 0.1).all()
    draws = model._draws(20)["corr_cholesky"]
    assert torch.allclose((draws**2).sum(-1), torch.ones(20, 2, 2), atol=1e-4)


def test_full_covariance_needs_two_features(tmp_path):
    from hydra import compose, initialize_config_dir

    from zoo.__main__ import config_dir
    from zoo.app import run

    with pytest.raises(ValueError, match="num_features >= 2"):
        GMM(1, 2, covariance="full")
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=["model=gmm", "model.covariance=full", "data=synthetic_gmm", "data.dims=1"],
        )
    with pytest.raises(ConfigError, match=r"model.covariance = 'full' needs at least 2 features"):
        run(cfg, tmp_path)

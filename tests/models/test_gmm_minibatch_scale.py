"""The GMM's minibatch loss estimates the full-data ELBO: the batch's log-likelihood is scaled
by N / b, the global terms (priors and guide of the weights, means and scales) are not.

A data plate that lost its size passed every GMM test before this one (only a VAE test saw the
same bug in the shared plate). The loss is compared with the ELBO computed by hand from a guide
trace with the same random draws, for both forms of the mixture.
"""

import pyro
import pytest
import torch
from pyro import poutine
from torch.distributions import Dirichlet, LogNormal, Normal

from zoo.models import GMM

N = 10


def negative_elbo_by_hand(gmm, batch, guide_trace):
    """-(N/b sum_i log sum_k w_k N(x_i | loc_k, scale_k) + log p(w, locs, scales) - log q)."""
    w, locs, scales = (guide_trace.nodes[name]["value"] for name in ("weights", "locs", "scales"))
    per_component = w.log() + Normal(locs, scales).log_prob(batch[:, None, :]).sum(-1)  # (b, K)
    batch_term = per_component.logsumexp(-1).sum()
    log_prior = (
        Dirichlet(gmm.weight_concentration).log_prob(w)
        + Normal(gmm.loc_center, gmm.loc_spread).log_prob(locs).sum()
        + LogNormal(gmm.scale_log_median, gmm.scale_log_sd).log_prob(scales).sum()
    )
    log_q = guide_trace.log_prob_sum()
    return -(N / len(batch) * batch_term + log_prior - log_q).item()


@pytest.mark.parametrize("form", ["mixture", "enumerated"])
@pytest.mark.parametrize("batch_size", [3, N])
def test_minibatch_loss_is_n_over_b_times_the_batch_term_plus_the_global_terms(form, batch_size):
    gmm = GMM(2, 3, form=form, loc_spread=1.5, scale_median=0.6)
    x = torch.linspace(-2.0, 2.0, 2 * N).reshape(N, 2)
    batch = x[:batch_size]

    pyro.set_rng_seed(3)
    loss = gmm.elbo().loss(gmm.model, gmm.guide, batch, size=N)
    pyro.set_rng_seed(3)
    guide_trace = poutine.trace(gmm.guide).get_trace(batch, size=N)

    assert loss == pytest.approx(negative_elbo_by_hand(gmm, batch, guide_trace), rel=1e-5)

"""Model-agnostic estimates from a Pyro model and guide: the ELBO split into its parts, and
the importance-weighted log-likelihood."""

from __future__ import annotations

import math

import pyro
import torch
from pyro import poutine
from pyro.distributions.kl import kl_divergence


def elbo_parts(model, guide, *args, **kwargs) -> tuple[float, float]:
    """One-sample estimate of ``(E_q[log p(x|z)], KL(q || p))``, summed over the data.

    The KL uses the closed form where torch registers one for the site's pair of
    distributions and the Monte Carlo term ``log q(z) - log p(z)`` elsewhere.
    """
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    reconstruction, kl = 0.0, 0.0
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample" or poutine.util.site_is_subsample(site):
            continue
        if site["is_observed"]:
            reconstruction += (site["scale"] * site["fn"].log_prob(site["value"])).sum().item()
            continue
        guide_site = guide_trace.nodes[name]
        try:
            site_kl = kl_divergence(guide_site["fn"], site["fn"])
        except NotImplementedError:
            value = guide_site["value"]
            site_kl = guide_site["fn"].log_prob(value) - site["fn"].log_prob(value)
        kl += (guide_site["scale"] * site_kl).sum().item()
    return reconstruction, kl


def importance_log_likelihood(
    model, guide, x: torch.Tensor, *, num_samples: int, chunk_size: int = 500
) -> torch.Tensor:
    """Importance-weighted estimate of log p(x_i) for each row of ``x`` (Burda et al. 2016):
    ``log (1/K) sum_k p(x_i, z_k) / q(z_k | x_i)`` with ``z_k ~ q(z | x_i)``.

    Assumes every latent site is local to the data plate over the rows of ``x`` (as in a
    VAE), so the weights factor over data points. Samples are drawn ``chunk_size`` at a
    time in a vectorized particle plate, so memory grows with ``chunk_size``, not K.

    :returns: a tensor of shape ``(len(x),)``.
    """
    log_weight_chunks = []
    remaining = num_samples
    while remaining > 0:
        k = min(chunk_size, remaining)
        remaining -= k
        with pyro.plate("particles", k, dim=-2):
            guide_trace = poutine.trace(guide).get_trace(x)
            model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
        log_weight = torch.zeros(k, len(x), device=x.device)
        for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
            for site in trace.nodes.values():
                if site["type"] == "sample" and not poutine.util.site_is_subsample(site):
                    log_weight = log_weight + sign * site["fn"].log_prob(site["value"])
        log_weight_chunks.append(torch.logsumexp(log_weight, dim=0))
    return torch.logsumexp(torch.stack(log_weight_chunks), dim=0) - math.log(num_samples)

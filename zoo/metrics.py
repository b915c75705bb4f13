"""Model-agnostic estimates from a Pyro model and guide: the ELBO split into its parts, and
the importance-weighted log-likelihood."""

from __future__ import annotations

import math
from collections.abc import Callable

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
    model,
    guide,
    x: torch.Tensor,
    *,
    num_samples: int,
    chunk_size: int = 500,
    log_weights: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Importance-weighted estimate of log p(x_i) for each row of ``x`` (Burda et al. 2016):
    ``log (1/K) sum_k p(x_i, z_k) / q(z_k | x_i)`` with ``z_k ~ q(z | x_i)``.

    Assumes every latent site is local to the data plate over the rows of ``x`` (as in a
    VAE), so the weights factor over data points. Samples are drawn ``chunk_size`` at a
    time in a vectorized particle plate, so memory grows with ``chunk_size``, not K.

    :param log_weights: ``log_weights(x, k)``, the ``(k, len(x))`` log weights
        ``log p(x, z) - log q(z | x)`` of ``k`` fresh draws, computed by the model itself
        without a Pyro trace (the VAE's :meth:`~zoo.models.vae.VAE.importance_log_weights`);
        it must equal the traced weights of ``model`` and ``guide``. By default the chunk's
        model and guide are traced.
    :returns: a tensor of shape ``(len(x),)``.
    """
    log_weight_chunks = []
    remaining = num_samples
    while remaining > 0:
        k = min(chunk_size, remaining)
        remaining -= k
        if log_weights is not None:
            log_weight = log_weights(x, k)
        else:
            log_weight = _traced_log_weights(model, guide, x, k)
        log_weight_chunks.append(torch.logsumexp(log_weight, dim=0))
    return torch.logsumexp(torch.stack(log_weight_chunks), dim=0) - math.log(num_samples)


def _traced_log_weights(model, guide, x: torch.Tensor, k: int) -> torch.Tensor:
    """``log p(x, z) - log q(z | x)`` of ``k`` draws of the guide, ``(k, len(x))``, from one
    trace of each program in a vectorized particle plate."""
    with pyro.plate("particles", k, dim=-2):
        guide_trace = poutine.trace(guide).get_trace(x)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    log_weight = torch.zeros(k, len(x), device=x.device)
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        for site in trace.nodes.values():
            if site["type"] == "sample" and not poutine.util.site_is_subsample(site):
                log_weight = log_weight + sign * site["fn"].log_prob(site["value"])
    return log_weight


def adjusted_rand_index(labels_true: torch.Tensor, labels_pred: torch.Tensor) -> float:
    """Adjusted Rand index of two labellings of the same points (Hubert & Arabie 1985): 1 for
    the same partition up to relabelling, about 0 for independent ones. O(N) through the
    contingency table; the labels may be any integers."""
    if labels_true.shape != labels_pred.shape or labels_true.dim() != 1:
        raise ValueError(
            f"expected two 1-d label tensors of one length, got {tuple(labels_true.shape)} "
            f"and {tuple(labels_pred.shape)}"
        )
    _, a = torch.unique(labels_true, return_inverse=True)
    _, b = torch.unique(labels_pred, return_inverse=True)
    rows, columns = int(a.max()) + 1, int(b.max()) + 1
    table = torch.bincount(a * columns + b, minlength=rows * columns).double()
    table = table.view(rows, columns)

    def pairs(counts: torch.Tensor) -> torch.Tensor:
        return (counts * (counts - 1) / 2).sum()

    index = pairs(table)
    row_pairs, column_pairs = pairs(table.sum(1)), pairs(table.sum(0))
    expected = row_pairs * column_pairs / pairs(torch.tensor(float(len(a)), dtype=torch.double))
    maximum = (row_pairs + column_pairs) / 2
    if maximum == expected:  # both partitions trivial (one cluster, or all singletons)
        return 1.0
    return ((index - expected) / (maximum - expected)).item()

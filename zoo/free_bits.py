"""Free bits (Kingma et al. 2016, "Improved variational inference with inverse autoregressive
flow", appendix C): the KL of each latent dimension counts only above ``lambda`` nats.

For a latent site ``z`` of shape (B, L) in a data plate, with ``KL_j`` the KL of dimension
``j`` averaged over the minibatch, the KL part of the objective becomes
``sum_j max(lambda, KL_j)`` instead of ``sum_j KL_j`` (per data point). A dimension whose KL
is below ``lambda`` gets no gradient pulling it towards the prior, so the encoder is free to
use those nats; one above it is treated as in the ELBO. ``lambda = 0`` is the ELBO itself.

The objective is the ELBO's loss plus a penalty, for each such site::

    s * B * sum_j relu(lambda - KL_j)

where ``s`` is the site's scale in the guide's trace (the data plate's N / B times the beta of
:func:`zoo.handlers.kl_annealing`, so the penalty is annealed with the KL it corrects) and
``KL_j`` is computed from the same traces as the ELBO: the closed-form KL of the site's
per-dimension distributions under ``TraceMeanField_ELBO`` (the Monte Carlo estimate where no
closed form exists, as that ELBO does), ``log q(z) - log p(z)`` at the guide's draw under
``Trace_ELBO``. Because it is the same estimate, the penalty cancels the ELBO's KL of a
dimension below ``lambda`` exactly, draw by draw, not only in expectation.

Why subclasses of Pyro's ELBOs rather than an effect handler: the penalty needs the model's and
the guide's distribution of a site at once, which only the ELBO sees (a handler sees one
program at a time). They extend ``_differentiable_loss_particle``, the one per-draw hook that
both ``Trace_ELBO`` and ``TraceMeanField_ELBO`` route ``loss_and_grads`` and
``differentiable_loss`` through (private in Pyro 1.9, stable since 1.0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from pyro.distributions import Independent
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from pyro.infer.util import torch_item
from torch.distributions import kl_divergence


class FreeBits:
    """Adds the free-bits penalty of each site in ``free_bits`` (``{site: lambda}``, nats per
    latent dimension) to the loss of the Pyro ELBO it is mixed into."""

    def __init__(self, *args, free_bits: Mapping[str, float], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for site, nats in free_bits.items():
            if not (isinstance(nats, (int, float)) and math.isfinite(nats) and nats >= 0):
                raise ValueError(
                    f"free bits of site {site!r} must be a finite number >= 0, got {nats!r}"
                )
        self.free_bits = dict(free_bits)

    def _differentiable_loss_particle(self, model_trace, guide_trace):
        loss, surrogate = super()._differentiable_loss_particle(model_trace, guide_trace)
        penalty = sum(
            self._penalty(name, model_trace, guide_trace, nats)
            for name, nats in self.free_bits.items()
            if nats > 0
        )
        return loss + torch_item(penalty), surrogate + penalty

    def loss(self, model, guide, *args, **kwargs) -> float:
        """The objective's value, averaged over the particles (Pyro's ``Trace_ELBO.loss``
        sums log densities itself, so it would leave the penalty out)."""
        with torch.no_grad():
            return (
                sum(
                    self._differentiable_loss_particle(m, g)[0]
                    for m, g in self._get_traces(model, guide, args, kwargs)
                )
                / self.num_particles
            )

    def _penalty(self, name, model_trace, guide_trace, nats: float) -> torch.Tensor:
        latent = [
            n
            for n, site in model_trace.nodes.items()
            if site["type"] == "sample" and not site["is_observed"] and n in guide_trace.nodes
        ]
        if name not in latent:
            raise ValueError(
                f"free bits: {name!r} is not a latent site of the model that the guide draws; "
                f"those are {latent}"
            )
        guide_site, model_site = guide_trace.nodes[name], model_trace.nodes[name]
        if not guide_site["fn"].has_rsample:
            raise ValueError(f"free bits: the guide's site {name!r} must be reparameterized")
        if guide_site["mask"] is not None:
            raise ValueError(f"free bits: site {name!r} is masked, which free bits do not support")
        scale = guide_site["scale"]
        if torch.is_tensor(scale) and scale.numel() != 1:
            raise ValueError(f"free bits: site {name!r} has a scale per element, not one number")
        kl = self._kl_per_dimension(guide_site, model_site)  # batch_shape + event_shape
        batch_dims = len(guide_site["fn"].batch_shape)
        batch = math.prod(kl.shape[:batch_dims])
        mean_kl = kl.reshape((batch,) + kl.shape[batch_dims:]).mean(0)
        return scale * batch * F.relu(nats - mean_kl).sum()

    def _kl_per_dimension(self, guide_site, model_site) -> torch.Tensor:
        q, p = _per_dimension(guide_site["fn"]), _per_dimension(model_site["fn"])
        if isinstance(self, TraceMeanField_ELBO):
            try:
                return kl_divergence(q, p).expand(q.batch_shape)
            except NotImplementedError:
                pass  # as TraceMeanField_ELBO: the Monte Carlo estimate at the guide's draw
        z = guide_site["value"]
        return q.log_prob(z) - p.log_prob(z)


def _per_dimension(fn):
    """The distribution without its ``to_event``: log densities per latent dimension."""
    while isinstance(fn, Independent):
        fn = fn.base_dist
    return fn


class FreeBitsTrace_ELBO(FreeBits, Trace_ELBO):
    """``Trace_ELBO`` with free bits: ``FreeBitsTrace_ELBO(free_bits={"z": 0.25})``."""


class FreeBitsTraceMeanField_ELBO(FreeBits, TraceMeanField_ELBO):
    """``TraceMeanField_ELBO`` with free bits: the closed-form KL per dimension."""


WITH_FREE_BITS = {Trace_ELBO: FreeBitsTrace_ELBO, TraceMeanField_ELBO: FreeBitsTraceMeanField_ELBO}

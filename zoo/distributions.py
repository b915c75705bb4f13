"""Distributions the zoo's models need that Pyro does not ship."""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from pyro.distributions import TorchDistribution, constraints
from torch.distributions.utils import broadcast_all


class ScaleMixtureNormal(TorchDistribution):
    """The scale-mixture prior of Blundell et al. (2015), elementwise:
    ``pi * Normal(loc, scale1) + (1 - pi) * Normal(loc, scale2)``.

    The log density is ``logsumexp(log pi + log N(x | loc, scale1), log(1 - pi) + log N(x |
    loc, scale2))``: no component density is ever formed outside log space, so a value far in
    the tails of the narrow component (``scale2 = exp(-6)``, say) gives the wide component's
    log density instead of ``log(0)``, with no epsilon floor.

    :param loc: the common mean.
    :param scale1: the scale of the first component (the wide one in the paper).
    :param scale2: the scale of the second component.
    :param mixture_weight: ``pi``, the weight of the first component, in [0, 1].

    Example::

        >>> import math, torch
        >>> from zoo.distributions import ScaleMixtureNormal
        >>> prior = ScaleMixtureNormal(0.0, 1.0, math.exp(-6), 0.5)
        >>> prior.log_prob(torch.tensor(50.0)).item()  # exp(-1250) underflows; its log does not
        -1251.6120...
    """

    arg_constraints = {
        "loc": constraints.real,
        "scale1": constraints.positive,
        "scale2": constraints.positive,
        "mixture_weight": constraints.unit_interval,
    }
    support = constraints.real
    has_rsample = False

    def __init__(self, loc, scale1, scale2, mixture_weight, validate_args=None) -> None:
        self.loc, self.scale1, self.scale2, self.mixture_weight = broadcast_all(
            loc, scale1, scale2, mixture_weight
        )
        super().__init__(self.loc.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None) -> ScaleMixtureNormal:
        new = self._get_checked_instance(ScaleMixtureNormal, _instance)
        batch_shape = torch.Size(batch_shape)
        for name in ("loc", "scale1", "scale2", "mixture_weight"):
            setattr(new, name, getattr(self, name).expand(batch_shape))
        super(ScaleMixtureNormal, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def mean(self) -> torch.Tensor:
        return self.loc

    @property
    def variance(self) -> torch.Tensor:
        pi = self.mixture_weight
        return pi * self.scale1**2 + (1 - pi) * self.scale2**2

    def sample(self, sample_shape=()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            first = torch.bernoulli(self.mixture_weight.expand(shape))
            scale = torch.where(first.bool(), self.scale1.expand(shape), self.scale2.expand(shape))
            return self.loc.expand(shape) + scale * torch.randn_like(scale)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        pi = self.mixture_weight
        return torch.logaddexp(
            torch.log(pi) + _normal_log_prob(value, self.loc, self.scale1),
            torch.log1p(-pi) + _normal_log_prob(value, self.loc, self.scale2),
        )


def _normal_log_prob(value, loc, scale) -> torch.Tensor:
    return -(((value - loc) / scale) ** 2) / 2 - torch.log(scale) - math.log(math.sqrt(2 * math.pi))


def beta_icdf(concentration1, concentration0, q: torch.Tensor) -> torch.Tensor:
    """The quantile function of ``Beta(concentration1, concentration0)``: the value below which
    the share ``q`` of its mass lies, exact to float64 rounding and deterministic.

    torch has neither the Beta's quantile function nor the regularized incomplete beta function
    it inverts, so this is SciPy's ``betaincinv`` (evaluated on the CPU, without gradients).
    The marginals of a ``Dirichlet(alpha)`` are ``Beta(alpha_i, sum(alpha) - alpha_i)``.

    :param concentration1: alpha, a tensor broadcastable with ``q``.
    :param concentration0: beta, likewise.
    :param q: levels in [0, 1].
    """
    from scipy.special import betaincinv  # imported here: only the guides' summaries need it

    a, b, levels = torch.broadcast_tensors(
        torch.as_tensor(concentration1), torch.as_tensor(concentration0), torch.as_tensor(q)
    )
    value = betaincinv(
        a.detach().cpu().double().numpy(),
        b.detach().cpu().double().numpy(),
        levels.detach().cpu().double().numpy(),
    )
    return torch.from_numpy(value).to(device=a.device, dtype=a.dtype)


def _gamma_draws(concentration: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    # torch's Gamma(concentration, 1) draw, a native op with a reparameterized gradient; a draw
    # that underflows to 0 would make the ratios below 0 / 0
    gamma = torch._standard_gamma(concentration.expand(shape))
    return gamma.clamp_min(torch.finfo(gamma.dtype).tiny)


class GammaRatioDirichlet(dist.Dirichlet):
    """A ``Dirichlet`` drawn as a ratio of Gamma draws, ``g_i / sum_j g_j`` with
    ``g_i ~ Gamma(alpha_i, 1)``: the same distribution and log density, and (unlike torch's
    own draw, a Python autograd function) a graph that ``torch.jit.save`` can export.

    :param concentration: alpha, with the categories in the last dim.
    """

    def rsample(self, sample_shape=()) -> torch.Tensor:
        gamma = _gamma_draws(self.concentration, self._extended_shape(sample_shape))
        return gamma / gamma.sum(-1, keepdim=True)


class GammaRatioBeta(dist.Beta):
    """A ``Beta`` drawn as ``g1 / (g1 + g0)`` with ``g1 ~ Gamma(concentration1, 1)`` and
    ``g0 ~ Gamma(concentration0, 1)``; see :class:`GammaRatioDirichlet`.

    :param concentration1: alpha.
    :param concentration0: beta.
    """

    def rsample(self, sample_shape=()) -> torch.Tensor:
        shape = self._extended_shape(sample_shape)
        g1 = _gamma_draws(self.concentration1, shape)
        g0 = _gamma_draws(self.concentration0, shape)
        return g1 / (g1 + g0)

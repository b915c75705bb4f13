"""Bayes by Backprop (Blundell et al. 2015): a fully factorized Normal over every latent site.

Built from the model as Pyro's autoguides are (it subclasses
:class:`~pyro.infer.autoguide.AutoGuide`, so it can sit in an ``AutoGuideList``): a trace of
the model gives the latent sites and their shapes, and each site gets ``mu`` and ``rho``.
Unlike :class:`~pyro.infer.autoguide.AutoNormal`, whose sites are Deltas beside auxiliary
Normals, each site here is sampled from ``Normal(mu, softplus(rho)).to_event(...)`` itself,
so ``TraceMeanField_ELBO`` finds torch's closed-form KL against a Normal prior.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from operator import attrgetter

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.distributions import constraints
from pyro.infer.autoguide import AutoGuide, init_to_mean
from pyro.infer.autoguide.utils import deep_setattr
from pyro.nn import PyroModule, PyroParam
from pyro.ops.tensor_utils import periodic_repeat

from zoo.guides.naming import OwnName


def init_to_fan_in_uniform(site: dict) -> torch.Tensor:
    """An initial value for a latent site, in the form of Pyro's ``init_to_*`` functions.

    Sites of two or more dimensions are taken to be weight matrices ``(..., out, in)`` and
    drawn from ``U(-1/sqrt(in), 1/sqrt(in))``, the bound of ``torch.nn.Linear``'s default
    init; other sites (biases, scalars) start at their prior mean (0 for zero-mean weight
    priors), via ``init_to_mean``.
    """
    shape = site["fn"].shape()
    if len(shape) >= 2:
        bound = 1.0 / math.sqrt(shape[-1])
        return torch.empty(shape).uniform_(-bound, bound)
    return init_to_mean(site)


def _cuda_devices() -> list[int]:
    return list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []


def _is_real(support) -> bool:
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return support is constraints.real


class BayesByBackprop(OwnName, AutoGuide):
    """q(w) = prod_i Normal(w_i | mu_i, softplus(rho_i)) over every latent site of ``model``.

    Family: a fully factorized (mean-field) Normal, one ``(mu, rho)`` pair per scalar.
    Parameterization: ``sigma = softplus(rho) = log(1 + exp(rho))``, positive without a
    constraint and close to ``exp(rho)`` for the small sigmas a network's weights need.
    Initialization: ``mu`` from ``init_loc_fn`` (by default :func:`init_to_fan_in_uniform`),
    ``rho ~ U(init_rho)`` (by default ``[-5, -4]``, so sigma starts in 0.007-0.018).
    Each site is ``Normal(mu, sigma).to_event(d)`` with ``d`` the model site's event dim:
    under ``TraceMeanField_ELBO`` and a Normal prior the KL is computed in closed form; under
    ``Trace_ELBO`` (any prior, e.g. a scale mixture) it is estimated by Monte Carlo.

    How it differs from ``AutoNormal``, and why: the same family, but each site is sampled
    at the model's site (no auxiliary site and ``Delta``), for the closed-form KL; sigma
    starts as in Blundell et al. (``rho ~ U(init_rho)``, or ``init_scale`` as AutoNormal) and
    the means from a fan-in uniform, since a network started at its prior mean of 0 has no
    gradient to break the symmetry between units; only real-valued sites, where AutoNormal
    transforms any support. The surface is AutoNormal's: :meth:`median`, :meth:`quantiles`
    and :meth:`mean` take the model's arguments, :meth:`get_posterior` gives ``{site:
    distribution}``, :meth:`sample_latent` one draw of every site.

    Assumes every latent site is real-valued (a positive quantity such as a noise scale
    should be a site for its logarithm) and in vectorized plates only; sites inside a
    subsampled plate get full-size parameters that the plate subsamples, as in
    ``AutoNormal``. Parameters are created at the first call (or at :meth:`setup`) and live
    in this module, registered in Pyro's param store under a name stable for the model and
    unique in the process (:mod:`zoo.guides.naming`).

    :param callable model: a Pyro model, e.g. a ``PyroModule`` network with ``PyroSample``
        weights.
    :param callable init_loc_fn: ``site -> tensor``, the initial ``mu`` of each site.
    :param init_rho: ``(low, high)`` of the uniform initial ``rho``.
    :param float init_scale: instead of ``init_rho``, one initial sigma for every weight, as
        ``init_scale`` of ``AutoNormal`` and :class:`~zoo.guides.MeanField`.
    :param callable create_plates: as for any ``AutoGuide``: returns the model's plates
        (needed when the model subsamples a plate that holds a latent site).

    Example::

        >>> import torch, pyro, pyro.distributions as dist
        >>> from pyro.nn import PyroModule, PyroSample
        >>> from zoo.guides import BayesByBackprop
        >>> net = PyroModule[torch.nn.Linear](3, 1)
        >>> net.weight = PyroSample(dist.Normal(0.0, 1.0).expand([1, 3]).to_event(2))
        >>> net.bias = PyroSample(dist.Normal(0.0, 1.0).expand([1]).to_event(1))
        >>> def model(x, y):
        ...     loc = net(x).squeeze(-1)  # outside the plate: one weight for all rows
        ...     with pyro.plate("data", len(x)):
        ...         pyro.sample("y", dist.Normal(loc, 0.1), obs=y)
        >>> guide = BayesByBackprop(model)
        >>> elbo = pyro.infer.TraceMeanField_ELBO()  # closed-form KL for the Normal prior
        >>> svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.01}), elbo)
        >>> loss = svi.step(torch.randn(8, 3), torch.randn(8))
        >>> sorted(guide.median())
        ['bias', 'weight']
    """

    def __init__(
        self,
        model: Callable,
        *,
        init_loc_fn: Callable[[dict], torch.Tensor] = init_to_fan_in_uniform,
        init_rho: tuple[float, float] = (-5.0, -4.0),
        init_scale: float | None = None,
        create_plates: Callable | None = None,
    ) -> None:
        low, high = (float(v) for v in init_rho)
        if not (math.isfinite(low) and math.isfinite(high) and low <= high):
            raise ValueError(f"init_rho must be (low, high) with low <= high, got {init_rho!r}")
        if init_scale is not None and not (math.isfinite(init_scale) and init_scale > 0):
            raise ValueError(f"init_scale must be a finite number > 0 or None, got {init_scale!r}")
        self.init_scale = None if init_scale is None else float(init_scale)
        super().__init__(model, create_plates=create_plates)
        # the param store name is taken at set-up, from the sites (zoo.guides.naming)
        self._zoo_name = type(self).__name__
        self.init_loc_fn = init_loc_fn
        self.init_rho = (low, high)

    def _setup_prototype(self, *args, **kwargs) -> None:
        # the trace draws from the prior (and from whatever handlers the model applies, such as
        # local reparameterization); the RNG is restored so that the same seed gives the same
        # initial parameters whatever the model draws while traced
        with torch.random.fork_rng(devices=_cuda_devices()):
            super()._setup_prototype(*args, **kwargs)
        self._take_name(
            ";".join(
                f"{name}:{tuple(site['value'].shape)}"
                for name, site in self.prototype_trace.iter_stochastic_nodes()
            )
        )
        self.locs = PyroModule()
        self.rhos = PyroModule()
        self._event_dims: dict[str, int] = {}
        for name, site in self.prototype_trace.iter_stochastic_nodes():
            if not _is_real(site["fn"].support):
                raise ValueError(
                    f"site {name!r} has support {site['fn'].support}; BayesByBackprop covers "
                    "real-valued sites only (model a positive quantity by its logarithm)"
                )
            with torch.no_grad():
                # a copy with its own memory: init functions may return expanded tensors, into
                # which load_state_dict cannot copy
                loc = self.init_loc_fn(site).detach().to(site["value"]).clone().contiguous()
            if loc.shape != site["value"].shape:
                raise ValueError(
                    f"init_loc_fn gave shape {tuple(loc.shape)} for site {name!r} of shape "
                    f"{tuple(site['value'].shape)}"
                )
            event_dim = site["fn"].event_dim
            for frame in site["cond_indep_stack"]:
                full_size = frame.full_size or frame.size
                if full_size != frame.size:  # a subsampled plate: parameters for every row
                    loc = periodic_repeat(loc, full_size, frame.dim - event_dim).contiguous()
            if self.init_scale is None:
                rho = torch.empty_like(loc).uniform_(*self.init_rho)
            else:  # log(expm1(sigma)), the inverse of softplus
                rho = torch.full_like(loc, self.init_scale).expm1().log()
            self._event_dims[name] = event_dim
            deep_setattr(self.locs, name, PyroParam(loc, constraints.real, event_dim))
            deep_setattr(self.rhos, name, PyroParam(rho, constraints.real, event_dim))

    def setup(self, *args, **kwargs) -> BayesByBackprop:
        """Traces the model with these arguments and creates the parameters now, rather than
        at the first call (e.g. before ``.to(device)`` or ``load_state_dict``)."""
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        return self

    def _ready(self, args: tuple, kwargs: dict) -> None:
        if self.prototype_trace is not None:
            return
        try:
            self.setup(*args, **kwargs)
        except TypeError as error:
            if args or kwargs:
                raise
            raise ValueError(
                f"{type(self).__name__} is not set up yet and the model needs arguments: pass "
                "them (guide.median(x)) or call the guide once"
            ) from error

    def _site_names(self) -> list[str]:
        return [name for name, _ in self.prototype_trace.iter_stochastic_nodes()]

    def distribution(self, name: str) -> dist.Distribution:
        """q of one site: ``Normal(mu, softplus(rho)).to_event(d)`` (inside the site's
        plates, the parameters of the current subsample)."""
        if self.prototype_trace is None:
            raise ValueError(
                f"{type(self).__name__} is not set up yet: call it (or setup) with the model's "
                f"arguments before asking for site {name!r}"
            )
        if name not in self._event_dims:
            raise ValueError(
                f"{type(self).__name__} has no latent site {name!r}; its sites: "
                f"{', '.join(self._site_names())}"
            )
        loc = attrgetter(name)(self.locs)
        scale = F.softplus(attrgetter(name)(self.rhos))
        return dist.Normal(loc, scale).to_event(self._event_dims[name])

    def forward(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """Draws every latent site; takes the model's arguments."""
        self.setup(*args, **kwargs)
        plates = self._create_plates(*args, **kwargs)
        result = {}
        for name, site in self.prototype_trace.iter_stochastic_nodes():
            with ExitStack() as stack:
                for frame in site["cond_indep_stack"]:
                    if frame.vectorized:
                        stack.enter_context(plates[frame.name])
                result[name] = pyro.sample(name, self.distribution(name))
        return result

    def get_posterior(self, *args, **kwargs) -> dict[str, dist.Distribution]:
        """``{site: Normal(mu, sigma).to_event(d)}`` over the full sites (a subsampled plate's
        every row); takes the model's arguments (used only to set the guide up)."""
        self._ready(args, kwargs)
        return {name: self.distribution(name) for name in self._site_names()}

    def sample_latent(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """One draw of every latent site, ``{site: value}``, recorded in no trace. (Pyro's
        ``AutoContinuous.sample_latent`` returns one unconstrained vector instead.)"""
        self._ready(args, kwargs)
        with poutine.block():
            return {k: v.detach() for k, v in self(*args, **kwargs).items()}

    @torch.no_grad()
    def median(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """The posterior median (= mean, ``mu``) of each latent site; takes the model's
        arguments (used only to set the guide up if it was never called)."""
        self._ready(args, kwargs)
        return {name: attrgetter(name)(self.locs).detach().clone() for name in self._site_names()}

    @torch.no_grad()
    def mean(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """The posterior mean of each latent site: ``mu``, as :meth:`median`."""
        return self.median(*args, **kwargs)

    @torch.no_grad()
    def quantiles(self, quantiles: Sequence[float], *args, **kwargs) -> dict[str, torch.Tensor]:
        """Posterior quantiles of each latent site, stacked along a new first dim; the 0.5
        quantile is :meth:`median`.

        :param quantiles: a list of levels in (0, 1), e.g. ``[0.05, 0.5, 0.95]``.
        """
        self._ready(args, kwargs)
        result = {}
        for name in self._site_names():
            loc = attrgetter(name)(self.locs)
            scale = F.softplus(attrgetter(name)(self.rhos))
            levels = torch.as_tensor(quantiles, dtype=loc.dtype, device=loc.device)
            levels = levels.reshape((-1,) + (1,) * loc.dim())
            result[name] = dist.Normal(loc, scale).icdf(levels)
        return result

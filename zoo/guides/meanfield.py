"""Mean-field guide: one independent factor per latent site, in the family of its support.

Unlike ``AutoNormal``, every factor is a proper distribution *at the model's site* (no
auxiliary unconstrained site with a ``Delta``), so ``TraceMeanField_ELBO`` gets the closed-form
KL where torch registers one (Normal/Normal, LogNormal/LogNormal through
TransformedDistribution/TransformedDistribution, Dirichlet/Dirichlet, Beta/Beta) and the
Monte Carlo term ``log p(z) - log q(z)`` with the right log-Jacobian everywhere else.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from contextlib import ExitStack

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.distributions import constraints
from pyro.distributions.transforms import biject_to
from pyro.infer.autoguide import AutoGuide
from pyro.infer.autoguide.initialization import init_to_feasible
from pyro.infer.autoguide.utils import helpful_support_errors

from zoo.distributions import GammaRatioBeta, GammaRatioDirichlet, beta_icdf
from zoo.guides.naming import OwnName

FAMILIES = ("normal", "lognormal", "dirichlet", "beta", "transformed_normal")


def _base_support(support: constraints.Constraint) -> constraints.Constraint:
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return support


def family_for(support: constraints.Constraint) -> str:
    """The family matched to a support: real -> ``normal``, positive or nonnegative ->
    ``lognormal``,
    simplex -> ``dirichlet``, unit interval -> ``beta``, anything else -> ``transformed_normal``
    (a Normal in the unconstrained space pushed through ``biject_to(support)``)."""
    base = _base_support(support)
    if base is constraints.real:
        return "normal"
    lower_bounded = (constraints.greater_than, constraints.greater_than_eq)
    if isinstance(base, lower_bounded) and _everywhere(base.lower_bound, 0):
        return "lognormal"
    if base is constraints.simplex:
        return "dirichlet"
    if (
        isinstance(base, constraints.interval)
        and _everywhere(base.lower_bound, 0)
        and _everywhere(base.upper_bound, 1)
    ):
        return "beta"
    return "transformed_normal"


def _everywhere(bound, value: float) -> bool:
    """Whether a support's bound, a number or a tensor (``Uniform(zeros(3), ones(3))``), is
    ``value`` in every element."""
    return bool(torch.as_tensor(bound).eq(value).all())


def _inverse_softplus(x: torch.Tensor) -> torch.Tensor:
    return x + torch.log(-torch.expm1(-x))


def _prior_total_concentration(prior, mean: torch.Tensor, family: str) -> torch.Tensor:
    """The total concentration T at which a Beta or Dirichlet of this ``mean`` has the prior's
    variance: ``var_i = m_i (1 - m_i) / (T + 1)``, summed over a Dirichlet's categories; one T
    per factor (the site's shape without a Dirichlet's last dim). A start as wide as the
    prior, which presumes nothing about how much the data will narrow it. Where the prior
    has no finite variance, T is the number of categories (a flat Dirichlet's)."""
    categories = mean.shape[-1] if family == "dirichlet" else 2
    spread = mean * (1 - mean)
    try:
        variance = prior.variance.detach().expand(mean.shape).to(mean.dtype)
    except (NotImplementedError, AttributeError, RuntimeError):
        variance = torch.full_like(mean, math.inf)
    if family == "dirichlet":
        spread, variance = spread.sum(-1), variance.sum(-1)
    total = spread / variance - 1
    fallback = torch.full_like(total, float(categories))
    # a prior tighter than any Beta of this mean, or one without a variance
    ok = torch.isfinite(total) & (total > 0)
    return torch.where(ok, total, fallback).clamp_min(1e-2)


class MeanField(OwnName, AutoGuide):
    """q(z) = prod over latent sites of one independent factor, matched to the site's support.

    Family: ``normal`` for real sites, ``lognormal`` for positive ones, ``dirichlet`` for the
    simplex, ``beta`` for the unit interval, and for any other support a Normal in the
    unconstrained space pushed through ``biject_to(support)`` (``transformed_normal``);
    ``families`` overrides the choice per site (``transformed_normal`` fits every support).
    Each factor has the site's full shape and event dim and sits in the site's plates.

    Parameterization: Normal and LogNormal have ``loc`` and ``scale = softplus(raw)``; the
    LogNormal's are those of log z. Dirichlet has ``concentration = exp(log_concentration)``,
    Beta the same for both concentrations: Adam's steps, roughly of the learning rate's size,
    then change a concentration by a factor rather than by a fixed amount, and the fit reaches
    the posterior's concentration whether it is 5 or 5000 (a softplus, near-linear there,
    left it close to its start). Initialized at ``init_loc_fn(site)`` (``init_to_feasible``
    by default, as ``AutoNormal``: deterministic) or ``init_values[name]``, with scale ``init_scale`` in the unconstrained space; a
    Dirichlet or Beta starts at that mean as wide as the prior (the total concentration at
    which its variance is the prior's).

    Assumptions: the latent sites are global or in plates of fixed size (a site in a
    subsampled plate needs per-point parameters: use an amortized guide); sites marked for
    enumeration (``infer={"enumerate": ...}``) are left to ``TraceEnum_ELBO``; the model's
    latent sites keep their shapes between calls.

    How it differs from ``AutoNormal``, and why: each factor is sampled at the model's own
    site rather than as a Normal at an auxiliary unconstrained site followed by a ``Delta``, so
    ``TraceMeanField_ELBO`` finds torch's closed-form KLs; the factor's family follows the
    support (a Beta on the unit interval, a Dirichlet on the simplex) where AutoNormal always
    pushes a Normal through a bijection. The surface is AutoNormal's: :meth:`median`,
    :meth:`quantiles` and :meth:`mean` take the model's arguments, :meth:`get_posterior`
    gives ``{site: distribution}``, :meth:`sample_latent` one draw of every site, and
    ``create_plates`` supplies the model's plates. Parameters live in the guide and are named
    in Pyro's param store after the model's sites (:mod:`zoo.guides.naming`), where
    AutoNormal's share the name ``AutoNormal`` across instances.

    :param model: the Pyro model, called with the arguments the guide is called with.
    :param families: ``{site: family}`` overrides, with a family from :data:`FAMILIES`.
    :param init_values: ``{site: value}`` initial values (constrained) of some sites.
    :param float init_scale: initial scale of each factor in the unconstrained space.
    :param init_loc_fn: ``init_loc_fn(site) -> value`` for sites not in ``init_values``.
    :param create_plates: ``create_plates(*args, **kwargs)`` returns the model's plates (one
        or a list); plates it does not name are made from the model's trace.

    Example::

        >>> import torch, pyro, pyro.distributions as dist
        >>> from zoo.guides import MeanField
        >>> def model(x):
        ...     rate = pyro.sample("rate", dist.LogNormal(0.0, 1.0))
        ...     with pyro.plate("data", len(x)):
        ...         pyro.sample("x", dist.Poisson(rate), obs=x)
        >>> guide = MeanField(model)
        >>> elbo = pyro.infer.TraceMeanField_ELBO()  # closed-form KL(LogNormal || LogNormal)
        >>> svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), elbo)
        >>> loss = svi.step(torch.tensor([3.0, 4.0, 2.0]))
        >>> guide.family["rate"], guide.median()["rate"].shape
        ('lognormal', torch.Size([]))
    """

    def __init__(
        self,
        model: Callable,
        *,
        families: dict[str, str] | None = None,
        init_values: dict[str, torch.Tensor] | None = None,
        init_scale: float = 0.1,
        init_loc_fn: Callable = init_to_feasible,
        create_plates: Callable | None = None,
    ) -> None:
        if not init_scale > 0:
            raise ValueError(f"init_scale must be > 0, got {init_scale!r}")
        for name, family in (families or {}).items():
            if family not in FAMILIES:
                raise ValueError(
                    f"families[{name!r}] = {family!r} is not a family; valid: {', '.join(FAMILIES)}"
                )
        super().__init__(model, create_plates=create_plates)
        # the param store name is taken at set-up, from the sites (zoo.guides.naming)
        self._zoo_name = type(self).__name__
        self.families = dict(families or {})
        self.init_values = dict(init_values or {})
        self.init_scale = init_scale
        self.init_loc_fn = init_loc_fn
        self.family: dict[str, str] = {}  # site -> family, once set up
        self._sites: dict[str, dict] = {}  # site -> event_dim, frames, transform, attribute prefix

    # ---- set-up ------------------------------------------------------------------------

    @property
    def is_setup(self) -> bool:
        """Whether the guide has traced the model and created its parameters (its first call, or
        :meth:`setup`, does)."""
        return bool(self._sites)

    def setup(self, *args, **kwargs) -> None:
        """Traces the model once with these arguments and creates the factors' parameters.

        Called by the first ``guide(*args, **kwargs)``; call it yourself to create the
        parameters before loading a state dict into them.
        """
        with poutine.block(), torch.no_grad():
            trace = poutine.trace(self._model[0]).get_trace(*args, **kwargs)
        unknown = set(self.families) - set(trace.nodes)
        if unknown:
            raise ValueError(f"families names sites the model does not have: {sorted(unknown)}")
        latent = [
            (name, site)
            for name, site in trace.nodes.items()
            if not (
                site["type"] != "sample"
                or site["is_observed"]
                or poutine.util.site_is_subsample(site)
                or site["infer"].get("enumerate") is not None
                or site["infer"].get("is_auxiliary")
            )
        ]
        if not latent:
            raise ValueError("the model has no latent sample sites for a mean-field guide")
        # named before the parameters exist: inside a call, creating one registers it
        self._take_name(";".join(f"{n}:{tuple(s['value'].shape)}" for n, s in latent))
        self._sites, self.family = {}, {}
        for name, site in latent:
            with helpful_support_errors(site):  # e.g. a ProjectedNormal without its reparam
                self._add_site(name, site)

    def _add_site(self, name: str, site: dict) -> None:
        if site["fn"].support.is_discrete:
            raise ValueError(
                f"site {name!r} is discrete ({type(site['fn']).__name__}, support "
                f"{site['fn'].support}); a mean-field guide covers continuous sites: mark it "
                "for enumeration (infer={'enumerate': 'parallel'}, with TraceEnum_ELBO), or "
                "block it out of this guide (poutine.block(model, hide=[...])) and give it "
                "another one in an AutoGuideList"
            )
        frames = [f for f in site["cond_indep_stack"] if f.vectorized]
        for frame in frames:
            if frame.full_size is not None and frame.full_size != frame.size:
                raise ValueError(
                    f"site {name!r} is in the subsampled plate {frame.name!r}: a mean-field "
                    "guide has global parameters; use an amortized guide for local latents"
                )
        if any(not f.vectorized for f in site["cond_indep_stack"]):
            raise ValueError(f"site {name!r} is in a sequential plate; use vectorized plates")
        fn = site["fn"]
        support = fn.support
        family = self.families.get(name, family_for(support))
        valid = {family_for(support), "transformed_normal"}
        if family not in valid:
            raise ValueError(
                f"family {family!r} does not fit site {name!r} with support {support}; "
                f"valid: {', '.join(sorted(valid))}"
            )
        value = self.init_values.get(name)
        if value is None:
            value = self.init_loc_fn(site)
        value = torch.as_tensor(value, dtype=site["value"].dtype).expand(site["value"].shape)
        prefix = re.sub(r"\W", "_", name)
        if any(s["prefix"] == prefix for s in self._sites.values()):
            prefix = f"{prefix}_{len(self._sites)}"
        self._sites[name] = {
            "event_dim": fn.event_dim,
            "frames": frames,
            "transform": biject_to(support),
            "prefix": prefix,
        }
        self.family[name] = family
        if family in ("dirichlet", "beta"):
            self._sites[name]["total"] = _prior_total_concentration(fn, value, family)
        self.initialize(name, value, create=True)

    def initialize(
        self,
        name: str,
        value: torch.Tensor,
        scale: float | torch.Tensor | None = None,
        *,
        total_concentration: float | torch.Tensor | None = None,
        create: bool = False,
    ) -> None:
        """Sets the factor of site ``name`` to be centred on ``value`` (constrained): its loc
        (Normal), log-loc (LogNormal), mean (Dirichlet, Beta) or transformed loc. ``scale``
        (unconstrained) defaults to ``init_scale``. A Dirichlet or Beta takes the total
        concentration ``total_concentration``, else ``1 / scale**2`` when ``scale`` is given,
        else the prior's (its variance at this mean equals the prior's)."""
        info, family = self._sites[name], self.family[name]
        value = torch.as_tensor(value).detach()
        if family in ("dirichlet", "beta"):
            if total_concentration is not None:
                total = torch.as_tensor(total_concentration, dtype=value.dtype)
            elif scale is not None:
                total = 1.0 / torch.as_tensor(scale, dtype=value.dtype) ** 2
            else:
                total = info["total"]
            if family == "dirichlet":
                total = torch.as_tensor(total, dtype=value.dtype).unsqueeze(-1)
                raw = {"log_concentration": (value.clamp_min(1e-6) * total).log()}
            else:
                value = value.clamp(1e-6, 1 - 1e-6)
                raw = {
                    "log_concentration1": (value * total).log(),
                    "log_concentration0": ((1 - value) * total).log(),
                }
        else:
            scale = self.init_scale if scale is None else scale
            if family == "normal":
                loc = value
            elif family == "lognormal":
                loc = value.clamp_min(1e-30).log()
            else:
                loc = info["transform"].inv(value)
            scale = torch.as_tensor(scale, dtype=loc.dtype).expand(loc.shape)
            raw = {"loc": loc, "scale_raw": _inverse_softplus(scale)}
        for key, tensor in raw.items():
            attribute = f"{info['prefix']}_{key}"
            if create:
                setattr(self, attribute, torch.nn.Parameter(tensor.clone().contiguous()))
            else:
                with torch.no_grad():
                    self._parameter(attribute).copy_(tensor)

    def _parameter(self, attribute: str) -> torch.Tensor:
        return self._parameters[attribute]

    # ---- the factors -------------------------------------------------------------------

    def distribution(self, name: str) -> dist.Distribution:
        """The factor of site ``name``, with the site's batch shape and event dim."""
        self._check_site(name)
        info, family = self._sites[name], self.family[name]
        event_dim = info["event_dim"]
        get = lambda key: getattr(self, f"{info['prefix']}_{key}")  # noqa: E731  (pyro.param)
        # Gamma-ratio draws: the same distributions as torch's, and exportable by torch.jit
        if family == "dirichlet":
            return GammaRatioDirichlet(get("log_concentration").exp()).to_event(event_dim - 1)
        if family == "beta":
            return GammaRatioBeta(
                get("log_concentration1").exp(), get("log_concentration0").exp()
            ).to_event(event_dim)
        loc, scale = get("loc"), F.softplus(get("scale_raw"))
        if family == "normal":
            return dist.Normal(loc, scale).to_event(event_dim)
        if family == "lognormal":
            return dist.LogNormal(loc, scale).to_event(event_dim)
        transform = info["transform"]
        base_event = transform.domain.event_dim
        fn = dist.TransformedDistribution(dist.Normal(loc, scale).to_event(base_event), transform)
        return fn.to_event(event_dim - fn.event_dim) if event_dim > fn.event_dim else fn

    def forward(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        if not self.is_setup:
            self.setup(*args, **kwargs)
        plates: dict[str, pyro.plate] = {}
        if self.create_plates is not None:  # the user's plates, where they name the model's
            given = self.create_plates(*args, **kwargs)
            given = [given] if isinstance(given, pyro.plate) else given
            plates = {p.name: p for p in given}
        values = {}
        for name, info in self._sites.items():  # in the model's order, as TraceMeanField wants
            with ExitStack() as stack:
                for frame in info["frames"]:
                    if frame.name not in plates:
                        plates[frame.name] = pyro.plate(frame.name, frame.size, dim=frame.dim)
                    stack.enter_context(plates[frame.name])
                values[name] = pyro.sample(name, self.distribution(name))
        return values

    def _push(self, name: str, z: torch.Tensor) -> torch.Tensor:
        """An unconstrained value of a Normal-based factor mapped to the site's space."""
        family = self.family[name]
        if family == "normal":
            return z
        if family == "lognormal":
            return z.exp()
        return self._sites[name]["transform"](z)

    # ---- Pyro's AutoGuide surface -------------------------------------------------------

    def _ready(self, args: tuple, kwargs: dict) -> None:
        if self.is_setup:
            return
        if not args and not kwargs:
            try:
                self.setup()
            except TypeError as error:
                raise ValueError(
                    f"{type(self).__name__} is not set up yet and the model needs arguments: "
                    "pass them (guide.median(x)) or call the guide once"
                ) from error
            return
        self.setup(*args, **kwargs)

    def _check_site(self, name: str) -> None:
        if name in self._sites:
            return
        if not self.is_setup:
            raise ValueError(
                f"{type(self).__name__} is not set up yet: call it (or setup) with the model's "
                f"arguments before asking for site {name!r}"
            )
        raise ValueError(
            f"{type(self).__name__} has no latent site {name!r}; its sites: "
            f"{', '.join(self._sites)}"
        )

    def get_posterior(self, *args, **kwargs) -> dict[str, dist.Distribution]:
        """``{site: q(site)}``, each factor as a distribution with the site's shape; takes the
        model's arguments (used only to set the guide up if it was never called)."""
        self._ready(args, kwargs)
        return {name: self.distribution(name) for name in self._sites}

    def sample_latent(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """One joint draw of every latent site, ``{site: value}``, recorded in no trace.
        (Pyro's ``AutoContinuous.sample_latent`` returns one unconstrained vector instead:
        this guide has no joint unconstrained space.)"""
        self._ready(args, kwargs)
        with poutine.block():
            return {k: v.detach() for k, v in self(*args, **kwargs).items()}

    @torch.no_grad()
    def median(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """Each factor's median: the 0.5 quantile of :meth:`quantiles`, exactly."""
        return {name: value[0] for name, value in self.quantiles([0.5], *args, **kwargs).items()}

    @torch.no_grad()
    def mean(self, *args, num_samples: int = 1000, **kwargs) -> dict[str, torch.Tensor]:
        """Each factor's mean: in closed form, except for ``transformed_normal`` factors (the
        average of ``num_samples`` draws from a fixed seed, so the same at every call)."""
        self._ready(args, kwargs)
        result = {}
        for name in self._sites:
            fn = self.distribution(name)
            if self.family[name] == "transformed_normal":
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(0)
                    result[name] = fn.sample((num_samples,)).mean(0)
            else:
                result[name] = fn.mean.detach()
        return result

    @torch.no_grad()
    def quantiles(self, quantiles: Sequence[float], *args, **kwargs) -> dict[str, torch.Tensor]:
        """Quantiles of each factor, shaped ``(len(quantiles), *site_shape)``: deterministic,
        and the 0.5 quantile is :meth:`median`.

        Exact marginal quantiles for Normal, LogNormal, Beta and Dirichlet factors (a
        Dirichlet's marginals are Betas, so its median need not sum to one) and for
        transformed Normals whose transform acts elementwise. For other transforms (the
        simplex or a correlation matrix, by ``families`` override), the transform of the
        unconstrained Normal's quantiles, as Pyro's ``AutoNormal`` reports them. Takes the
        model's arguments (used only to set the guide up if it was never called).
        """
        self._ready(args, kwargs)
        result = {}
        for name, info in self._sites.items():
            family = self.family[name]
            get = lambda key: getattr(self, f"{info['prefix']}_{key}")  # noqa: B023, E731
            q = torch.as_tensor(quantiles, dtype=torch.get_default_dtype())
            if family == "beta":
                c1, c0 = get("log_concentration1").exp(), get("log_concentration0").exp()
                result[name] = beta_icdf(c1, c0, q.reshape((-1,) + (1,) * c1.dim()))
            elif family == "dirichlet":
                alpha = get("log_concentration").exp()
                rest = alpha.sum(-1, keepdim=True) - alpha
                result[name] = beta_icdf(alpha, rest, q.reshape((-1,) + (1,) * alpha.dim()))
            else:
                loc, scale = get("loc"), F.softplus(get("scale_raw"))
                q = q.to(loc).reshape((-1,) + (1,) * loc.dim())
                result[name] = self._push(name, loc + scale * dist.Normal(0.0, 1.0).icdf(q))
        return result

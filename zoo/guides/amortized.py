"""Amortized Normal guide: an encoder network outputs q(z|x) for every data point.

An :class:`~pyro.infer.autoguide.AutoGuide`: it mirrors the model's data plate (from
``create_plates`` as Pyro's autoguides do, else from a trace of the model), so it works with
subsampled plates, and it can sit beside a guide for global sites in an ``AutoGuideList``.
Its parameters live in the guide (the encoder is a submodule) and are registered in Pyro's
param store under a name stable for the model and unique in the process
(:mod:`zoo.guides.naming`), so two guides in one process never share parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.infer.autoguide import AutoGuide

from zoo.guides.naming import OwnName

_SCALES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "exp": torch.exp,
    "softplus": F.softplus,
}


class AmortizedNormal(OwnName, AutoGuide):
    """q(z_i | x_i) = Normal(loc(x_i), scale(x_i)) for a local latent site inside a data plate.

    Family: a diagonal Normal per data point, ``event_dim`` taken from the model's site.
    Parameterization: ``loc, raw = encoder(*inputs)``; ``scale = exp(raw)`` (the encoder
    outputs log sigma, as in Pyro's VAE tutorial) or ``softplus(raw)`` (better behaved when
    raw is large). Assumes: the site is unobserved, real-valued, and inside the plates that
    ``create_plates`` returns.

    How it differs from ``AutoNormal``, and why: its parameters are an encoder's weights, not
    a loc and scale per data point, so it serves data points it never saw and a plate
    subsampled at random; it covers the one site it is given (put it in an ``AutoGuideList``
    beside a guide for the global sites). Its summaries take the model's arguments, as
    AutoNormal's do, and need them: :meth:`median`, :meth:`mean`, :meth:`quantiles`,
    :meth:`get_posterior` and :meth:`sample_latent` describe q(z | x) for the batch ``x``
    given; :meth:`distribution` takes the batch rather than a site name. It has no
    ``init_loc_fn`` or ``init_scale``: the encoder's own initialization sets the start.

    :param model: the Pyro model whose site this guide covers.
    :param torch.nn.Module encoder: maps the encoder inputs to a pair ``(loc, raw_scale)``,
        each shaped like one batch of the site's values.
    :param str site: name of the latent sample site in the model.
    :param str scale: ``"exp"`` or ``"softplus"``.
    :param create_plates: ``create_plates(*args, **kwargs)`` returns the plate (or a list of
        plates) that the site lives in, with the same names, sizes and subsampling as in the
        model. Required when the model subsamples its data plate.
    :param encoder_inputs: ``encoder_inputs(*args, **kwargs)`` returns the tuple of encoder
        arguments; by default the model's first positional argument.

    Example::

        >>> import torch, pyro, pyro.distributions as dist
        >>> from zoo.guides import AmortizedNormal
        >>> def model(x):
        ...     with pyro.plate("data", len(x)):
        ...         z = pyro.sample("z", dist.Normal(torch.zeros(len(x), 2), 1.0).to_event(1))
        ...         pyro.sample("x", dist.Normal(z.sum(-1, keepdim=True), 1.0).to_event(1), obs=x)
        >>> class Encoder(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.net = torch.nn.Linear(1, 4)
        ...     def forward(self, x):
        ...         return self.net(x).chunk(2, dim=-1)
        >>> guide = AmortizedNormal(model, Encoder(), site="z",
        ...                         create_plates=lambda x: pyro.plate("data", len(x)))
        >>> svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.01}), pyro.infer.Trace_ELBO())
        >>> loss = svi.step(torch.randn(8, 1))
    """

    def __init__(
        self,
        model: Callable,
        encoder: torch.nn.Module,
        site: str = "z",
        *,
        scale: str = "exp",
        create_plates: Callable[..., pyro.plate | Sequence[pyro.plate]] | None = None,
        encoder_inputs: Callable[..., tuple] | None = None,
    ) -> None:
        if scale not in _SCALES:
            raise ValueError(f"scale must be one of {sorted(_SCALES)}, got {scale!r}")
        super().__init__(model, create_plates=create_plates)
        # the param store name is taken at set-up, from the sites (zoo.guides.naming)
        self._zoo_name = type(self).__name__
        self.encoder = encoder
        self.site = site
        self.scale = scale
        self.encoder_inputs = encoder_inputs
        self._event_dim: int | None = None

    def _setup_prototype(self, *args, **kwargs) -> None:
        super()._setup_prototype(*args, **kwargs)
        node = self.prototype_trace.nodes.get(self.site)
        if node is None or node["type"] != "sample" or node["is_observed"]:
            with poutine.block(), torch.no_grad():
                trace = poutine.trace(self.model).get_trace(*args, **kwargs)
            node = trace.nodes.get(self.site)
            if node is not None and node["type"] == "sample" and node["is_observed"]:
                raise ValueError(
                    f"site {self.site!r} is observed; an amortized guide covers latent sites"
                )
            sites = [n for n, s in trace.nodes.items() if s["type"] == "sample"]
            raise ValueError(
                f"the model has no sample site {self.site!r}; its sample sites: {sites}"
            )
        self._event_dim = node["fn"].event_dim
        self._frames = [f for f in node["cond_indep_stack"] if f.vectorized]
        # not self.encoder: inside a call, that registers it under the name it has now
        encoder = type(self._modules["encoder"]).__qualname__
        self._take_name(f"{self.site}:{self._event_dim}:{encoder}")

    def setup(self, *args, **kwargs) -> AmortizedNormal:
        """Traces the model with these arguments to find the site's event dim and plates;
        done by the first call, or by :meth:`distribution` and :meth:`median`."""
        if self.prototype_trace is None:
            self._setup_prototype(*args, **kwargs)
        return self

    def _inputs(self, *args, **kwargs) -> tuple:
        return self.encoder_inputs(*args, **kwargs) if self.encoder_inputs else (args[0],)

    def distribution(self, *args, **kwargs) -> dist.Distribution:
        """q(z|x) for a batch, without sampling: ``Normal(loc, scale)`` with the site's event dim."""
        self.setup(*args, **kwargs)
        return self._q(self._inputs(*args, **kwargs))

    def _q(self, inputs: tuple) -> dist.Distribution:
        loc, raw_scale = self.encoder(*inputs)
        return dist.Normal(loc, _SCALES[self.scale](raw_scale)).to_event(self._event_dim)

    def forward(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """Draws the site for the batch (or the plate's subsample of it); takes the model's
        arguments."""
        self.setup(*args, **kwargs)  # before entering the plates: it runs the model
        given = self._create_plates(*args, **kwargs) if self.master is not None else {}
        if self.master is None and self.create_plates is not None:
            plates = self.create_plates(*args, **kwargs)
            plates = [plates] if isinstance(plates, pyro.plate) else plates
            given = {p.name: p for p in plates}
        inputs = self._inputs(*args, **kwargs)
        with ExitStack() as stack:
            later = []
            for frame in self._frames:
                plate = given.get(frame.name)
                if plate is None and (frame.full_size or frame.size) != frame.size:
                    # the model draws a random subsample: so does the guide, and the model
                    # replays the guide's indices
                    plate = pyro.plate(
                        frame.name, frame.full_size, subsample_size=frame.size, dim=frame.dim
                    )
                if plate is None:
                    later.append(frame)
                    continue
                indices = stack.enter_context(plate)
                if plate.subsample_size < plate.size:  # the encoder sees the subsample's rows
                    inputs = tuple(_rows(v, indices, plate.size) for v in inputs)
            q = self._q(inputs)
            for frame in later:  # plates of the batch's own size, read off the encoder's output
                size = q.batch_shape[frame.dim] if len(q.batch_shape) >= -frame.dim else 1
                stack.enter_context(pyro.plate(frame.name, size, dim=frame.dim))
            z = pyro.sample(self.site, q)
        return {self.site: z}

    @torch.no_grad()
    def median(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """The posterior median (= mean) of each data point's latent, for the whole batch."""
        return {self.site: self.distribution(*args, **kwargs).mean}

    @torch.no_grad()
    def mean(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """The posterior mean of each data point's latent, as :meth:`median`."""
        return self.median(*args, **kwargs)

    def get_posterior(self, *args, **kwargs) -> dict[str, dist.Distribution]:
        """``{site: q(z | x)}`` for the batch in the model's arguments (see
        :meth:`distribution`)."""
        return {self.site: self.distribution(*args, **kwargs)}

    def sample_latent(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """One draw of the site for the batch, ``{site: value}``, recorded in no trace."""
        with poutine.block():
            return {k: v.detach() for k, v in self(*args, **kwargs).items()}

    @torch.no_grad()
    def quantiles(self, quantiles: Sequence[float], *args, **kwargs) -> dict[str, torch.Tensor]:
        """Quantiles of each data point's latent, stacked along a new first dim; the 0.5
        quantile is :meth:`median`.

        :param quantiles: levels in (0, 1), e.g. ``[0.05, 0.5, 0.95]``.
        """
        q = self.distribution(*args, **kwargs).base_dist
        levels = torch.as_tensor(quantiles, dtype=q.loc.dtype, device=q.loc.device)
        return {self.site: q.icdf(levels.reshape((-1,) + (1,) * q.loc.dim()))}


def _rows(value, indices: torch.Tensor, size: int):
    """The rows ``indices`` of a tensor with one row per data point; anything else as it is."""
    if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == size:
        return value.index_select(0, indices.to(value.device))
    return value

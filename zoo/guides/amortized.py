"""Amortized Normal guide: an encoder network outputs q(z|x) for every data point.

The guide mirrors the model's data plate (from ``create_plates``, as Pyro's autoguides do),
so it works with subsampled plates, and it can sit beside a guide for global sites in an
``AutoGuideList``. Its parameters live in the guide (the encoder is a submodule) and are
registered in Pyro's param store under a name unique to this guide, so two guides in one
process never share parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.nn import PyroModule

from zoo.guides.naming import unique_name

_SCALES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "exp": torch.exp,
    "softplus": F.softplus,
}


class AmortizedNormal(PyroModule):
    """q(z_i | x_i) = Normal(loc(x_i), scale(x_i)) for a local latent site inside a data plate.

    Family: a diagonal Normal per data point, ``event_dim`` taken from the model's site.
    Parameterization: ``loc, raw = encoder(*inputs)``; ``scale = exp(raw)`` (the encoder
    outputs log sigma, as in Pyro's VAE tutorial) or ``softplus(raw)`` (better behaved when
    raw is large). Assumes: the site is unobserved, real-valued, and inside the plates that
    ``create_plates`` returns.

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
        super().__init__(name=unique_name(type(self).__name__))
        self._model = (model,)  # a tuple, so the model is not registered as a submodule
        self.encoder = encoder
        self.site = site
        self.scale = scale
        self.create_plates = create_plates
        self.encoder_inputs = encoder_inputs
        self._event_dim: int | None = None

    def _setup_prototype(self, *args, **kwargs) -> None:
        with poutine.block(), torch.no_grad():
            trace = poutine.trace(self._model[0]).get_trace(*args, **kwargs)
        node = trace.nodes.get(self.site)
        if node is None or node["type"] != "sample":
            sites = [n for n, s in trace.nodes.items() if s["type"] == "sample"]
            raise ValueError(
                f"the model has no sample site {self.site!r}; its sample sites: {sites}"
            )
        if node["is_observed"]:
            raise ValueError(
                f"site {self.site!r} is observed; an amortized guide covers latent sites"
            )
        self._event_dim = node["fn"].event_dim

    def _plates(self, *args, **kwargs) -> list:
        if self.create_plates is None:
            return []
        plates = self.create_plates(*args, **kwargs)
        return [plates] if isinstance(plates, pyro.plate) else list(plates)

    def distribution(self, *args, **kwargs) -> dist.Distribution:
        """q(z|x) for a batch, without sampling: ``Normal(loc, scale)`` with the site's event dim."""
        if self._event_dim is None:
            self._setup_prototype(*args, **kwargs)
        inputs = self.encoder_inputs(*args, **kwargs) if self.encoder_inputs else (args[0],)
        loc, raw_scale = self.encoder(*inputs)
        return dist.Normal(loc, _SCALES[self.scale](raw_scale)).to_event(self._event_dim)

    def forward(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        if self._event_dim is None:  # before entering the plates: the prototype runs the model
            self._setup_prototype(*args, **kwargs)
        plates = self._plates(*args, **kwargs)
        for plate in plates:
            plate.__enter__()
        try:
            z = pyro.sample(self.site, self.distribution(*args, **kwargs))
        finally:
            for plate in reversed(plates):
                plate.__exit__(None, None, None)
        return {self.site: z}

    def median(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        """The posterior median (= mean) of each data point's latent."""
        return {self.site: self.distribution(*args, **kwargs).mean}

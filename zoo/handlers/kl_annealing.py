"""KL annealing: a coefficient beta on the KL part of the ELBO.

Under ``Trace_ELBO`` a model and guide run inside this handler give the loss
``-(log p(x|z) + beta * (log p(z) - log q(z|x)))``: every latent site of the model and
every site of the guide has its scale multiplied by beta, observed sites are left alone.
Under ``TraceMeanField_ELBO`` the analytic KL is weighted by the guide site's scale, so the
same rule gives ``E_q[log p(x|z)] - beta * KL``.

``poutine.scale`` cannot do this: it refuses a scale of 0, and it also scales observed
sites. This handler accepts ``beta = 0`` (pure reconstruction at the start of a warm-up)
and any finite ``beta > 1`` (beta-VAE, Blundell's minibatch weights).

Not under ``JitTrace_ELBO`` with a beta that changes: the compiled graph keeps the beta of
its first call as a constant and ignores later values (the zoo's trainer refuses it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar, overload

import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import Message
from pyro.poutine.util import site_is_subsample

_F = TypeVar("_F", bound=Callable)


def _checked_beta(beta: float) -> float:
    if isinstance(beta, torch.Tensor):
        if beta.numel() != 1:
            raise ValueError(
                f"Expected a scalar beta but got a tensor of shape {tuple(beta.shape)}"
            )
        beta = beta.item()
    if isinstance(beta, bool) or not isinstance(beta, (int, float)):
        raise TypeError(f"Expected beta to be a number but got {type(beta).__name__}")
    if not (math.isfinite(beta) and beta >= 0):
        raise ValueError(f"Expected a finite beta >= 0 but got {beta}")
    return float(beta)


class KLAnnealingMessenger(Messenger):
    """Multiplies the scale of every unobserved sample site by ``beta``.

    Wrap both the model and the guide (or the whole SVI step) so that the log densities of
    the latent sites in the model and of all guide sites carry the same coefficient.
    Observed sites and ``pyro.plate`` subsample sites keep their scale. The handler
    multiplies into ``msg["scale"]``, so it composes with plate subsampling and
    ``poutine.scale`` in any order.

    ``beta`` is an attribute that a training loop may set between steps; the handler never
    counts steps itself (schedules live in :mod:`zoo.schedules`).

    :param float beta: the KL coefficient, finite and ``>= 0``.

    Example::

        >>> import pyro, torch, pyro.distributions as dist
        >>> from zoo.handlers import kl_annealing
        >>> def model(x):
        ...     z = pyro.sample("z", dist.Normal(0.0, 1.0))
        ...     pyro.sample("x", dist.Normal(z, 1.0), obs=x)
        >>> with kl_annealing(beta=0.1):
        ...     tr = pyro.poutine.trace(model).get_trace(torch.tensor(0.5))
        >>> tr.nodes["z"]["scale"], tr.nodes["x"]["scale"]
        (0.1, 1.0)
    """

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        self.beta = beta

    @property
    def beta(self) -> float:
        return self._beta

    @beta.setter
    def beta(self, value: float) -> None:
        self._beta = _checked_beta(value)

    def _pyro_sample(self, msg: Message) -> None:
        if msg["is_observed"] or site_is_subsample(msg):
            return
        msg["scale"] = self._beta * msg["scale"]


@overload
def kl_annealing(fn: None = ..., beta: float = ...) -> KLAnnealingMessenger: ...
@overload
def kl_annealing(fn: _F, beta: float = ...) -> _F: ...
def kl_annealing(fn=None, beta=1.0):
    """Weights the KL part of the ELBO by ``beta``: see :class:`KLAnnealingMessenger`.

    Use as a context manager (``with kl_annealing(beta=0.5): svi.step(x)``) or as a
    handler around a model or guide (``kl_annealing(model, beta=0.5)``).

    :param fn: a stochastic function (model or guide), or ``None`` for a context manager.
    :param float beta: the KL coefficient, finite and ``>= 0``.
    """
    messenger = KLAnnealingMessenger(beta)
    return messenger if fn is None else messenger(fn)

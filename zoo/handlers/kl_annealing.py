"""KL annealing: a coefficient beta on the KL part of the ELBO.

Under ``Trace_ELBO`` a model and guide run inside this handler give the loss
``-(log p(x|z) + beta * (log p(z) - log q(z|x)))``: every latent site of the model and
every site of the guide has its scale multiplied by beta, observed sites are left alone.
Under ``TraceMeanField_ELBO`` the analytic KL is weighted by the guide site's scale, so the
same rule gives ``E_q[log p(x|z)] - beta * KL``.

``poutine.scale`` cannot do this: it refuses a scale of 0, and it also scales observed
sites. This handler accepts ``beta = 0`` (pure reconstruction at the start of a warm-up)
and any finite ``beta > 1`` (beta-VAE, Blundell's minibatch weights).

Sites marked for enumeration (``infer={"enumerate": ...}``) keep their scale: they are summed
out, so they belong to the likelihood ``p(x | theta) = sum_z p(x, z | theta)`` exactly as in a
model that marginalizes ``z`` itself (and ``TraceEnum_ELBO`` needs an enumerated site and the
sites that depend on it to share one scale). A ``pyro.factor`` is an observed site in Pyro and
is never annealed: a term that should carry beta belongs in a latent site's distribution.

Not under ``JitTrace_ELBO`` with a beta that changes: the compiled graph keeps the beta of
its first call as a constant and ignores later values (the zoo's trainer refuses it). The
trainer's own graph of a step (:mod:`zoo.replay`) takes beta as an input instead
(:meth:`KLAnnealingMessenger.traced_beta`), so it follows a schedule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar, overload

import torch
from pyro.poutine.condition_messenger import ConditionMessenger
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import _PYRO_STACK, Message
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
    Observed sites, sites marked for enumeration and ``pyro.plate`` subsample sites keep
    their scale. The handler multiplies into ``msg["scale"]``, so it composes with plate
    subsampling and ``poutine.scale`` in any order. It also composes with
    ``poutine.condition`` in either order: a site that a ``poutine.condition`` applied
    outside this handler will observe counts as observed. A handler outside it that changes
    whether a site is observed or enumerated after this one has seen it (``uncondition``,
    ``config_enumerate``) is refused with an error that says to apply it inside instead.

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
        # site name -> (id of its message, whether this handler scaled it), between the
        # site's sample and post-sample hooks, to notice a handler that acted after it
        self._decisions: dict[str, tuple[int, bool]] = {}

    @property
    def beta(self) -> float:
        """The coefficient of the unobserved sites' log densities; set it between steps to follow
        a schedule (a finite number >= 0)."""
        return self._beta

    @beta.setter
    def beta(self, value: float) -> None:
        self._beta = _checked_beta(value)

    @contextmanager
    def traced_beta(self, beta: torch.Tensor) -> Iterator[None]:
        """For the duration, the coefficient is the 0-d tensor ``beta``, unchecked: while
        :mod:`zoo.replay` records a step as a graph, so that beta is an input of the graph
        rather than a constant in it."""
        saved, self._beta = self._beta, beta
        try:
            yield
        finally:
            self._beta = saved

    def _pyro_sample(self, msg: Message) -> None:
        if site_is_subsample(msg):
            return
        annealed = not (_is_enumerated(msg) or msg["is_observed"] or self._conditioned_later(msg))
        self._decisions[msg["name"]] = (id(msg), annealed)
        if annealed:
            msg["scale"] = self._beta * msg["scale"]

    def _conditioned_later(self, msg: Message) -> bool:
        """Whether a ``poutine.condition`` applied outside this handler, whose hook runs after
        this one's, will make the site observed."""
        name = msg["name"]
        below = _PYRO_STACK[: _PYRO_STACK.index(self)] if self in _PYRO_STACK else []
        for frame in below:
            if isinstance(frame, ConditionMessenger) and name in frame.data:
                data = frame.data
                value = data.nodes[name]["value"] if hasattr(data, "nodes") else data[name]
                if value is not None:
                    return True
        return False

    def _pyro_post_sample(self, msg: Message) -> None:
        decision = self._decisions.pop(msg["name"], None)
        if decision is None or decision[0] != id(msg):
            return
        if decision[1] != (not (_is_enumerated(msg) or msg["is_observed"])):
            raise ValueError(
                f"site {msg['name']!r} became "
                f"{'observed or enumerated' if decision[1] else 'latent'} in a handler "
                "applied outside kl_annealing, after kl_annealing had "
                f"{'scaled' if decision[1] else 'left'} it: apply that handler inside, e.g. "
                "kl_annealing(config_enumerate(model)) rather than "
                "config_enumerate(kl_annealing(model))"
            )


def _is_enumerated(msg: Message) -> bool:
    return (msg["infer"] or {}).get("enumerate") in ("parallel", "sequential")


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

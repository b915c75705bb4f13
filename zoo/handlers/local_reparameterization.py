"""Local reparameterization (Kingma et al. 2015): sample a linear layer's pre-activations
instead of its weights.

When the weights ``W`` (out, in) and bias ``b`` (out,) of a layer are independent Normals,
``y = x W^T + b`` is Normal for each row of ``x`` with

    mean = x mu_W^T + mu_b,    variance = x^2 (sigma_W^2)^T + sigma_b^2,

so one draw of ``y`` per row has the same marginal as drawing the weights, with noise that
is independent across the rows of a minibatch: the gradient's variance falls with the batch.

The handler needs to know which distribution a weight was drawn from. It records every
sample site whose value it has not seen before (in SVI that is the guide's draw: the model
replays the very same tensor, which is then not recorded again), and it acts on
:func:`linear`, an effectful ``F.linear``: a layer that calls :func:`linear` with a weight
drawn from a Normal gets its output sampled from the distribution above; any other call is
an ordinary ``F.linear``. Wrap both the guide and the model (or the whole SVI step).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from pyro.poutine.runtime import Message, effectful

from zoo.handlers._normal_draws import NormalDrawRecorder

#: ``linear(x, weight, bias=None)``: ``F.linear`` as a Pyro effect, so that
#: :class:`LocalReparameterizationMessenger` can replace it; outside that handler it is
#: ``F.linear``.
linear = effectful(F.linear, type="linear")


class LocalReparameterizationMessenger(NormalDrawRecorder):
    """Samples the output of :func:`linear` from the Normal its Normal weights induce.

    Falls back to ``F.linear`` when the weight was not drawn from a Normal (a Delta guide, a
    scale-mixture prior) or was not drawn inside this handler. A bias that is a plain
    tensor, or drawn from something other than a Normal, adds to the mean without variance.

    Example::

        >>> import torch, pyro, pyro.distributions as dist
        >>> from zoo.handlers import linear, local_reparameterization
        >>> def layer(x):
        ...     w = pyro.sample("w", dist.Normal(torch.zeros(3, 2), 0.1).to_event(2))
        ...     return linear(x, w)
        >>> with local_reparameterization():
        ...     y = layer(torch.ones(5, 2))  # each of the 5 rows has its own noise
        >>> y.shape
        torch.Size([5, 3])
    """

    def _pyro_linear(self, msg: Message) -> None:
        if msg["done"]:
            return  # computed by a handler inside this one (flipout): its result stands
        x, weight, *rest = msg["args"]
        bias = rest[0] if rest else msg["kwargs"].get("bias")
        q_weight = self._normal_drawn_as(weight)
        if q_weight is None:
            return
        q_bias = self._normal_drawn_as(bias) if bias is not None else None
        mean = F.linear(x, q_weight.loc, q_bias.loc if q_bias is not None else bias)
        variance = F.linear(
            x**2, q_weight.scale**2, q_bias.scale**2 if q_bias is not None else None
        )
        # a zero row of x with a fixed bias has variance 0, where sqrt's gradient is infinite
        scale = variance.clamp_min(torch.finfo(variance.dtype).tiny).sqrt()
        msg["value"] = mean + scale * torch.randn_like(mean)
        msg["done"] = True


def local_reparameterization(
    fn: Callable | None = None,
) -> LocalReparameterizationMessenger | Callable:
    """Samples pre-activations of :func:`linear` layers: see
    :class:`LocalReparameterizationMessenger`.

    :param fn: a model or guide, or ``None`` for a context manager.
    """
    messenger = LocalReparameterizationMessenger()
    return messenger if fn is None else messenger(fn)

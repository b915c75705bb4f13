"""Flipout (Wen et al. 2018): per-example weight perturbations for one shared weight draw.

A minibatch that shares one draw ``W = mu + dW`` of a layer's weights shares its noise too,
so the gradient's variance does not fall with the batch. Flipout multiplies the perturbation
by random signs, ``s`` on each example's input channels and ``r`` on its output channels:

    y_n = op(x_n, mu) + op(x_n * s_n, dW) * r_n,

which is ``op`` at the weights ``mu + dW * (r_n s_n^T)``: a perturbation with the same
distribution as ``dW`` whenever its entries are independent and symmetric about 0 (a
mean-field Normal centred on ``mu``). So each example's output has exactly the distribution it
has with a weight draw of its own, and two examples' outputs are uncorrelated (not
independent: they share ``|dW|``). Unlike local reparameterization, which needs a layer whose
output is Normal, this works for convolutions; its cost is a second convolution (the
perturbation) per layer. Forward and backward of a
LeNet-5 convolution stack (batch 128) took 2.3 times as long as at fixed weights, and 2.8
times with mean and perturbation in one convolution of twice the groups, which is why they
are two (``benchmarks/flipout_cost.py``, 2 threads on a shared 2-core machine).

As :mod:`zoo.handlers.local_reparameterization` does, the handler records which Normal each
sample site was drawn from (:mod:`zoo.handlers._normal_draws`) and acts on effectful ops:
:func:`conv2d`, and :func:`zoo.handlers.linear` only if asked (in the zoo, dense layers use
local reparameterization). ``dW`` is the drawn weight minus the Normal's mean, so the gradient
reaches ``mu`` through the mean path and ``sigma`` through the very draw the guide made. A
weight that is not a Normal draw gives the plain op. Wrap both the guide and the model.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from pyro.distributions import Normal
from pyro.poutine.runtime import Message, effectful

from zoo.handlers._normal_draws import NormalDrawRecorder

#: ``conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1)``: ``F.conv2d``
#: as a Pyro effect, so that :class:`FlipoutMessenger` can replace it; outside that handler
#: it is ``F.conv2d``.
conv2d = effectful(F.conv2d, type="conv2d")

_CONV2D_PARAMETERS = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_LINEAR_PARAMETERS = ("input", "weight", "bias")


def _bind(names: tuple[str, ...], msg: Message) -> dict:
    """The op's arguments by name, whether they were passed by position or by keyword."""
    return {**dict(zip(names, msg["args"])), **msg["kwargs"]}


def _random_signs(like: torch.Tensor, broadcast_dims: int) -> torch.Tensor:
    """+-1 with probability 1/2 each, one per entry of ``like`` but its last
    ``broadcast_dims`` dimensions (the spatial ones, over which a sign is shared)."""
    shape = like.shape[: like.dim() - broadcast_dims] + (1,) * broadcast_dims
    signs = torch.empty(shape, dtype=like.dtype, device=like.device).bernoulli_(0.5)
    return signs.mul_(2).sub_(1)


class FlipoutMessenger(NormalDrawRecorder):
    """Replaces a layer's shared Normal weight perturbation by per-example flipped copies of it.

    On :func:`conv2d` (and :func:`zoo.handlers.linear` when ``linear=True``) whose weight was
    drawn from ``Normal(mu, sigma)`` inside this handler, returns
    ``op(x, mu, b_mean) + op(x * s, W - mu, db) * r``, with ``s`` (per example and input
    channel, shared over space) and ``r`` (per example and output channel) independent random
    signs drawn at each call. A bias drawn from a Normal contributes its mean, and its
    perturbation ``db`` flipped by ``r``; any other bias adds as it is. A weight that was not
    drawn from a Normal (a Delta guide, a scale-mixture prior, a plain tensor) or was not drawn
    inside this handler gives the plain op, as does an op that a handler inside this one has
    already computed. A layer must call :func:`conv2d`: ``torch.nn.Conv2d`` calls
    ``F.conv2d``, which no handler sees. Stacks with
    :class:`~zoo.handlers.LocalReparameterizationMessenger` (dense layers there, convolutions
    here): ``with LocalReparameterizationMessenger(), FlipoutMessenger(): ...``.

    :param bool linear: also apply flipout to :func:`zoo.handlers.linear` (by default dense
        layers are left to local reparameterization or to plain weight sampling).

    Example: a user's own Bayesian convolution::

        >>> import torch, pyro, pyro.distributions as dist
        >>> from pyro.nn import PyroModule, PyroSample
        >>> from zoo.handlers import conv2d, flipout
        >>> class BayesianConv(PyroModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         prior = dist.Normal(0.0, 0.1).expand([8, 3, 3, 3]).to_event(4)
        ...         self.weight = PyroSample(prior)
        ...     def forward(self, x):
        ...         return conv2d(x, self.weight, padding=1)  # (B, 3, H, W) -> (B, 8, H, W)
        >>> net = BayesianConv()
        >>> pyro.set_rng_seed(0)
        >>> x = torch.ones(1, 3, 6, 6).expand(2, 3, 6, 6)  # the same image twice
        >>> with flipout():
        ...     y = net(x)  # one weight draw, but each image has its own noise
        >>> y.shape
        torch.Size([2, 8, 6, 6])
        >>> torch.equal(y[0], y[1])
        False
    """

    def __init__(self, linear: bool = False) -> None:
        if not isinstance(linear, bool):
            raise TypeError(f"linear must be True or False, got {linear!r}")
        super().__init__()
        self.linear = linear

    def _pyro_conv2d(self, msg: Message) -> None:
        self._flip(F.conv2d, _bind(_CONV2D_PARAMETERS, msg), spatial_dims=2, msg=msg)

    def _pyro_linear(self, msg: Message) -> None:
        if self.linear:
            self._flip(F.linear, _bind(_LINEAR_PARAMETERS, msg), spatial_dims=0, msg=msg)

    def _flip(self, op: Callable, arguments: dict, spatial_dims: int, msg: Message) -> None:
        if msg["done"]:
            return  # computed by a handler inside this one: its result stands
        x, weight = arguments.pop("input"), arguments.pop("weight")
        bias = arguments.pop("bias", None)
        q_weight = self._normal_drawn_as(weight)
        if q_weight is None:
            return
        q_bias: Normal | None = self._normal_drawn_as(bias) if bias is not None else None
        if q_bias is None:
            mean_bias, bias_perturbation = bias, None
        else:
            mean_bias, bias_perturbation = q_bias.loc, bias - q_bias.loc
        mean = op(x, q_weight.loc, mean_bias, **arguments)
        input_signs = _random_signs(x, spatial_dims)
        perturbation = op(x * input_signs, weight - q_weight.loc, bias_perturbation, **arguments)
        msg["value"] = mean + perturbation * _random_signs(perturbation, spatial_dims)
        msg["done"] = True


def flipout(fn: Callable | None = None, linear: bool = False) -> FlipoutMessenger | Callable:
    """Flipout for :func:`conv2d` (and optionally :func:`zoo.handlers.linear`) layers: see
    :class:`FlipoutMessenger`.

    :param fn: a model or guide, or ``None`` for a context manager.
    :param bool linear: also apply flipout to :func:`zoo.handlers.linear`.
    """
    messenger = FlipoutMessenger(linear=linear)
    return messenger if fn is None else messenger(fn)

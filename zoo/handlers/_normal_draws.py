"""The bookkeeping that local reparameterization and flipout share: which Normal each sample
site's current value was drawn from.

Both handlers replace a layer's output by one computed from the distribution of its weights,
so each must recognize, from the tensor a layer receives, the draw it came from. A sample
site is recorded when its value is new to the handler (in SVI, the guide's draw); the model
replays that very tensor, whose record (the guide's Normal, not the prior) is then kept.
"""

from __future__ import annotations

import torch
from pyro.distributions import Independent, Normal
from pyro.poutine.messenger import Messenger
from pyro.poutine.runtime import Message
from pyro.poutine.util import site_is_subsample


def _normal_of(fn) -> Normal | None:
    while isinstance(fn, Independent):
        fn = fn.base_dist
    return fn if isinstance(fn, Normal) else None


class NormalDrawRecorder(Messenger):
    """A Messenger that remembers, per sample site, the latest value and the Normal it was
    drawn from; subclasses look a layer's weight up with :meth:`_normal_drawn_as`."""

    def __init__(self) -> None:
        super().__init__()
        # site name -> (the value drawn, the Normal it was drawn from); one entry per site,
        # so memory stays bounded over any number of steps
        self._draws: dict[str, tuple[torch.Tensor, Normal]] = {}

    def _pyro_post_sample(self, msg: Message) -> None:
        if msg["is_observed"] or site_is_subsample(msg):
            return
        value, previous = msg["value"], self._draws.get(msg["name"])
        if previous is not None and previous[0] is value:
            return  # a replay of a recorded draw: keep the distribution it was drawn from
        normal = _normal_of(msg["fn"])
        if normal is None or normal.batch_shape != value.shape:
            self._draws.pop(msg["name"], None)
        else:
            self._draws[msg["name"]] = (value, normal)

    def _normal_drawn_as(self, value: torch.Tensor | None) -> Normal | None:
        for drawn, normal in self._draws.values():
            if drawn is value:
                return normal
        return None

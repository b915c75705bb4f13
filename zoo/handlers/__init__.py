"""Effect handlers of the zoo."""

from zoo.handlers.flipout import FlipoutMessenger, conv2d, flipout
from zoo.handlers.kl_annealing import KLAnnealingMessenger, kl_annealing
from zoo.handlers.local_reparameterization import (
    LocalReparameterizationMessenger,
    linear,
    local_reparameterization,
)

__all__ = [
    "FlipoutMessenger",
    "KLAnnealingMessenger",
    "LocalReparameterizationMessenger",
    "conv2d",
    "flipout",
    "kl_annealing",
    "linear",
    "local_reparameterization",
]

"""Effect handlers of the zoo."""

from zoo.handlers.kl_annealing import KLAnnealingMessenger, kl_annealing
from zoo.handlers.local_reparameterization import (
    LocalReparameterizationMessenger,
    linear,
    local_reparameterization,
)

__all__ = [
    "KLAnnealingMessenger",
    "LocalReparameterizationMessenger",
    "kl_annealing",
    "linear",
    "local_reparameterization",
]

"""Effect handlers of the zoo."""

from zoo.handlers.kl_annealing import KLAnnealingMessenger, kl_annealing

__all__ = ["KLAnnealingMessenger", "kl_annealing"]

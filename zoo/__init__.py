"""zoo: a model zoo of probabilistic programs in Pyro.

The public API: the KL-annealing handler and its schedules, the guides, the models.
"""

from zoo.handlers import KLAnnealingMessenger, kl_annealing

__version__ = "0.1.0"
__all__ = ["KLAnnealingMessenger", "kl_annealing", "__version__"]

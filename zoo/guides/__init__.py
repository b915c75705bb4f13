"""Guides that other Pyro projects can import: ``from zoo.guides import BayesByBackprop``."""

from zoo.guides.amortized import AmortizedNormal
from zoo.guides.bbb import BayesByBackprop, init_to_fan_in_uniform

__all__ = ["AmortizedNormal", "BayesByBackprop", "init_to_fan_in_uniform"]

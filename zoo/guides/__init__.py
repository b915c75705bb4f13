"""Guides that other Pyro projects can import: ``from zoo.guides import MeanField``."""

from zoo.guides.amortized import AmortizedNormal
from zoo.guides.bbb import BayesByBackprop, init_to_fan_in_uniform
from zoo.guides.meanfield import MeanField

__all__ = ["AmortizedNormal", "BayesByBackprop", "MeanField", "init_to_fan_in_uniform"]

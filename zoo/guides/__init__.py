"""Guides that other Pyro projects can import: ``from zoo.guides import MeanField``."""

from zoo.guides.amortized import AmortizedNormal
from zoo.guides.meanfield import MeanField

__all__ = ["AmortizedNormal", "MeanField"]

"""Guides that other Pyro projects can import: ``from zoo.guides import AmortizedNormal``."""

from zoo.guides.amortized import AmortizedNormal

__all__ = ["AmortizedNormal"]

"""Guides that other Pyro projects can import: ``from zoo.guides import MeanField``.

:class:`MeanField` (one factor per latent site, in the family of its support),
:class:`BayesByBackprop` (a Normal per weight of a network), :class:`AmortizedNormal`
(an encoder outputs q(z|x) for a local site), and :func:`save_guide` / :func:`load_guide`
to write a trained guide to one file and rebuild it from the model in another process.
"""

from zoo.guides.amortized import AmortizedNormal
from zoo.guides.bbb import BayesByBackprop, init_to_fan_in_uniform
from zoo.guides.meanfield import FAMILIES, MeanField
from zoo.guides.saving import GUIDE_CLASSES, GuideFileError, load_guide, save_guide

__all__ = [
    "FAMILIES",
    "GUIDE_CLASSES",
    "AmortizedNormal",
    "BayesByBackprop",
    "GuideFileError",
    "MeanField",
    "init_to_fan_in_uniform",
    "load_guide",
    "save_guide",
]

"""What the trainer needs from a model: a Pyro model and its guide with one signature.

Every zoo model is a :class:`ZooModel`: a ``PyroModule`` whose ``model(x, y=None, size=None)``
and ``guide(x, y=None, size=None)`` take a minibatch ``x`` (and labels ``y`` where the
model uses them) drawn from a data set of ``size`` rows, so that the data plate scales the
minibatch's log density by ``size / len(x)`` and every step estimates the full-data ELBO.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

import pyro
import torch
from pyro.nn import PyroModule

from zoo.guides.naming import unique_name
from zoo.schema import Settings, setting


class ModelSettings(Settings):
    """The ``model`` config group of one model: its name, the keyword arguments of its
    ``build``, and the settings of its final and periodic evaluations. Each model declares a
    subclass beside it (``VAE.Settings``) that types ``evaluation``."""

    name: str = setting(..., "the name of a zoo model")
    evaluation: Settings
    # overrides of ``evaluation`` for the evaluations during training, checked against the
    # same class (zoo.config merges and validates them)
    periodic_evaluation: dict[str, Any] = setting(
        {}, "a mapping of evaluation settings to override", trains=False
    )

    def build_options(self) -> dict[str, Any]:
        """The keyword arguments of the model's ``build``."""
        return self.model_dump(exclude={"name", "evaluation", "periodic_evaluation"})

    def data_problem(self, data: Any) -> str | None:
        """Why the model cannot be fitted to ``data`` (checked before it is built), or None."""
        return None

    def trainer_problem(self, trainer: Any) -> str | None:
        """Why the model cannot be trained with these ``trainer`` settings, or None."""
        return None


def data_plate(x: torch.Tensor, size: int | None = None, name: str = "data") -> pyro.plate:
    """A plate over the rows of ``x``, a minibatch of a data set of ``size`` rows.

    The minibatch is chosen by the trainer, so the plate gets an explicit ``subsample``
    instead of ``subsample_size``: the latter would draw a permutation of all ``size``
    indices on every step (O(N) per step). Only the subsample's length matters here.
    """
    batch = x.shape[0]
    if size is None or size == batch:
        return pyro.plate(name, batch)
    return pyro.plate(name, size, subsample=torch.arange(batch, device=x.device))


class ZooModel(PyroModule):
    """Base class of the zoo's models: a model, its guide, and what a run reports.

    Subclasses decorate ``model`` and ``guide`` with ``pyro.nn.pyro_method`` and override
    what they need of ``prepare_epoch``, ``evaluate`` and ``figures``.
    """

    #: plates nested at most in the model, for ELBOs that enumerate (``TraceEnum_ELBO``)
    max_plate_nesting: int = 1
    #: ``{site: nats}``: the free bits of each latent site's dimensions (:mod:`zoo.free_bits`);
    #: the trainer's ELBO becomes the free-bits objective when one is above 0
    free_bits: Mapping[str, float] = MappingProxyType({})
    #: the model's settings, which :mod:`zoo.config` checks before anything is built
    Settings: ClassVar[type[ModelSettings]] = ModelSettings
    #: whether a training step of ``model`` and ``guide`` is a function of its tensor
    #: arguments, its parameters and beta alone (no Python state that changes between steps,
    #: no draws from Python's ``random``), so that the trainer may record it once and replay it
    #: (:mod:`zoo.replay`, ``trainer.replay``); the zoo's models declare it, a subclass that
    #: keeps the promise may too
    replayable: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__(name=unique_name(type(self).__name__))

    @classmethod
    def build(cls, data: Any, **settings: Any) -> ZooModel:
        """The model for a data set, with the ``model`` config group's values as ``settings``;
        by default the data set contributes its number of features."""
        return cls(data.num_features, **settings)

    def model(self, x: torch.Tensor, y: torch.Tensor | None = None, size: int | None = None):
        """The generative program for a minibatch ``x`` (with labels or targets ``y`` where the
        model has them) of a data set of ``size`` rows; None: ``x`` is all of it."""
        raise NotImplementedError

    def guide(self, x: torch.Tensor, y: torch.Tensor | None = None, size: int | None = None):
        """The variational distribution over the model's latent sites, called with the model's
        arguments."""
        raise NotImplementedError

    def prepare_epoch(self, x: torch.Tensor) -> torch.Tensor:
        """The training inputs for one epoch (e.g. a fresh binarization); identity by default."""
        return x

    def evaluate(self, data: Any, *, progress: bool = False, **settings: Any) -> dict[str, float]:
        """Test metrics of the fitted model, keyed ``test/<name>``; ``progress`` draws a bar
        over the evaluation's long loop, if it has one (see :func:`zoo.progress.progress_bar`)."""
        return {}

    def figures(self, data: Any, history: list[dict], out_dir: Path) -> dict[str, str]:
        """Writes the model's figures under ``out_dir``; returns ``{name: path}``."""
        return {}

"""Save a trained guide to one file and rebuild it, in another process, from the model alone.

The file holds plain values and tensors only, so it is read with ``torch.load(...,
weights_only=True)`` and never unpickles an object: the guide's class is a name from an
allow-list (:data:`GUIDE_CLASSES`), its settings are the constructor arguments that are plain
values, then the site names and shapes it was fitted to, its ``state_dict``, the versions of
zoo, Pyro and torch, and (optionally) the model arguments of one small call, with which the
loader traces the model to rebuild the guide's sites before it loads the state.

Callables (``create_plates``, ``encoder_inputs``, ``init_loc_fn``) and an
:class:`~zoo.guides.AmortizedNormal`'s encoder are code, not values: the loader takes them
as arguments, and the encoder's weights are loaded into the module it is given.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyro
import torch

from zoo.errors import ZooError
from zoo.files import read_plain_state, write_atomic
from zoo.guides.amortized import AmortizedNormal
from zoo.guides.bbb import BayesByBackprop
from zoo.guides.meanfield import MeanField

FORMAT = "zoo-guide/1"
Guide = AmortizedNormal | MeanField | BayesByBackprop
#: The classes a guide file may name; nothing else is ever built from a file.
GUIDE_CLASSES: dict[str, type] = {
    "AmortizedNormal": AmortizedNormal,
    "BayesByBackprop": BayesByBackprop,
    "MeanField": MeanField,
}


class GuideFileError(ZooError, ValueError):
    """A guide file cannot be written or read, or does not fit the model it is loaded for;
    the message names the file."""


def _settings(guide: Guide) -> dict[str, Any]:
    """The constructor arguments of ``guide`` that are plain values."""
    if isinstance(guide, MeanField):
        return {
            "families": dict(guide.families),
            "init_values": {k: torch.as_tensor(v) for k, v in guide.init_values.items()},
            "init_scale": float(guide.init_scale),
        }
    if isinstance(guide, AmortizedNormal):
        return {"site": guide.site, "scale": guide.scale}
    settings = {"init_rho": list(guide.init_rho)}
    if guide.init_scale is not None:
        settings["init_scale"] = guide.init_scale
    return settings


def _is_set_up(guide: Guide) -> bool:
    return guide.is_setup if isinstance(guide, MeanField) else guide.prototype_trace is not None


def _sites(guide: Guide) -> dict[str, dict[str, Any]]:
    """What the guide was fitted to: each site's shape (for an amortized guide the event
    shape, as the batch varies), and for a mean-field guide each factor's family."""
    if isinstance(guide, MeanField):
        return {
            name: {"shape": list(guide.distribution(name).shape()), "family": guide.family[name]}
            for name in guide.family
        }
    if isinstance(guide, AmortizedNormal):
        fn = guide.prototype_trace.nodes[guide.site]["fn"]
        return {guide.site: {"event_shape": list(fn.event_shape)}}
    return {name: {"shape": list(loc.shape)} for name, loc in guide.median().items()}


def _check_plain(value: Any, where: str) -> None:
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        for k, item in value.items():
            _check_plain(item, f"{where}[{k!r}]")
        return
    raise GuideFileError(
        f"{where} is a {type(value).__name__}; a guide file stores tensors and plain values "
        "only. Save without example arguments and pass them to load_guide(example_args=...)."
    )


def save_guide(
    guide: Guide, path: str | os.PathLike, *example_args: Any, **example_kwargs: Any
) -> Path:
    """Writes ``guide`` to ``path`` (atomically: the old file stays whole if writing fails).

    :param guide: a :class:`~zoo.guides.MeanField`, :class:`~zoo.guides.BayesByBackprop` or
        :class:`~zoo.guides.AmortizedNormal`, trained or at least set up (called once).
    :param path: the file to write, e.g. ``"guide.pt"``.
    :param example_args: the model's arguments for one small call (a minibatch is enough).
        They are stored in the file, so that :func:`load_guide` can trace the model without
        them; they also set the guide up if it never ran. Leave them out to keep data out of
        the file; then pass them to :func:`load_guide`.
    :returns: the path written.
    """
    if type(guide).__name__ not in GUIDE_CLASSES or not isinstance(
        guide, GUIDE_CLASSES[type(guide).__name__]
    ):
        raise TypeError(
            f"save_guide saves the zoo's guides ({', '.join(GUIDE_CLASSES)}), "
            f"not a {type(guide).__name__}"
        )
    stored = bool(example_args or example_kwargs)
    if stored:
        _check_plain(list(example_args), "example_args")
        _check_plain(dict(example_kwargs), "example_kwargs")
    if not _is_set_up(guide):
        if not stored:
            raise ValueError(
                "the guide has never run, so its sites are unknown: train it, call it once, "
                "or pass the model's arguments to save_guide(guide, path, *args)"
            )
        guide.setup(*example_args, **example_kwargs)
    from zoo import __version__

    state = {
        "format": FORMAT,
        "class": type(guide).__name__,
        "settings": _settings(guide),
        "sites": _sites(guide),
        "state_dict": {k: v.detach().cpu() for k, v in guide.state_dict().items()},
        "example_args": list(example_args) if stored else None,
        "example_kwargs": dict(example_kwargs) if stored else None,
        "versions": {
            "zoo": __version__,
            "pyro": str(pyro.__version__),
            "torch": str(torch.__version__),
        },
    }
    buffer = io.BytesIO()  # serialized first, so a full disk gives OSError (see checkpoint.py)
    torch.save(state, buffer)
    return write_atomic(path, lambda f: f.write(buffer.getbuffer()), "guide file")


def read_guide_file(path: str | os.PathLike) -> dict[str, Any]:
    """The contents of a guide file, read without unpickling any object.

    :raises GuideFileError: naming the file if it is missing, unreadable, holds objects
        other than tensors and plain values, or is not a zoo guide file.
    """
    path = Path(path)
    state = read_plain_state(path, GuideFileError, "guide file")
    if state.get("format") != FORMAT:
        raise GuideFileError(f"{path} is not a zoo guide file of format {FORMAT}")
    if state.get("class") not in GUIDE_CLASSES:
        raise GuideFileError(
            f"{path} names the guide class {state.get('class')!r}, which is not one of the "
            f"zoo's guides ({', '.join(GUIDE_CLASSES)})"
        )
    return state


def load_guide(
    path: str | os.PathLike,
    model: Callable,
    *,
    encoder: torch.nn.Module | None = None,
    example_args: tuple | list | None = None,
    example_kwargs: dict | None = None,
    **options: Any,
) -> Guide:
    """Rebuilds the guide saved in ``path`` for ``model`` and loads its state.

    The guide is built from its class and settings, set up by tracing ``model`` with the
    example arguments (those given here, else those stored in the file), checked against
    the sites and shapes in the file, and then given the saved state.

    :param path: a file written by :func:`save_guide`.
    :param model: the model the guide was trained for (the same site names and shapes).
    :param encoder: for an :class:`~zoo.guides.AmortizedNormal`, an encoder of the same
        architecture as the one trained (a fresh instance will do): only its weights are
        in the file, and they are loaded into this module.
    :param example_args: the model's arguments for one call, if the file has none.
    :param example_kwargs: keyword arguments of that call.
    :param options: constructor arguments that are code and so are not saved:
        ``create_plates``, ``encoder_inputs``, ``init_loc_fn``.
    :raises GuideFileError: naming the file and the mismatch, if the file is not a zoo
        guide file or was saved for a model with other sites or shapes.
    """
    path = Path(path)
    state = read_guide_file(path)
    cls = GUIDE_CLASSES[state["class"]]
    settings = dict(state["settings"])
    if cls is AmortizedNormal:
        if encoder is None:
            raise GuideFileError(
                f"{path} holds an AmortizedNormal: pass load_guide an encoder of the same "
                "architecture (encoder=...), whose weights it loads"
            )
        guide = cls(model, encoder, **settings, **options)
    else:
        if encoder is not None:
            raise TypeError(f"{path} holds a {cls.__name__}, which has no encoder")
        if cls is BayesByBackprop:
            settings["init_rho"] = tuple(settings["init_rho"])
        guide = cls(model, **settings, **options)
    args = example_args if example_args is not None else state.get("example_args")
    kwargs = example_kwargs if example_kwargs is not None else state.get("example_kwargs")
    if args is None and kwargs is None:
        args, kwargs = (), {}
    try:
        guide.setup(*(args or ()), **(kwargs or {}))
    except Exception as e:
        raise GuideFileError(
            f"the model cannot be traced to rebuild the guide saved in {path}: {e}. Is it the "
            "model the guide was trained for? If the file stores no example arguments, pass "
            "them (example_args=...)."
        ) from e
    expected, found = state["sites"], _sites(guide)
    if found != expected:
        raise GuideFileError(
            f"{path} was saved for a model with other latent sites: {_difference(expected, found)}"
        )
    try:
        guide.load_state_dict(state["state_dict"])
    except RuntimeError as e:  # an encoder of another architecture
        raise GuideFileError(f"the state in {path} does not fit this guide: {e}") from e
    return guide


def _difference(expected: dict, found: dict) -> str:
    parts = []
    missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing:
        parts.append(f"the file has {missing}, which this model lacks")
    if extra:
        parts.append(f"this model has {extra}, which the file lacks")
    for name in sorted(set(expected) & set(found)):
        if expected[name] != found[name]:
            parts.append(f"site {name!r} is {expected[name]} in the file, {found[name]} here")
    return "; ".join(parts)

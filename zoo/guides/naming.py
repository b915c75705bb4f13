"""Names for the Pyro param store that no two modules share."""

import itertools

_counter = itertools.count()


def unique_name(prefix: str) -> str:
    """``prefix`` plus a number unique in this process, e.g. ``"AmortizedNormal_3"``.

    PyroModules with parameters register them in Pyro's global param store under their
    name; modules that share a name would silently share (and overwrite) parameters, so
    every zoo module that owns parameters takes a unique one.
    """
    return f"{prefix}_{next(_counter)}"

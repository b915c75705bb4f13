"""Names for the Pyro param store: stable for a given model, unique within a process.

A PyroModule registers its parameters in Pyro's global param store under its name. Pyro's
autoguides take their class's name (every ``AutoNormal`` is ``"AutoNormal"``) and
``AutoGuideList`` renames its parts ``"AutoGuideList.0"``, ...: two such guides in one process
silently share parameters. A process-wide counter (``MeanField_0``, ``MeanField_1``) keeps
them apart but depends on the order of construction, so a param store saved in one process
and loaded in another fits a guide other than the one it came from, or none.

The zoo's guides are named after what they fit instead: ``"<class>_<digest>"``, the digest a
hash of the latent sites they cover and their shapes, taken when the guide traces the model.
The first guide of a class for a given model in a process gets that name in every process;
the k-th one in the same process gets ``_k`` appended, so no two guides ever share a name.
A guide keeps its name when it becomes part of another module (an ``AutoGuideList``, a model).
"""

from __future__ import annotations

import hashlib
import itertools

from pyro.nn import PyroModule

_counter = itertools.count()
_issued: set[str] = set()  # every guide name given out in this process, live guides or not


def unique_name(prefix: str) -> str:
    """``prefix`` plus a number unique in this process, e.g. ``"VAE_3"``."""
    return f"{prefix}_{next(_counter)}"


def stable_name(prefix: str, signature: str) -> str:
    """``"<prefix>_<digest of signature>"``, with ``_1``, ``_2``, ... appended when this
    process gave the name out before (the param store may still hold the parameters of a
    guide that is gone).

    :param prefix: the guide's class name.
    :param signature: what the guide fits, e.g. its sites and shapes, as text.
    """
    base = f"{prefix}_{hashlib.sha256(signature.encode()).hexdigest()[:10]}"
    name = base
    for k in itertools.count(1):
        if name not in _issued:
            break
        name = f"{base}_{k}"
    _issued.add(name)
    return name


def rename(module: PyroModule, name: str) -> None:
    """Sets the param store name of ``module`` and its PyroModule submodules (before any of
    their parameters entered the store under the old one)."""
    module._pyro_name = name
    for key, child in module._modules.items():
        if isinstance(child, PyroModule):
            rename(child, f"{name}.{key}")


class OwnName:
    """Mixin for a PyroModule that keeps its own param store name as a submodule.

    ``PyroModule`` renames a submodule ``"<parent>.<attribute>"``; parents that are not unique
    (every ``AutoGuideList`` is ``"AutoGuideList"``) would then make two such submodules share
    parameters. The submodule still joins its parent's call context.
    """

    _zoo_name: str

    def _pyro_set_supermodule(self, name: str, context) -> None:
        super()._pyro_set_supermodule(self._zoo_name, context)

    def _take_name(self, signature: str) -> None:
        """Takes the stable name for ``signature`` (see :func:`stable_name`), once: a guide
        set up again keeps the name its parameters are stored under."""
        if not self.__dict__.get("_zoo_named"):
            self._zoo_name = stable_name(type(self).__name__, signature)
            self._zoo_named = True
        rename(self, self._zoo_name)

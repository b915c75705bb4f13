"""One torch optimizer over every parameter, behind Pyro's ``PyroOptim`` interface.

``pyro.optim.Adam`` builds one ``torch.optim.Adam`` per parameter and steps each in turn, so
a step pays a Python call and an optimizer step per parameter, and cannot use torch's
``foreach`` (one call per list of tensors) or ``fused`` (one kernel) Adam, which need all
parameters in one optimizer. :class:`SingleOptim` keeps one optimizer, adds a parameter group
when new parameters appear, and steps it once per SVI step. Its checkpoint state is
``PyroOptim``'s (one torch ``state_dict`` per parameter name), so a checkpoint written by
either loads into the other.

The torch optimizer orders its parameters by when they first appeared, which a checkpoint
must not depend on: the state is saved and restored per parameter name, never by position.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal

import pyro
import torch
from pydantic import Field
from pyro.optim import PyroOptim
from pyro.optim.clipped_adam import ClippedAdam

from zoo.schema import Settings, setting

# torch optimizer settings that choose an implementation, not a training hyperparameter:
# they come from this optimizer's construction, never from a checkpoint
IMPLEMENTATION_KEYS = ("foreach", "fused", "capturable", "differentiable")
DEFAULT_IMPLEMENTATION = "fused"  # conf/optim/adam.yaml's; chosen by measurement (README)
IMPLEMENTATIONS = {
    "fused": {"fused": True},  # one kernel for all parameters
    "foreach": {"foreach": True},  # one call per list of tensors
    "single_tensor": {"foreach": False, "fused": False},  # a loop over parameters
}


def import_lazy_parts_of_torch_optim() -> float:
    """Imports ``torch._dynamo``, which the first ``torch.optim`` optimizer of a process
    imports from its constructor (every ``add_param_group`` is wrapped to disable dynamo, and
    the wrapper imports it on its first call): 4.8 to 6.1 s measured on this 2-core
    machine while other jobs ran, sympy included. :mod:`zoo.app` calls this before it starts the fit's clock, so that
    ``time.fit_s`` measures fitting and not a one-time import, as it already leaves out
    importing torch itself; the summary records the import as ``time.optim_import_s``.

    :returns: the seconds it took (0 when already imported).
    """
    import sys
    import time

    if "torch._dynamo" in sys.modules:
        return 0.0
    start = time.perf_counter()
    import torch._dynamo  # noqa: F401

    return time.perf_counter() - start

class SingleOptim(PyroOptim):
    """A ``PyroOptim`` that keeps one torch optimizer over every parameter it has seen.

    Parameters seen together for the first time join one parameter group (one per distinct
    ``optim_args``, when ``optim_args`` is a per-parameter callable); each step clips each
    parameter's gradient as ``clip_args`` says (per parameter, as ``PyroOptim`` does) and
    steps the optimizer once, over the parameters passed to that call only.

    One difference from ``PyroOptim``: a setting that the optimizer changes per step (the
    learning-rate decay ``lrd`` of ``ClippedAdam``) is shared by a group, so it advances at
    every step even for a parameter that sat out that step. A zoo model uses every parameter
    at every step, where the two agree.

    :param optim_constructor: a ``torch.optim.Optimizer`` class, e.g. ``torch.optim.Adam``;
        not an LR scheduler (use ``pyro.optim.PyroLRScheduler`` for those).
    :param optim_args: the optimizer's settings, or a callable from a parameter's name to them.
    :param clip_args: ``{"clip_norm": ..., "clip_value": ...}`` per parameter, or a callable
        from (module name, parameter name) to them, as in ``PyroOptim``.
    :param implementation: keyword arguments of the torch optimizer that pick its
        implementation (``fused=True``, ``foreach=True``); they are not saved in checkpoints.

    Example::

        optim = SingleOptim(torch.optim.Adam, {"lr": 1e-3}, fused=True)
        svi = pyro.infer.SVI(model, guide, optim, pyro.infer.Trace_ELBO())
    """

    def __init__(
        self,
        optim_constructor: type[torch.optim.Optimizer],
        optim_args: dict | Callable[..., dict],
        clip_args: dict | Callable[..., dict] | None = None,
        **implementation,
    ) -> None:
        if not (
            isinstance(optim_constructor, type)
            and issubclass(optim_constructor, torch.optim.Optimizer)
        ):
            raise TypeError(
                f"SingleOptim needs a torch.optim.Optimizer class, got {optim_constructor!r}; "
                "wrap learning-rate schedulers with pyro.optim.PyroLRScheduler instead"
            )
        unknown = set(implementation) - set(IMPLEMENTATION_KEYS)
        if unknown:
            raise TypeError(
                f"SingleOptim: {sorted(unknown)} are not implementation settings; "
                f"expected some of {IMPLEMENTATION_KEYS} (training settings go in optim_args)"
            )
        accepted = inspect.signature(optim_constructor).parameters
        missing = [k for k in implementation if k not in accepted]
        if missing:
            raise TypeError(
                f"{optim_constructor.__name__} has no {', '.join(missing)} implementation; "
                "leave the implementation to it (no keyword arguments)"
            )
        super().__init__(optim_constructor, optim_args, clip_args)
        self.implementation = implementation
        self.optimizer: torch.optim.Optimizer | None = None

    def __call__(self, params: Iterable[torch.Tensor], *args, **kwargs) -> None:
        params = list(params)
        new = [p for p in params if p not in self.grad_clip]
        if new:
            self._add_params(new)
        for p in params:
            clip = self.grad_clip[p]
            if clip is not None:
                clip(p)
        # PyroOptim steps only the parameters it is given; hide the others' gradients
        stepped = set(params)
        hidden = [(p, p.grad) for p in self.grad_clip if p not in stepped and p.grad is not None]
        for p, _ in hidden:
            p.grad = None
        try:
            self.optimizer.step(*args, **kwargs)
        finally:
            for p, grad in hidden:
                p.grad = grad

    def _add_params(self, new: list[torch.Tensor]) -> None:
        store = pyro.get_param_store()
        # by name: a set's order varies between processes, the groups' order should not
        new = sorted(new, key=lambda p: store.param_name(p) or "")
        groups: dict[str, tuple[dict, list[torch.Tensor]]] = {}
        saved: dict[torch.Tensor, dict] = {}
        for p in new:
            self.grad_clip[p] = self._get_grad_clip(p)
            args = dict(self._get_optim_args(p))
            state = self._state_waiting_to_be_consumed.pop(store.param_name(p), None)
            if state is not None:
                saved[p] = state
                # the checkpoint's settings win, as in torch's load_state_dict (lr may decay)
                group = state["param_groups"][0]
                args = {k: v for k, v in group.items() if k not in ("params", *IMPLEMENTATION_KEYS)}
            key = repr(sorted(args.items()))
            groups.setdefault(key, (args, []))[1].append(p)
        for args, group_params in groups.values():
            group = {**args, **self.implementation, "params": group_params}
            if self.optimizer is None:
                self.optimizer = self.pt_optim_constructor([group], **self.implementation)
            else:
                self.optimizer.add_param_group(group)
        for p, state in saved.items():
            self.optimizer.state[p] = self._load_param_state(p, state)

    def _load_param_state(self, param: torch.Tensor, state: dict) -> dict:
        """One parameter's state from its one-parameter ``state_dict``, cast to the
        parameter's dtype and device by torch's own ``load_state_dict``."""
        group = {**state["param_groups"][0], **self.implementation}
        single = self.pt_optim_constructor([param], **self._get_optim_args(param))
        single.load_state_dict({"state": state["state"], "param_groups": [group]})
        return single.state[param]

    def get_state(self) -> dict:
        """Per parameter name, the ``state_dict`` that a torch optimizer over that parameter
        alone would have: ``PyroOptim.get_state``'s format."""
        if self.optimizer is None:
            return {}
        store = pyro.get_param_store()
        result = {}
        for group in self.optimizer.param_groups:
            settings = {k: v for k, v in group.items() if k != "params"}
            for p in group["params"]:
                state = self.optimizer.state.get(p)
                result[store.param_name(p)] = {
                    "state": {0: state} if state else {},
                    "param_groups": [{**settings, "params": [0]}],
                }
        return result


def Adam(
    optim_args: dict | Callable[[str], dict],
    clip_args: dict | None = None,
    implementation: str = DEFAULT_IMPLEMENTATION,
) -> PyroOptim:
    """Adam for ``pyro.infer.SVI``.

    :param optim_args: ``torch.optim.Adam``'s settings (``lr``, ``betas``, ...), or a
        callable from a parameter's name to them.
    :param clip_args: per-parameter gradient clipping, as in ``pyro.optim.Adam``.
    :param implementation: ``fused``, ``foreach`` or ``single_tensor``: one
        ``torch.optim.Adam`` over every parameter (:class:`SingleOptim`) with that torch
        implementation; ``per_parameter``: ``pyro.optim.Adam``, one optimizer per parameter.

    Example::

        optim = Adam({"lr": 1e-3}, implementation="fused")
    """
    chosen = {k for k in IMPLEMENTATION_KEYS if isinstance(optim_args, dict) and k in optim_args}
    if chosen:
        raise ValueError(
            f"optim_args sets {sorted(chosen)}: choose the implementation with "
            f"implementation=... ({', '.join([*IMPLEMENTATIONS, 'per_parameter'])}) instead"
        )
    if implementation == "per_parameter":
        return pyro.optim.Adam(optim_args, clip_args)
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"implementation must be one of {[*IMPLEMENTATIONS, 'per_parameter']}, "
            f"got {implementation!r}"
        )
    return SingleOptim(torch.optim.Adam, optim_args, clip_args, **IMPLEMENTATIONS[implementation])


# The ``optim`` config group: one settings class per optimizer that a config may name in
# ``_target_``. The zoo builds the optimizer from validated settings itself, so a config can
# build these classes and nothing else (an allow-list, not hydra.utils.instantiate).

POSITIVE = "a finite number > 0"
Beta = Annotated[float, Field(ge=0.0, lt=1.0)]


class AdamFamilyArguments(Settings):
    """The settings Adam and ClippedAdam share."""

    #: the learning rate
    lr: float = setting(1e-3, POSITIVE, gt=0.0)
    #: Adam's decay rates of the first and second moment estimates
    betas: list[Beta] = setting(
        [0.9, 0.999], "two numbers in [0, 1), e.g. [0.9, 0.999]", min_length=2, max_length=2
    )
    #: added to the denominator of Adam's step
    eps: float = setting(1e-8, POSITIVE, gt=0.0)
    #: L2 penalty added to the gradient
    weight_decay: float = setting(0.0, "a finite number >= 0", ge=0.0)


class AdamArguments(AdamFamilyArguments):
    """``torch.optim.Adam``'s training settings."""

    #: the AMSGrad variant of Adam
    amsgrad: bool = setting(False, "true or false")


class ClipArguments(Settings):
    """Per-parameter gradient clipping, as in ``pyro.optim.PyroOptim``'s ``clip_args``."""

    #: clip each parameter's gradient to this norm
    clip_norm: float | None = setting(None, f"{POSITIVE}, or null", gt=0.0)
    #: clip each gradient element to this magnitude
    clip_value: float | None = setting(None, f"{POSITIVE}, or null", gt=0.0)


class OptimSettings(Settings):
    """The ``optim`` config group: the optimizer's class (``_target_``) and its settings."""

    #: the optimizer class; the option file picks it
    target: str = setting(..., "zoo.optim.Adam or pyro.optim.ClippedAdam", alias="_target_")
    # pyro.optim wants plain dicts; the key stays valid so configs read like Hydra's
    convert: Literal["all"] = setting("all", "all", alias="_convert_")

    def build(self) -> PyroOptim:
        """The ``pyro.optim`` optimizer these settings describe."""
        raise NotImplementedError


class AdamSettings(OptimSettings):
    """``optim=adam``: one ``torch.optim.Adam`` over all parameters (:class:`Adam`), or
    ``pyro.optim.Adam`` with ``implementation=per_parameter``."""

    #: the optimizer class; the option file picks it
    target: Literal["zoo.optim.Adam"] = setting("zoo.optim.Adam", "zoo.optim.Adam", alias="_target_")
    #: the arguments of torch.optim.Adam
    optim_args: AdamArguments = setting(AdamArguments(), "Adam's settings")
    #: per-parameter gradient clipping
    clip_args: ClipArguments | None = setting(None, "clip_norm and/or clip_value, or null")
    implementation: Literal["fused", "foreach", "single_tensor", "per_parameter"] = setting(
        DEFAULT_IMPLEMENTATION,
        "fused, foreach or single_tensor (one torch.optim.Adam over all parameters) or "
        "per_parameter (pyro.optim.Adam)",
    )

    def build(self) -> PyroOptim:
        """The optimizer: :class:`Adam` with these arguments, clipping and implementation."""
        return Adam(self.optim_args.model_dump(), _clip(self.clip_args), self.implementation)


class ClippedAdamArguments(AdamFamilyArguments):
    """``pyro.optim.ClippedAdam``'s settings."""

    #: ClippedAdam clips each gradient to this norm
    clip_norm: float = setting(10.0, POSITIVE, gt=0.0)
    lrd: float = setting(1.0, "a number in (0, 1] (learning-rate decay per step)", gt=0.0, le=1.0)


class ClippedAdamSettings(OptimSettings):
    """``optim=clipped_adam``: ``pyro.optim.ClippedAdam``."""

    #: the optimizer class; the option file picks it
    target: Literal["pyro.optim.ClippedAdam"] = setting(
        "pyro.optim.ClippedAdam", "pyro.optim.ClippedAdam", alias="_target_"
    )
    #: the arguments of pyro.optim.ClippedAdam
    optim_args: ClippedAdamArguments = setting(ClippedAdamArguments(), "ClippedAdam's settings")
    #: per-parameter gradient clipping, besides ClippedAdam's own clip_norm
    clip_args: ClipArguments | None = setting(None, "clip_norm and/or clip_value, or null")

    def build(self) -> PyroOptim:
        """The optimizer: ``pyro.optim.ClippedAdam`` with these arguments."""
        # pyro.optim.ClippedAdam, the wrapper, takes no clip_args: wrap its torch optimizer
        return PyroOptim(ClippedAdam, self.optim_args.model_dump(), _clip(self.clip_args))


def _clip(clip_args: ClipArguments | None) -> dict[str, Any] | None:
    if clip_args is None:
        return None
    chosen = {k: v for k, v in clip_args.model_dump().items() if v is not None}
    return chosen or None


OPTIMIZERS: dict[str, type[OptimSettings]] = {
    "zoo.optim.Adam": AdamSettings,
    "pyro.optim.ClippedAdam": ClippedAdamSettings,
}

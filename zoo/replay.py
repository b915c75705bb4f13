"""Trace once, replay: SVI steps without Pyro's tracing machinery at every step.

A zoo model's step draws the same sites, in the same plates, from the same families at every
step; only the numbers change. Pyro still runs the whole program through its effect handlers
each time: a message per site and per parameter, a trace of the guide, a replay of the model,
``Trace.compute_log_prob`` and the ELBO's loops over sites. On the Fashion-MNIST VAE that is
about 2.5 ms of an 11 ms step here (``benchmarks/vae_vs_numpyro.py``).

:class:`Replay` runs the ELBO's own code once under ``make_fx``, which records every torch
operation it performs (the parameters' transforms, the random draws, the log densities, the
sum) as a ``torch.fx`` graph, and later steps call that graph instead: the same operations in
the same order, hence the same random numbers and the same gradients (tested equal, bit for
bit, on the three zoo models), with none of the Python around them. Autograd differentiates
the replay as it does the eager step, since ``make_fx`` records below autograd.

Why this route and not another (measured on this CPU, Pyro 1.9.2, torch 2.13):

- ``torch.compile`` breaks its graph at Pyro's messages (a ``TypedDict`` with optional
  keys): 8 graphs and 7 breaks for the VAE's loss, Pyro running in Python between them.
- ``JitTrace_ELBO`` rests on TorchScript, which PyTorch has deprecated, and keeps beta as a
  constant of its graph. Here each :class:`~zoo.handlers.KLAnnealingMessenger` on Pyro's stack
  gives its beta to the graph as an input, so a KL schedule is followed.

What a trace cannot see, and how each case is guarded:

- A Python decision on a tensor's value (``.item()``, ``if x.sum() > 0``) makes ``make_fx``
  refuse to trace; that step shape then stays with Pyro.
- Anything else the graph could get wrong (a ``no_grad`` region, a tensor the program swaps
  between steps) is caught when the graph is made: from the same random state, the graph's
  loss and every gradient must equal those of Pyro's own step, to the last bit. If one does
  not, that step shape stays with Pyro and a warning says which value differed. (Each
  particle is backpropagated on its own, in order, as Pyro does, so that gradients add up
  in Pyro's order.)
- A key's first steps (100 by default) run in Pyro and the next makes the graph: a first
  call may set things up (a guide's prototype trace) and draw random numbers that later
  calls do not, and a short run would not earn back the cost of making a graph.
- A graph serves one key: the shapes, dtypes and devices of the tensor arguments, the values
  of the others, the handlers on Pyro's stack and the module's train or eval mode. Another
  key makes another graph.
- A graph holds the parameter tensors it saw. When Pyro's param store holds another tensor
  under one of their names (a state loaded, the store cleared), the graph is made again.

The reported loss is Pyro's too: the graph adds the per-site values in float64, as Pyro adds
them in Python floats. Making a graph costs one Pyro step, one trace and one replay, and
leaves the random state where one Pyro step would; since every replayed step equals Pyro's,
a run resumed mid-way (which makes its graph at another step) matches one never stopped.

Not replayed: ``JitTrace_ELBO`` and ``JitTraceMeanField_ELBO`` (they compile their own
graphs), ELBOs that are not ``Trace_ELBO`` or a subclass of it (``TraceEnum_ELBO``), and any
step while Pyro's validation is on (its checks belong to every step).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import pyro
import pyro.infer.util
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from pyro.infer.trace_elbo import JitTrace_ELBO
from pyro.infer.trace_mean_field_elbo import JitTraceMeanField_ELBO
from pyro.poutine.runtime import _PYRO_STACK
from torch.fx.experimental.proxy_tensor import make_fx

from zoo.handlers import KLAnnealingMessenger

log = logging.getLogger(__name__)
# a key's steps in Pyro before its graph is made. Making one costs a Pyro step, a trace and a
# replay (0.08 to 0.5 s here) and saves 0.5 to 2.5 ms a step, so a run of a few dozen steps
# (a GMM that converges in 20) is faster without; a longer run loses under 0.3 s by waiting
PYRO_STEPS = 100


def replay_refusal(elbo: pyro.infer.ELBO) -> str | None:
    """Why steps of this ELBO cannot be replayed, or None when they can."""
    if isinstance(elbo, (JitTrace_ELBO, JitTraceMeanField_ELBO)):
        return f"{type(elbo).__name__} compiles a TorchScript graph of its own"
    if not isinstance(elbo, Trace_ELBO):
        return f"{type(elbo).__name__} is not Trace_ELBO or a subclass of it"
    return None


@dataclass
class _Graph:
    """One key's recorded step: the graph, the parameters it reads (by name, sorted) and the
    annealing handlers whose beta it takes as inputs, in order."""

    module: torch.fx.GraphModule
    params: dict[str, torch.Tensor]
    annealers: list[KLAnnealingMessenger]

    def is_current(self) -> bool:
        """Whether Pyro's param store still holds the tensors the graph reads. (``_params`` is
        the store's name-to-unconstrained-tensor dict, private but unchanged since Pyro 1.0;
        the public accessors would apply each constraint's transform per step.)"""
        held = pyro.get_param_store()._params
        return all(held.get(name) is tensor for name, tensor in self.params.items())


@dataclass
class _Refusal:
    """Why a key's steps stay with Pyro."""

    reason: str


class Replay:
    """The steps of ``elbo`` on ``model`` and ``guide``, each recorded once and replayed.

    :param elbo: a ``Trace_ELBO`` or a subclass (``TraceMeanField_ELBO``, the free-bits ELBOs).
    :param model: the Pyro model.
    :param guide: its guide.
    :param module: the ``torch.nn.Module`` whose train/eval mode is part of the key (the zoo
        model); None: the mode is not looked at.
    :param pyro_steps: steps of a key that run in Pyro before the next one makes its graph
        (at least 1: see the module's notes); None: ``PYRO_STEPS``.

    :meth:`loss_and_grads` is ``elbo.loss_and_grads(model, guide, ...)`` that also returns the
    parameters by name, or None where the step must run in Pyro (nothing has been done then).
    """

    def __init__(
        self,
        elbo,
        model,
        guide,
        module: torch.nn.Module | None = None,
        pyro_steps: int | None = None,
    ) -> None:
        pyro_steps = PYRO_STEPS if pyro_steps is None else pyro_steps
        if pyro_steps < 1:
            raise ValueError(f"pyro_steps must be at least 1, got {pyro_steps}")
        self.elbo, self.model, self.guide, self.module = elbo, model, guide, module
        self.pyro_steps = pyro_steps
        self.refusal = replay_refusal(elbo)
        self._graphs: dict[tuple, _Graph | _Refusal] = {}
        self._pyro_steps_of: dict[tuple, int] = {}  # keys without a graph yet
        #: steps answered by a replayed graph (the step that makes a graph included)
        self.replayed_steps = 0
        #: graphs made so far, kept or refused (one per key, and again when the store changed)
        self.graphs_made = 0

    def loss_and_grads(self, *args, **kwargs) -> tuple[float, dict[str, torch.Tensor]] | None:
        """The step's loss, with every parameter's gradient accumulated into its ``.grad``,
        and the parameters by name; None (and nothing done) where Pyro must take the step."""
        if self.refusal is not None or pyro.infer.util.is_validation_enabled():
            return None
        key = self._key(args, kwargs)
        if key is None:
            return None
        graph = self._graphs.get(key)
        if isinstance(graph, _Refusal):
            return None
        if graph is not None and graph.is_current():
            self.replayed_steps += 1
            return _run(graph, _tensors(args, kwargs))
        if graph is None and self._pyro_steps_of.get(key, 0) < self.pyro_steps:
            self._pyro_steps_of[key] = self._pyro_steps_of.get(key, 0) + 1
            return None
        graph, result = self._make_graph(args, kwargs)
        self.graphs_made += graph is not None
        if graph is not None:
            self._graphs[key] = graph
        if isinstance(graph, _Graph):
            self.replayed_steps += 1
        return result

    def refusals(self) -> list[str]:
        """The reasons, one per key, why steps of those keys stay with Pyro."""
        reasons = [g.reason for g in self._graphs.values() if isinstance(g, _Refusal)]
        return ([self.refusal] if self.refusal else []) + reasons

    def _key(self, args: tuple, kwargs: dict) -> tuple | None:
        """What a graph is valid for; None for an argument that cannot be part of a key (not a
        tensor and not hashable: a list could change between two steps unseen)."""
        parts = []
        for value in _flat(args, kwargs):
            if isinstance(value, torch.Tensor):
                parts.append((value.shape, value.dtype, value.device, value.requires_grad))
            else:
                try:
                    hash(value)
                except TypeError:
                    return None
                parts.append((type(value), value))
        mode = self.module.training if self.module is not None else None
        return (len(args), tuple(sorted(kwargs)), tuple(parts), tuple(map(id, _PYRO_STACK)), mode)

    def _make_graph(self, args: tuple, kwargs: dict):
        """Pyro's step, then the trace and the replay from the same random state, compared.
        Returns the key's graph (a refusal, or None to try again at a later step) and this
        step's result: the replay's when the graph is kept, Pyro's otherwise."""
        tensors = _tensors(args, kwargs)
        with _gradients_set_aside():
            start_state = _RandomState.save(tensors)
            reference_loss, params = self._pyro_step(args, kwargs)
            reference = {name: p.grad for name, p in params.items()}
            pyro_result = (reference_loss, params)
            if not math.isfinite(reference_loss):
                return None, pyro_result  # nothing to compare with
            end_state = _RandomState.save(tensors)

            def keep_pyro(reason: str, level: int) -> tuple[_Refusal, tuple]:
                log.log(level, "replay: %s; Pyro's ELBO runs at every step", reason)
                for name, p in params.items():
                    p.grad = reference[name]
                end_state.restore()
                return _Refusal(reason), pyro_result

            drop_grads(params.values())
            annealers = [h for h in _PYRO_STACK if isinstance(h, KLAnnealingMessenger)]
            started = time.perf_counter()
            start_state.restore()
            try:
                module = self._trace(args, kwargs, annealers)
            except Exception as error:  # Pyro's own step ran: what failed is the tracing
                what = f"{type(error).__name__}: {_first_line(error)}"
                return keep_pyro(f"the step could not be traced ({what})", logging.INFO)
            graph = _Graph(module, params, annealers)
            start_state.restore()
            loss, _ = _run(graph, tensors)
            difference = _difference(reference_loss, loss, reference, params)
            if difference is not None:
                return keep_pyro(
                    f"the replayed step differs from Pyro's: {difference}", logging.WARNING
                )
            log.info(
                "replay: recorded the step as a graph of %d operations in %.2f s; it replays "
                "from here (trainer.replay=false runs Pyro's ELBO at every step)",
                sum(node.op == "call_function" for node in module.graph.nodes),
                time.perf_counter() - started,
            )
            return graph, (loss, params)

    def _pyro_step(self, args: tuple, kwargs: dict) -> tuple[float, dict[str, torch.Tensor]]:
        """``loss_and_grads`` in Pyro, and the parameters it read by name, sorted."""
        with poutine.trace(param_only=True) as captured:
            loss = pyro.infer.util.torch_item(
                self.elbo.loss_and_grads(self.model, self.guide, *args, **kwargs)
            )
        nodes = captured.trace.nodes
        return loss, {name: nodes[name]["value"].unconstrained() for name in sorted(nodes)}

    def _trace(self, args, kwargs, annealers) -> torch.fx.GraphModule:
        tensors = _tensors(args, kwargs)

        def step(*inputs):
            tensor_args, betas = inputs[: len(tensors)], inputs[len(tensors) :]
            a, kw = _with_tensors(args, kwargs, tensor_args)
            with ExitStack() as stack:
                for handler, beta in zip(annealers, betas):
                    stack.enter_context(handler.traced_beta(beta))
                stack.enter_context(_items_as_tensors(self.elbo))
                return _objective(self.elbo, self.model, self.guide, a, kw)

        module = make_fx(step)(*tensors, *_betas(annealers))
        # torch counts a random op as impure, so a draw whose value is unused stays in the
        # graph (it moves the random stream; tests/test_replay.py checks this)
        module.graph.eliminate_dead_code()
        module.recompile()
        return module


def _objective(elbo, model, guide, args, kwargs) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """Each particle's surrogate loss, divided by the number of particles (what
    ``loss_and_grads`` differentiates, one particle at a time), and the loss it reports,
    from the ELBO's own per-particle code."""
    loss, surrogates = 0.0, []
    for model_trace, guide_trace in elbo._get_traces(model, guide, args, kwargs):
        particle_loss, particle_surrogate = elbo._differentiable_loss_particle(
            model_trace, guide_trace
        )
        loss = loss + particle_loss / elbo.num_particles
        surrogates.append(particle_surrogate / elbo.num_particles)
    if not (
        isinstance(loss, torch.Tensor) and all(isinstance(s, torch.Tensor) for s in surrogates)
    ):
        raise TypeError("the loss has no tensor in it (no sample site?)")
    return tuple(surrogates), loss


def _run(graph: _Graph, tensors: list[torch.Tensor]) -> tuple[float, dict[str, torch.Tensor]]:
    surrogates, loss = graph.module(*tensors, *_betas(graph.annealers))
    # one backward per particle, in order, as Pyro's loss_and_grads: the gradients then add
    # up in Pyro's order, to the last bit
    for i, surrogate in enumerate(surrogates):
        if surrogate.requires_grad:
            surrogate.backward(retain_graph=i + 1 < len(surrogates))
    return loss.item(), graph.params


def _betas(annealers: list[KLAnnealingMessenger]) -> list[torch.Tensor]:
    """Each handler's beta as a float64 0-d tensor: Pyro multiplies beta into a site's scale
    in Python floats (float64) and the product meets the float32 log density only then, so
    the graph must make the product in float64 too to round as Pyro does."""
    return [torch.tensor(handler.beta, dtype=torch.float64) for handler in annealers]


def _flat(args: tuple, kwargs: dict) -> list:
    return [*args, *(kwargs[k] for k in sorted(kwargs))]


def _tensors(args: tuple, kwargs: dict) -> list[torch.Tensor]:
    return [v for v in _flat(args, kwargs) if isinstance(v, torch.Tensor)]


def _with_tensors(args: tuple, kwargs: dict, tensors) -> tuple[tuple, dict]:
    """``args`` and ``kwargs`` with their tensors replaced, in order, by ``tensors``."""
    supply = iter(tensors)
    a = tuple(next(supply) if isinstance(v, torch.Tensor) else v for v in args)
    kw = {
        k: next(supply) if isinstance(kwargs[k], torch.Tensor) else kwargs[k]
        for k in sorted(kwargs)
    }
    return a, kw


def _as_float64(value):
    """``torch_item`` in a graph: Pyro adds the floats it returns in Python (float64), so the
    graph adds float64 tensors, and its reported loss is Pyro's to the last bit."""
    return value.detach().to(torch.float64) if isinstance(value, torch.Tensor) else value


@contextmanager
def _items_as_tensors(elbo) -> Iterator[None]:
    """The ELBO's ``torch_item`` (a tensor's value as a float, which a trace cannot record)
    returns it as a detached float64 tensor instead, in each module of the ELBO's classes that
    uses it: the reported loss then stays a tensor of the graph."""
    modules = {sys.modules[cls.__module__] for cls in type(elbo).__mro__}
    patched = [m for m in modules if getattr(m, "torch_item", None) is pyro.infer.util.torch_item]
    for module in patched:
        module.torch_item = _as_float64
    try:
        yield
    finally:
        for module in patched:
            module.torch_item = pyro.infer.util.torch_item


def _difference(reference_loss: float, loss: float, reference: dict, params: dict) -> str | None:
    """How the replay's loss or gradients differ from Pyro's, to the last bit, or None."""
    if loss != reference_loss:
        return f"loss {loss!r} against Pyro's {reference_loss!r}"
    for name, p in params.items():
        expected, got = reference[name], p.grad
        if (expected is None) != (got is None):
            return f"the gradient of {name} is {'missing' if got is None else 'there, not in Pyro'}"
        if expected is not None and not torch.equal(got, expected):
            largest = float((got - expected).abs().max())
            return f"the gradient of {name}, by up to {largest:.3g}"
    return None


def drop_grads(params) -> None:
    """Sets each gradient to None: the next backward starts from None as from zeros, without
    the zero tensor per parameter that ``pyro.infer.util.zero_grads`` allocates and fills
    (about 2% of a VAE step)."""
    for p in params:
        p.grad = None


@contextmanager
def _gradients_set_aside() -> Iterator[None]:
    """Every stored parameter's gradient is None for the duration and added back after, as
    autograd would have accumulated the step's gradient into it: the comparison of a step
    with Pyro's then sees that step's gradients alone."""
    held = [(p, p.grad) for p in pyro.get_param_store()._params.values() if p.is_leaf]
    for p, _ in held:
        p.grad = None
    try:
        yield
    finally:
        for p, earlier in held:
            if earlier is not None:
                p.grad = earlier if p.grad is None else earlier + p.grad


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else ""


class _RandomState:
    """The torch random state (CPU, and each CUDA device among the step's tensors)."""

    def __init__(self, cpu: torch.Tensor, cuda: dict[int, torch.Tensor]) -> None:
        self.cpu, self.cuda = cpu, cuda

    @classmethod
    def save(cls, tensors: list[torch.Tensor]) -> _RandomState:
        devices = {t.device.index or 0 for t in tensors if t.device.type == "cuda"}
        return cls(torch.get_rng_state(), {d: torch.cuda.get_rng_state(d) for d in devices})

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        for device, state in self.cuda.items():
            torch.cuda.set_rng_state(state, device)

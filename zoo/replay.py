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

The contract: the step must be a function of its tensor arguments, its parameters and beta.
A value the program reads from anywhere else (a Python number that changes, a tensor
attribute reassigned, ``.item()`` of a parameter, a draw from Python's ``random``) is frozen
into the graph at the value it had when the graph was made. The zoo's trainer therefore
replays only models that declare the contract (:attr:`zoo.models.base.ZooModel.replayable`:
the three zoo models do, and tests/test_replay.py trains each both ways, bit for bit). What
is checked, for any program:

- A Python decision on a value computed from the arguments (``if x.sum() > 0``) makes
  ``make_fx`` refuse to trace; that step shape then stays with Pyro.
- When a graph is made, and again at every 500th replay of it (``CHECK_EVERY``), Pyro's own
  step and the replay run from the same random state (torch's, Python's, NumPy's) and module
  buffers, and the loss, every gradient and every buffer must agree to the last bit. A graph
  that does not is dropped, with a warning that says what differed, and that step shape stays
  with Pyro; a broken contract thus costs at most the steps between two checks. (Each
  particle is backpropagated on its own, in order, as Pyro does, so gradients add up in
  Pyro's order; the check leaves buffers, such as batch-norm statistics, as one step would.)
- A key's first steps (100 by default) run in Pyro and the next makes the graph: a first
  call may set things up (a guide's prototype trace) and draw random numbers that later
  calls do not, and a short run would not earn back the cost of making a graph.
- A graph serves one key: the shapes, strides, dtypes and devices of the tensor arguments,
  the values of the others (an argument that holds tensors in a container is not keyed, and
  its step stays with Pyro), the handlers on Pyro's stack (the objects, not their ids) and
  the train or eval mode of the module and each of its submodules. Another key makes another
  graph; at most 16 keys are followed at once (``MAX_KEYS``).
- A graph holds the parameter tensors it saw. When Pyro's param store holds another tensor
  or constraint under one of their names, another set of names, or a parameter that became
  trainable or frozen, the graph is made again.
- A replay that raises (a shape the trace fixed that a step lacks) drops its graph, and
  Pyro takes the step.

The reported loss is Pyro's too: the graph adds the per-site values in float64, as Pyro adds
them in Python floats. Beta is a Python float in Pyro and a float64 0-d tensor in the graph;
where it meets a float32 tensor, torch rounds a Python float to float32, while a 0-d
float64 tensor times a 0-d float32 term (the closed-form KL of a site with ``to_event`` and
no plate, such as a BNN weight) would be computed in float64. The graph is therefore
rewritten so that beta, and each number computed from beta alone, is cast to float32 where
it meets a float32 tensor in elementwise arithmetic
(:func:`_round_beta_as_a_python_float`); with that the BNN under ``TraceMeanField_ELBO`` and a
tempered beta, and free bits, replay bit for bit (tests/test_replay.py). A use of beta that
the rewrite does not cover leaves the loss apart in its last bits, and the first comparison
then declines the graph with a message.
Making a graph costs one Pyro step, one trace and one replay, and
leaves the random state where one Pyro step would; since every replayed step equals Pyro's,
a run resumed mid-way (which makes its graph at another step) matches one never stopped.

Not replayed: ``JitTrace_ELBO`` and ``JitTraceMeanField_ELBO`` (they compile their own
graphs), ELBOs that are not ``Trace_ELBO`` or a subclass of it (``TraceEnum_ELBO``), and any
step while Pyro's validation is on (its checks belong to every step).
"""

from __future__ import annotations

import logging
import math
import random
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import numpy as np
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
# replays of a graph between two checks against Pyro's own step (a check costs one Pyro step)
CHECK_EVERY = 500
# step shapes followed at once; steps of further shapes (an argument that changes every
# step) run in Pyro without being counted, so that the bookkeeping stays bounded
MAX_KEYS = 16
LOSS_ONLY = "only the loss, every gradient equal"


def replay_refusal(elbo: pyro.infer.ELBO) -> str | None:
    """Why steps of this ELBO cannot be replayed, or None when they can."""
    if isinstance(elbo, (JitTrace_ELBO, JitTraceMeanField_ELBO)):
        return f"{type(elbo).__name__} compiles a TorchScript graph of its own"
    if not isinstance(elbo, Trace_ELBO):
        return f"{type(elbo).__name__} is not Trace_ELBO or a subclass of it"
    return None


@dataclass
class _Graph:
    """One key's recorded step: the graph, the parameters it reads (by name, sorted), the
    annealing handlers whose beta it takes as inputs, in order, and what the param store
    held when it was made."""

    module: torch.fx.GraphModule
    params: dict[str, torch.Tensor]
    annealers: list[KLAnnealingMessenger]
    store_size: int = 0
    constraints: dict = field(default_factory=dict)
    requires_grad: dict = field(default_factory=dict)
    replays: int = 0

    @classmethod
    def of(cls, module, params, annealers) -> _Graph:
        store = pyro.get_param_store()
        return cls(
            module,
            params,
            annealers,
            store_size=len(store._params),
            constraints={name: store._constraints.get(name) for name in params},
            requires_grad={name: p.requires_grad for name, p in params.items()},
        )

    def is_current(self) -> bool:
        """Whether Pyro's param store holds what it held when the graph was made: the same
        names, the same tensor and constraint under each, each as trainable as it was (a
        module unfrozen or a parameter created since would not be in the graph). (``_params``
        and ``_constraints`` are the store's dicts, private but unchanged since Pyro 1.0; the
        public accessors would apply each constraint's transform per step.)"""
        store = pyro.get_param_store()
        held, constraints = store._params, store._constraints
        return len(held) == self.store_size and all(
            held.get(name) is p
            and constraints.get(name) is self.constraints[name]
            and p.requires_grad == self.requires_grad[name]
            for name, p in self.params.items()
        )


@dataclass
class _Refusal:
    """Why a key's steps stay with Pyro."""

    reason: str


class Replay:
    """The steps of ``elbo`` on ``model`` and ``guide``, each recorded once and replayed.

    The program must be a function of its tensor arguments, its parameters and beta: a value
    it reads from elsewhere (a Python number that changes, a tensor attribute reassigned, a
    draw from Python's ``random``) is frozen into the graph at the value it had when the
    graph was made. Every ``check_every``-th replay of a graph is therefore checked against
    Pyro's own step again, and a graph that no longer agrees is dropped with a warning; the
    zoo's trainer replays only models that declare themselves such functions
    (:attr:`zoo.models.base.ZooModel.replayable`).

    :param elbo: a ``Trace_ELBO`` or a subclass (``TraceMeanField_ELBO``, the free-bits ELBOs).
    :param model: the Pyro model.
    :param guide: its guide.
    :param module: the ``torch.nn.Module`` whose train/eval modes (its own and its
        submodules') are part of the key and whose buffers (batch-norm statistics) the checks
        compare and restore; None: neither is looked at.
    :param pyro_steps: steps of a key that run in Pyro before the next one makes its graph
        (at least 1: see the module's notes); None: ``PYRO_STEPS``.
    :param check_every: replays of a graph between two checks against Pyro; None:
        ``CHECK_EVERY``.
    :param refusal: a reason of the caller's never to replay (the trainer's, for a model that
        does not declare itself replayable); None: replay where the ELBO allows it.

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
        check_every: int | None = None,
        refusal: str | None = None,
    ) -> None:
        pyro_steps = PYRO_STEPS if pyro_steps is None else pyro_steps
        check_every = CHECK_EVERY if check_every is None else check_every
        if pyro_steps < 1 or check_every < 1:
            raise ValueError(
                f"pyro_steps and check_every must be at least 1, got {pyro_steps}, {check_every}"
            )
        self.elbo, self.model, self.guide, self.module = elbo, model, guide, module
        self.pyro_steps, self.check_every = pyro_steps, check_every
        self.refusal = replay_refusal(elbo) or refusal
        self._declined: list[str] = []  # why_not()'s reasons, as steps were declined for them
        self._graphs: dict[tuple, _Graph | _Refusal] = {}
        self._pyro_steps_of: dict[tuple, int] = {}  # keys without a graph yet
        #: steps answered by a replayed graph (the step that makes a graph included)
        self.replayed_steps = 0
        #: graphs made so far, kept or refused (one per key, and again when the store changed)
        self.graphs_made = 0

    def loss_and_grads(self, *args, **kwargs) -> tuple[float, dict[str, torch.Tensor]] | None:
        """The step's loss, with every parameter's gradient accumulated into its ``.grad``,
        and the parameters by name; None (and nothing done) where Pyro must take the step."""
        reason = self.why_not()
        if reason is not None:
            if reason not in self._declined:
                self._declined.append(reason)
            return None
        key = self._key(args, kwargs)
        if key is None:
            return None
        graph = self._graphs.get(key)
        if isinstance(graph, _Refusal):
            return None
        if graph is not None and graph.is_current():
            graph.replays += 1
            if graph.replays % self.check_every == 0:
                return self._settle(key, self._against_pyro(args, kwargs, graph))
            return self._replay(key, graph, args, kwargs)
        if graph is None:
            seen = self._pyro_steps_of.get(key, 0)
            if seen < self.pyro_steps:
                if key in self._pyro_steps_of or len(self._pyro_steps_of) < MAX_KEYS:
                    self._pyro_steps_of[key] = seen + 1
                return None
        self.graphs_made += 1
        return self._settle(key, self._against_pyro(args, kwargs, None))

    def why_not(self) -> str | None:
        """Why no step would be replayed now, whatever its key; None where steps may be."""
        if self.refusal is not None:
            return self.refusal
        if pyro.infer.util.is_validation_enabled():
            return "Pyro's validation is on (trainer.validate=true): Pyro checks every step"
        return None

    def refusals(self) -> list[str]:
        """Why steps stayed with Pyro: the reasons that declined every step (the refusal, the
        validation), then one per key whose graph was refused."""
        reasons = [g.reason for g in self._graphs.values() if isinstance(g, _Refusal)]
        declined = self._declined or ([self.refusal] if self.refusal else [])
        return declined + reasons

    def _settle(self, key, outcome):
        graph, result = outcome
        if graph is not None:
            self._graphs[key] = graph
            self._pyro_steps_of.pop(key, None)
        if isinstance(graph, _Graph):
            self.replayed_steps += 1
        return result

    def _replay(self, key, graph: _Graph, args, kwargs):
        try:
            result = _run(graph, _tensors(args, kwargs))
        except RuntimeError as error:  # e.g. a shape the trace fixed that this step lacks
            for p in graph.params.values():
                p.grad = None
            reason = f"a replay failed ({_first_line(error)})"
            log.warning("replay: %s; Pyro's ELBO runs this step and every later one", reason)
            self._graphs[key] = _Refusal(reason)
            return None
        self.replayed_steps += 1
        return result

    def _key(self, args: tuple, kwargs: dict) -> tuple | None:
        """What a graph is valid for; None for an argument that cannot be part of a key (not a
        tensor and not hashable, or a container: a list could change between two steps
        unseen, and tensors in a tuple would be keyed, and kept alive, by identity)."""
        parts = []
        for value in _flat(args, kwargs):
            if isinstance(value, torch.Tensor):
                parts.append(
                    (value.shape, value.stride(), value.dtype, value.device, value.requires_grad)
                )
            elif isinstance(value, (tuple, list, dict, set, frozenset)):
                return None
            else:
                try:
                    hash(value)
                except TypeError:
                    return None
                parts.append((type(value), value))
        modes = (
            tuple(m.training for m in self.module.modules()) if self.module is not None else None
        )
        # the handlers themselves, not their ids: a freed handler's id can come back
        return (len(args), tuple(sorted(kwargs)), tuple(parts), tuple(_PYRO_STACK), modes)

    def _against_pyro(self, args: tuple, kwargs: dict, graph: _Graph | None):
        """Pyro's step, then (without ``graph``) the trace, then the replay, each from the same
        random state and module buffers, compared. Returns the key's graph (a refusal, or
        None to try again at a later step) and this step's result: the replay's when the
        graph is kept, Pyro's otherwise."""
        tensors = _tensors(args, kwargs)
        with _gradients_set_aside():
            start = _State.save(tensors, self.module)
            reference_loss, params = pyro_loss_and_grads(
                self.elbo.loss_and_grads, self.model, self.guide, args, kwargs
            )
            reference = {name: p.grad for name, p in params.items()}
            pyro_result = (reference_loss, params)
            if not math.isfinite(reference_loss):
                return graph, pyro_result  # nothing to compare with
            after_pyro = _State.save(tensors, self.module)

            def keep_pyro(reason: str, level: int) -> tuple[_Refusal, tuple]:
                log.log(level, "replay: %s; Pyro's ELBO runs at every step", reason)
                for name, p in params.items():
                    p.grad = reference[name]
                after_pyro.restore()
                return _Refusal(reason), pyro_result

            drop_grads(params.values())
            started = time.perf_counter()
            if graph is None:
                annealers = [h for h in _PYRO_STACK if isinstance(h, KLAnnealingMessenger)]
                start.restore()
                try:
                    module = self._trace(args, kwargs, annealers)
                except Exception as error:  # Pyro's own step ran: what failed is the tracing
                    what = f"{type(error).__name__}: {_first_line(error)}"
                    return keep_pyro(f"the step could not be traced ({what})", logging.INFO)
                graph = _Graph.of(module, params, annealers)
            start.restore()
            try:
                loss, _ = _run(graph, tensors)
            except RuntimeError as error:
                return keep_pyro(f"a replay failed ({_first_line(error)})", logging.WARNING)
            difference = _difference(reference_loss, loss, reference, params)
            difference = difference or after_pyro.buffers_differ(self.module)
            if difference is not None:
                # a loss apart in its last bits with every gradient equal is beta rounded
                # where the rewrite does not reach (see the module's notes), not a sign of a
                # broken contract
                level = logging.INFO if difference.startswith(LOSS_ONLY) else logging.WARNING
                when = (
                    "when its graph was made"
                    if not graph.replays
                    else (f"at its check after {graph.replays} replays")
                )
                return keep_pyro(
                    f"the replayed step differs from Pyro's {when}: {difference}", level
                )
            if not graph.replays:
                log.info(
                    "replay: recorded the step as a graph of %d operations in %.2f s; it "
                    "replays from here (trainer.replay=false runs Pyro's ELBO at every step)",
                    sum(node.op == "call_function" for node in graph.module.graph.nodes),
                    time.perf_counter() - started,
                )
            return graph, (loss, params)

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
        betas = [n for n in module.graph.nodes if n.op == "placeholder"][len(tensors) :]
        _round_beta_as_a_python_float(module.graph, betas)
        # torch counts a random op as impure, so a draw whose value is unused stays in the
        # graph (it moves the random stream; tests/test_replay.py checks this)
        module.graph.eliminate_dead_code()
        module.graph.lint()
        module.recompile()
        return module


# elementwise arithmetic, in which torch rounds a Python float operand to float32 before it
# computes with a float32 tensor (tensor * 0.1 multiplies by float32(0.1))
_PYTHON_FLOAT_ARITHMETIC = {
    torch.ops.aten.mul.Tensor,
    torch.ops.aten.add.Tensor,
    torch.ops.aten.sub.Tensor,
    torch.ops.aten.div.Tensor,
}


def _round_beta_as_a_python_float(graph: torch.fx.Graph, betas: list[torch.fx.Node]) -> None:
    """Rewrites ``graph`` so that beta, and every number computed from beta alone (beta times
    a plate's scale), meets the program's tensors as the Python float it is in Pyro.

    In Pyro beta is a Python float: arithmetic on it is float64, and where it meets a tensor
    of float32 torch rounds it to float32 first, so a 0-d float32 term (a weight's closed-form
    KL) times it stays float32. In the graph beta is a float64 0-d tensor, and a 0-d float32
    tensor times it would be computed, and kept, in float64. So where a beta-derived value is
    one operand of elementwise arithmetic and a float32 tensor the other, the beta-derived
    one is cast to float32 first. Any other use of beta is left as it is;
    the checks against Pyro's own step decide whether the graph is kept.
    """
    derived = set(betas)
    for node in list(graph.nodes):
        if node.op != "call_function" or not node.all_input_nodes:
            continue
        inputs = node.all_input_nodes
        if all(a in derived for a in inputs):
            derived.add(node)  # arithmetic on beta and constants: Python's, in float64
            continue
        if node.target not in _PYTHON_FLOAT_ARITHMETIC or not any(a in derived for a in inputs):
            continue
        # float32 only: a float16 or bfloat16 tensor computes with a Python float in float32,
        # which casting beta to its dtype would not reproduce (the checks decide there)
        if any(_dtype(a) != torch.float32 for a in inputs if a not in derived):
            continue
        for beta in [a for a in inputs if a in derived]:
            with graph.inserting_before(node):
                rounded = graph.call_function(
                    torch.ops.aten._to_copy.default, (beta,), {"dtype": torch.float32}
                )
            node.replace_input_with(beta, rounded)


def _dtype(node: torch.fx.Node) -> torch.dtype | None:
    value = node.meta.get("val")
    return value.dtype if isinstance(value, torch.Tensor) else None


def pyro_loss_and_grads(loss_and_grads, model, guide, args: tuple, kwargs: dict):
    """Pyro's own step, ``loss_and_grads(model, guide, *args, **kwargs)`` (an ELBO's, or
    SVI's wrapper of a plain loss): its loss, and the parameters it read by name (sorted),
    their gradients accumulated."""
    with poutine.trace(param_only=True) as captured:
        loss = pyro.infer.util.torch_item(loss_and_grads(model, guide, *args, **kwargs))
    nodes = captured.trace.nodes
    return loss, {name: nodes[name]["value"].unconstrained() for name in sorted(nodes)}


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
    in Python floats (float64), and the graph makes that product in float64 too; where it
    meets a float32 tensor, :func:`_round_beta_as_a_python_float` rounds it as torch rounds a
    Python float."""
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
    graph adds float64 tensors, and its reported loss is Pyro's to the last bit. The cast is
    recorded even for a value that is float64 when the graph is made: one that meets beta may
    be float32 once :func:`_round_beta_as_a_python_float` has rewritten the graph."""
    if not isinstance(value, torch.Tensor):
        return value
    return value.detach().to(torch.float64, copy=True)


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
    """How the replay's loss or gradients differ from Pyro's, to the last bit, or None; the
    gradients are compared first, so that a loss alone apart says so."""
    for name, p in params.items():
        expected, got = reference[name], p.grad
        if (expected is None) != (got is None):
            return f"the gradient of {name} is {'missing' if got is None else 'there, not in Pyro'}"
        if expected is not None and not torch.equal(got, expected):
            largest = float((got - expected).abs().max())
            return f"the gradient of {name}, by up to {largest:.3g}"
    if loss != reference_loss:
        return f"{LOSS_ONLY}: {loss!r} against Pyro's {reference_loss!r}"
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


class _State:
    """What a step may change besides the gradients: the random streams (torch's on the CPU
    and on each CUDA device among the step's tensors, Python's, NumPy's) and the module's
    buffers (batch-norm statistics)."""

    def __init__(self, cpu, cuda, python, numpy_state, buffers) -> None:
        self.cpu, self.cuda, self.python, self.numpy_state = cpu, cuda, python, numpy_state
        self.buffers = buffers

    @classmethod
    def save(cls, tensors: list[torch.Tensor], module: torch.nn.Module | None) -> _State:
        devices = {t.device.index or 0 for t in tensors if t.device.type == "cuda"}
        buffers = [(b, b.clone()) for b in module.buffers()] if module is not None else []
        return cls(
            torch.get_rng_state(),
            {d: torch.cuda.get_rng_state(d) for d in devices},
            random.getstate(),
            np.random.get_state(),
            buffers,
        )

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        for device, state in self.cuda.items():
            torch.cuda.set_rng_state(state, device)
        random.setstate(self.python)
        np.random.set_state(self.numpy_state)
        with torch.no_grad():
            for buffer, saved in self.buffers:
                buffer.copy_(saved)

    def buffers_differ(self, module: torch.nn.Module | None) -> str | None:
        """How the module's buffers now differ from these saved ones, or None."""
        for buffer, saved in self.buffers:
            if not torch.equal(buffer, saved):
                return "a buffer of the module (a running statistic) after the step"
        return None

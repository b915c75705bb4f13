"""The SVI trainer shared by all models.

One :class:`Trainer` fits a :class:`~zoo.models.base.ZooModel` to a data set with
``pyro.infer.SVI``: minibatches are drawn by index from tensors that stay on the run's
device, beta comes from a schedule and is applied by the KL-annealing handler, every epoch
rewrites ``metrics.jsonl`` and writes a checkpoint atomically, and a run resumed from its
checkpoint ends with the same numbers as one never stopped.

SIGINT and SIGTERM stop training after the current step; the run is resumable from the
checkpoint of the last completed epoch (the partial epoch is trained again on resume, which
keeps the checkpoint format to epoch boundaries).
"""

from __future__ import annotations

import logging
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import pyro
import torch
from pyro import poutine
from pyro.infer import SVI, JitTrace_ELBO, Trace_ELBO, TraceEnum_ELBO, TraceMeanField_ELBO
from pyro.optim import PyroOptim

from zoo.checkpoint import (
    UnusableCheckpoint,
    load_latest_checkpoint,
    previous_path,
    remove_stale_temps,
    save_checkpoint,
    state_digest,
)
from zoo.distributed import Collectives, RankFailure
from zoo.errors import CheckpointError, ConfigError, Interrupted, TrainingDiverged, ZooError
from zoo.files import strict_json, write_text_atomic
from zoo.free_bits import WITH_FREE_BITS
from zoo.handlers import KLAnnealingMessenger
from zoo.progress import progress_bar
from zoo.replay import Replay, drop_grads, pyro_loss_and_grads
from zoo.schedules import Schedule
from zoo.schema import Settings, setting
from zoo.stopping import Stopper, StopSettings

ELBOS = {
    "trace": Trace_ELBO,
    "meanfield": TraceMeanField_ELBO,
    "jit": JitTrace_ELBO,
    "traceenum": TraceEnum_ELBO,  # sums out sites marked for enumeration
}
CHECKPOINT_NAME = "checkpoint.pt"
# what a trainer's checkpoint holds besides its format and digest (see Trainer.state)
CHECKPOINT_KEYS = ("identity", "epoch", "history", "module", "optim", "rng")
METRICS_NAME = "metrics.jsonl"
log = logging.getLogger(__name__)


class TrainSettings(Settings):
    """How to train; the values of the ``trainer`` config group."""

    #: passes over the training rows (the most, when a stopping rule is set)
    epochs: int = setting(10, "an integer >= 1", ge=1)
    #: training rows per step (minibatch)
    batch_size: int | None = setting(
        128,
        "an integer >= 1, at most the number of training rows, or null for all of them "
        "(full-batch steps)",
        ge=1,
    )
    elbo: Literal["trace", "meanfield", "jit", "traceenum"] = setting(
        "trace",
        "trace (Trace_ELBO), meanfield (TraceMeanField_ELBO), jit (JitTrace_ELBO) or "
        "traceenum (TraceEnum_ELBO)",
    )
    #: samples of the latents per ELBO estimate (Monte Carlo particles)
    num_particles: int = setting(1, "an integer >= 1", ge=1)
    # permutation: an epoch visits every row once (one O(N) permutation per epoch);
    # replacement: each minibatch is drawn independently, O(batch) time and memory per step
    sampling: Literal["permutation", "replacement"] = setting(
        "permutation",
        "permutation (each row once an epoch) or replacement (independent minibatches)",
    )
    # evaluations run on their own RNG stream, so these change no trained parameter
    eval_every: int = setting(1, "an integer >= 1 (epochs)", trains=False, ge=1)
    #: the seed of the evaluations' own random stream
    eval_seed: int = setting(0, "an integer from 0 to 2**32 - 1", trains=False, ge=0, le=2**32 - 1)
    # Pyro's argument and support checks: on in tests, costly in training. The config key is
    # `validate`, which names a method of pydantic's models, so the field has another name.
    validation: bool = setting(False, "true or false", trains=False, alias="validate")
    #: progress bars on a terminal, over each epoch's steps and the final evaluation
    progress: bool = setting(True, "true or false", trains=False)
    # record each step shape once as a graph of torch operations and replay it (zoo.replay):
    # the same draws and gradients as Pyro's ELBO, without its per-step tracing
    replay: bool = setting(True, "true or false", trains=False)
    # NaN/inf steps to skip in the whole run, each logged, before stopping (0: stop at the
    # first); the run stops anyway once more than half of one epoch's steps are skipped
    skip_nonfinite: int = setting(
        0, "an integer >= 0 (NaN/inf steps to skip in the run; 0: stop at the first)", ge=0
    )
    # stop before `epochs` when the loss has converged or a test metric stops improving
    stop: StopSettings = setting(StopSettings(), "the stopping rules (zoo.stopping)")


def make_elbo(
    name: str,
    num_particles: int = 1,
    max_plate_nesting: int | None = None,
    free_bits: Mapping[str, float] | None = None,
) -> pyro.infer.ELBO:
    """The ELBO named ``name``; ``max_plate_nesting`` (the model's) places enumerated
    dimensions to the left of the plates under ``traceenum``; None lets Pyro guess it.
    ``free_bits`` (``{site: nats}``, the model's) makes it the free-bits objective of
    :mod:`zoo.free_bits`, for ``trace`` and ``meanfield`` only."""
    if name not in ELBOS:
        raise ValueError(f"trainer.elbo must be one of {sorted(ELBOS)}, got {name!r}")
    if free_bits and any(free_bits.values()):
        if ELBOS[name] not in WITH_FREE_BITS:
            raise ValueError(
                f"free bits need trainer.elbo=trace or meanfield, got trainer.elbo={name}"
            )
        return WITH_FREE_BITS[ELBOS[name]](num_particles=num_particles, free_bits=free_bits)
    options = {} if max_plate_nesting is None else {"max_plate_nesting": max_plate_nesting}
    if name == "jit":
        # the tracer warns of the Python branches on sizes in the data plate: they are taken
        # once when tracing, which is right because every training batch has the same size
        options["ignore_jit_warnings"] = True
    # vectorizing particles needs models written for it; a loop over particles works for all
    return ELBOS[name](num_particles=num_particles, vectorize_particles=False, **options)


def all_finite(tensors: list[torch.Tensor]) -> bool:
    """Whether every element of every tensor is finite, with one sync.

    A sum of finite numbers is finite unless it overflows, and a sum with a NaN or an
    infinity in it is not: one ``sum`` per tensor (a fast reduction, no temporary the size of
    the tensor, unlike ``isfinite``) decides almost every step, and only a non-finite total
    is checked element by element, so a finite step whose sum overflows still counts as finite.
    """
    if not tensors:
        return True
    if math.isfinite(torch.stack([t.sum() for t in tensors]).sum().item()):
        return True
    return all(bool(t.isfinite().all()) for t in tensors)


class GuardedSVI(SVI):
    """``SVI`` whose step leaves the parameters alone when the loss or a gradient is NaN or
    infinite, and says so in ``last_step_finite``; a finite step does exactly what
    ``SVI.step`` does.

    With ``replay`` (a :class:`zoo.replay.Replay` of the same ELBO, model and guide) a step
    that can be replayed runs the recorded graph instead of Pyro's tracing; the others, and
    every step without it, run ``loss_and_grads``.

    With ``collectives`` (a data-parallel run, :mod:`zoo.distributed`) the gradients and the
    loss are averaged over the ranks before that check, so that every rank takes (or skips)
    the same step; ``pending_signal()`` (this rank's signal to stop, or None) travels in the
    same all-reduce, and ``agreed_signal`` is then the signal every rank stops on.
    """

    last_step_finite = True
    agreed_signal: int | None = None

    def __init__(
        self,
        model,
        guide,
        optim,
        loss,
        collectives: Collectives | None = None,
        pending_signal: Callable[[], int | None] | None = None,
        replay: Replay | None = None,
    ) -> None:
        super().__init__(model, guide, optim, loss)
        self.collectives = collectives
        self.pending_signal = pending_signal or (lambda: None)
        self.replay = replay

    def step(self, *args, **kwargs) -> float:
        replayed = self.replay.loss_and_grads(*args, **kwargs) if self.replay else None
        if replayed is not None:
            loss, by_name = replayed
        else:
            loss, by_name = pyro_loss_and_grads(
                self.loss_and_grads, self.model, self.guide, args, kwargs
            )
        params = list(by_name.values())
        if self.collectives is not None:
            loss = self._average_over_ranks(by_name, loss)
        grads = [p.grad for p in params if p.grad is not None]
        self.last_step_finite = math.isfinite(loss) and all_finite(grads)
        if self.last_step_finite:
            self.optim(params)
        drop_grads(params)
        return loss

    def _average_over_ranks(self, by_name: dict[str, torch.Tensor], loss: float) -> float:
        """The ranks' mean loss; each gradient replaced by the ranks' mean. Parameters go in
        the order of their names, the same on every rank; one that got no gradient on this
        rank contributes zeros."""
        ordered = [by_name[name] for name in sorted(by_name)]
        for p in ordered:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        grads = [p.grad for p in ordered]
        loss, self.agreed_signal = self.collectives.average_gradients(
            grads, loss, self.pending_signal()
        )
        return loss


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _epoch_line(record: dict, epochs: int) -> str:
    parts = [
        f"epoch {record['epoch']}/{epochs}",
        f"train/loss {record['train/loss']:.3f}",
        f"beta {record['beta']:.3g}",
    ]
    parts += [
        f"{k} {v:.3f}" for k, v in record.items() if k.startswith("test/") and isinstance(v, float)
    ]
    return "  ".join(parts + [f"({record['time/epoch_s']:.2f} s)"])


class Trainer:
    """Fits ``model`` to ``data`` by SVI.

    :param model: a :class:`~zoo.models.base.ZooModel`.
    :param data: a :class:`~zoo.data.Dataset` already on the run's device.
    :param optim: a ``pyro.optim`` optimizer.
    :param settings: :class:`TrainSettings`.
    :param schedule: ``beta(epoch, step, steps_per_epoch)``; no annealing by default.
    :param evaluate: called after an epoch to evaluate on the test set; returns metrics.
    :param out_dir: where ``metrics.jsonl`` and the checkpoint go; nothing is written if None.
    :param on_epoch: ``on_epoch(record, epoch)`` after each epoch is saved (a tracker).
    :param identity: values a checkpoint must match to be resumed (model name, config hash).
    :param collectives: this rank's :class:`~zoo.distributed.Collectives` in a data-parallel
        run under torchrun (see :mod:`zoo.distributed`); None for one process. Only rank 0
        should be given an ``out_dir`` and an ``evaluate``.
    """

    def __init__(
        self,
        model,
        data,
        optim: PyroOptim,
        settings: TrainSettings | None = None,
        *,
        schedule: Schedule | None = None,
        evaluate: Callable[[], dict] | None = None,
        out_dir: str | os.PathLike | None = None,
        identity: dict | None = None,
        on_epoch: Callable[[dict, int], None] | None = None,
        collectives: Collectives | None = None,
    ) -> None:
        self.model = model
        self.collectives = collectives
        self.ranks = collectives.ranks if collectives is not None else None
        self.world_size = self.ranks.world_size if self.ranks is not None else 1
        # called with each epoch's record and number once it is saved (an experiment tracker)
        self.on_epoch = on_epoch
        self.data = data
        self.optim = optim
        self.settings = settings = settings or TrainSettings()
        self.schedule = schedule or (lambda epoch, step, steps: 1.0)
        self.evaluate = evaluate
        self.out_dir = Path(out_dir) if out_dir is not None else None
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self.identity = identity or {}
        self.annealer = KLAnnealingMessenger(1.0)
        elbo = make_elbo(
            settings.elbo,
            settings.num_particles,
            getattr(model, "max_plate_nesting", None),
            getattr(model, "free_bits", None),
        )
        module = model if isinstance(model, torch.nn.Module) else None
        undeclared = None if getattr(model, "replayable", False) else (
            f"{type(model).__name__} does not declare its step replayable "
            "(zoo.models.base.ZooModel.replayable)"
        )
        replay = (
            Replay(elbo, model.model, model.guide, module, refusal=undeclared)
            if settings.replay
            else None
        )
        self.svi = GuardedSVI(
            model.model, model.guide, optim, elbo, collectives, lambda: self._stop_signal, replay
        )
        self.elbo = elbo
        self._compiled_beta: float | None = None  # JitTrace_ELBO: the beta in its graph
        self.epoch = 0  # epochs completed
        self.history: list[dict] = []
        self.stopper = Stopper(settings.stop)
        n, ranks = len(data.train_x), self.world_size
        # per rank: null shares the training rows out among the ranks
        self.batch_size = n // ranks if settings.batch_size is None else settings.batch_size
        if self.batch_size * ranks > n or self.batch_size < 1:
            across = f" on each of {ranks} ranks ({self.batch_size * ranks} rows a step)"
            raise ValueError(
                f"trainer.batch_size = {settings.batch_size} is not valid"
                f"{across if ranks > 1 else ''}: it exceeds the {n} training rows of "
                f"{getattr(data, 'name', 'the data set')}; it must be an integer from 1 to "
                f"{n // ranks}."
            )
        self.resumed_from: Path | None = None
        self._stop_signal: int | None = None
        # full batches only: a ragged last batch would change shapes (and JIT traces) per epoch
        self.steps_per_epoch = n // (self.batch_size * ranks)
        if collectives is not None:
            self._start_ranks_alike()

    @property
    def _is_main(self) -> bool:
        return self.ranks is None or self.ranks.is_main

    def _start_ranks_alike(self) -> None:
        """Every rank starts from rank 0's parameters; a rank whose model has other parameters
        (another config, another version) is refused by name before any step."""
        self._register_params()  # lazily created parameters exist from here on
        layout = [(name, tuple(t.shape)) for name, t in self.model.state_dict().items()]
        layouts = self.collectives.gather_objects(layout, "comparing the models")
        if any(other != layouts[0] for other in layouts):
            odd = next(r for r, other in enumerate(layouts) if other != layouts[0])
            raise RankFailure(
                f"{self.ranks}: rank {odd} built a model with other parameters than rank 0 "
                f"({len(layouts[odd])} tensors against {len(layouts[0])}): every rank must run "
                "the same config; start the ranks with the same overrides."
            )
        self.collectives.broadcast_tensors(
            self.model.state_dict().values(), "sending rank 0's initial parameters"
        )

    @property
    def checkpoint_path(self) -> Path | None:
        """``checkpoint.pt`` in ``out_dir``, or None for a trainer without a folder."""
        return self.out_dir / CHECKPOINT_NAME if self.out_dir else None

    def fit(self) -> list[dict]:
        """Trains until ``settings.epochs`` epochs are complete; returns the per-epoch history."""
        with pyro.validation_enabled(self.settings.validation), self._stop_on_signals():
            if self.epoch < self.settings.epochs:
                self._compile_once()
                self._say_why_steps_are_not_replayed()
            while self.epoch < self.settings.epochs and self.stopper.reason is None:
                record = self._train_epoch()
                last = self.epoch + 1 == self.settings.epochs or self.stopper.reason is not None
                if self.evaluate and ((self.epoch + 1) % self.settings.eval_every == 0 or last):
                    record.update(self._evaluate())
                    self._watch(record)
                self.epoch += 1
                record["train/steps_total"] = self.stopper.steps
                if self.stopper.reason is not None:
                    record["train/stopped"] = self.stopper.reason
                self.history.append(record)
                self._save()
                if self.on_epoch is not None:
                    self.on_epoch(record, self.epoch)
                # every epoch is in metrics.jsonl; the log shows the evaluated ones
                tested = any(key.startswith("test/") for key in record)
                level = logging.INFO if tested or self.epoch == 1 else logging.DEBUG
                if self._is_main:  # the other ranks' lines would repeat rank 0's
                    log.log(level, _epoch_line(record, self.settings.epochs))
                    if self.stopper.reason is not None:
                        log.info("%s", self.stopper.message)
                # once training is over no collective follows: a signal is acted on at once
                over = self.epoch >= self.settings.epochs or self.stopper.reason is not None
                self._stop_if_signalled(None, now=over)
        return self.history

    def _say_why_steps_are_not_replayed(self) -> None:
        replay = self.svi.replay
        if replay is None:
            return
        reason = replay.why_not()  # called under the run's validation setting
        if reason is not None:
            log.info("steps are not replayed (zoo.replay): %s", reason)

    @property
    def replay_summary(self) -> dict | None:
        """What the replay did in this process: steps answered by a recorded graph and, for
        each step shape left with Pyro, why; None with ``trainer.replay=false``."""
        replay = self.svi.replay
        if replay is None:
            return None
        return {"replayed_steps": replay.replayed_steps, "not_replayed": replay.refusals()}

    @property
    def stopped(self) -> dict:
        """Why training ended (``epochs``, ``converged`` or ``patience``), after how many
        epochs and steps, and in a sentence."""
        reason = self.stopper.reason or "epochs"
        message = self.stopper.message or (
            f"ran its trainer.epochs = {self.settings.epochs} epochs ({self.stopper.steps} steps)"
        )
        return {
            "reason": reason,
            "epochs": self.epoch,
            "steps": self.stopper.steps,
            "message": message,
        }

    def _watch(self, record: dict) -> None:
        """The patience rule, on an evaluated epoch's metrics."""
        try:
            self.stopper.after_evaluation(record)
        except KeyError:
            shown = ", ".join(k for k in record if k.startswith("test/")) or "none"
            raise ConfigError(
                f"trainer.stop.metric = {self.settings.stop.metric!r} is not valid: the "
                f"periodic evaluation gives no such metric; it gives {shown}."
            ) from None

    @contextmanager
    def _stop_on_signals(self) -> Iterator[None]:
        """SIGINT and SIGTERM set a flag that the loop checks after each step, so a
        checkpoint is never written half; a second signal stops at once."""
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers can only be set from the main thread
            return

        def handler(signum, frame):
            if self._stop_signal is not None:  # asked twice: stop now, between two writes
                self._stop_if_signalled(None, now=True)
            self._stop_signal = signum

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def _stop_if_signalled(self, step: int | None, *, now: bool = False) -> None:
        """Raises :class:`Interrupted` if a signal asked to stop. In a data-parallel run, only
        on a signal the ranks agreed on in the step's all-reduce (a rank stopping alone would
        leave the others waiting in the next one), unless ``now``: no collective follows."""
        if self.collectives is not None and not now:
            signum = self.svi.agreed_signal if step is not None else None
        else:
            signum = self._stop_signal
        if signum is None:
            return
        self._stop_signal = self.svi.agreed_signal = None
        where = (
            f"at epoch {self.epoch + 1}, step {step + 1} of {self.steps_per_epoch}"
            if step is not None
            else f"after epoch {self.epoch}"
        )
        if self.epoch and not self._is_main:
            kept = f"rank 0 keeps the checkpoint of epoch {self.epoch}"
        elif self.epoch and self.checkpoint_path is not None:
            kept = (
                f"the checkpoint of epoch {self.epoch} is {self.checkpoint_path}; continue with "
                f"the same overrides plus resume=true hydra.run.dir={self.out_dir}"
            )
        else:
            kept = "no epoch was complete, so there is no checkpoint to resume from"
        raise Interrupted(f"interrupted by {signal.Signals(signum).name} {where}: {kept}.", signum)

    def _compile_once(self) -> None:
        """JitTrace_ELBO compiles its graph at its first call, which draws other random
        numbers than a compiled step; a resumed run would make that call at another step
        than an uninterrupted one and drift from it. So the first call is made here, on the
        first training rows, with the random state put back afterwards and its gradients
        dropped: every training step then runs the compiled graph, and resume stays exact."""
        if not isinstance(self.elbo, JitTrace_ELBO) or self._compiled_beta is not None:
            return
        rows = slice(0, self.batch_size)
        self.annealer.beta = self._beta(0, self.steps_per_epoch)
        with torch.random.fork_rng(devices=self._cuda_devices()):
            state = random.getstate()
            x = self.model.prepare_epoch(self.data.train_x[rows])
            args = (x,) if self.data.train_y is None else (x, self.data.train_y[rows])
            # SVI's own model and guide: the compiled graph is cached per their identity
            with poutine.trace(param_only=True) as params, self.annealer:
                self.elbo.loss_and_grads(
                    self.svi.model, self.svi.guide, *args, size=len(self.data.train_x)
                )
            random.setstate(state)
        drop_grads(site["value"].unconstrained() for site in params.trace.nodes.values())

    def _beta(self, step: int, steps: int) -> float:
        """The schedule's beta; refused where a JIT-compiled ELBO could not follow it."""
        beta = self.schedule(self.epoch, step, steps)
        if isinstance(self.elbo, JitTrace_ELBO):
            # the compiled graph holds the beta of its first step as a constant
            if self._compiled_beta is None:
                self._compiled_beta = beta
            if beta != self._compiled_beta:
                raise ValueError(
                    f"beta changed from {self._compiled_beta} to {beta} under JitTrace_ELBO, which compiled "
                    "the first value into its graph: anneal with Trace_ELBO or "
                    "TraceMeanField_ELBO (trainer.elbo=trace or meanfield)"
                )
        return beta

    def _train_epoch(self) -> dict:
        settings, data = self.settings, self.data
        n, b, steps = len(data.train_x), self.batch_size, self.steps_per_epoch
        start = time.perf_counter()
        x = self.model.prepare_epoch(data.train_x)
        if settings.sampling == "permutation":
            batches = self._share_of(torch.randperm(n, device=x.device), steps, b)
        else:  # each rank from its own stream
            batches = (torch.randint(n, (b,), device=x.device) for _ in range(steps))
        total, skipped, taken = 0.0, 0, steps
        bar = progress_bar(
            batches,
            total=steps,
            desc=f"epoch {self.epoch + 1}/{settings.epochs}",
            enabled=settings.progress and self._is_main,
        )
        for step, index in enumerate(bar):
            self.annealer.beta = self._beta(step, steps)
            args = (x[index],) if data.train_y is None else (x[index], data.train_y[index])
            with self.annealer:
                loss = self.svi.step(*args, size=n)
            if not self.svi.last_step_finite:
                what = (
                    f"the loss became {loss}"
                    if not math.isfinite(loss)
                    else (f"a gradient became NaN or infinite (loss {loss:.6g})")
                )
                where = f"epoch {self.epoch + 1}, step {step + 1} of {steps}"
                if self._skipped_steps() + skipped < settings.skip_nonfinite:
                    skipped += 1
                    log.warning(
                        "%s at %s: step skipped, parameters unchanged (%d of at most %d skips)",
                        what,
                        where,
                        self._skipped_steps() + skipped,
                        settings.skip_nonfinite,
                    )
                    self._stop_if_most_skipped(skipped, steps)
                    continue
                raise TrainingDiverged(
                    f"{what} at {where}{self._kept_note()}. Try a smaller optim lr, gradient "
                    "clipping (optim=clipped_adam) or a longer warm-up; trainer.skip_nonfinite=N "
                    "skips up to N such steps."
                )
            total += loss
            if step % 10 == 0:
                bar.set_postfix_str(
                    f"loss/point {total / (step + 1 - skipped) / n:.3f} beta {self.annealer.beta:.3g}"
                )
            if self.stopper.after_step(loss, self.annealer.beta):
                taken = step + 1
                break
            self._stop_if_signalled(step)
        elapsed = time.perf_counter() - start
        previous_total = self.history[-1]["time/total_s"] if self.history else 0.0
        record = {
            "epoch": self.epoch + 1,
            # the annealed objective per data point, over the steps taken
            "train/loss": total / (taken - skipped) / n if taken > skipped else math.nan,
            "beta": self.annealer.beta,
            "time/epoch_s": elapsed,
            "time/total_s": previous_total + elapsed,
        }
        if settings.skip_nonfinite:
            record["train/skipped_steps"] = skipped
        if taken < steps:  # the stopping rule ended the epoch early
            record["train/steps"] = taken
        return record

    def _share_of(self, order: torch.Tensor, steps: int, b: int) -> torch.Tensor:
        """This rank's ``(steps, b)`` batches of the permutation ``order``: rank 0's order,
        cut into groups of one batch per rank, of which rank r takes the r-th; one process
        takes them all, in order."""
        if self.collectives is None:
            return order[: steps * b].view(steps, b)
        self.collectives.broadcast_tensors([order], "sending the epoch's permutation")
        ranks = self.world_size
        return order[: steps * ranks * b].view(steps, ranks, b)[:, self.ranks.rank]

    def _skipped_steps(self) -> int:
        return sum(h.get("train/skipped_steps", 0) for h in self.history)

    def _stop_if_most_skipped(self, skipped: int, steps: int) -> None:
        """trainer.skip_nonfinite is for rare bad steps: once more than half of an epoch's
        steps are skipped, the parameters barely move and the rest of the run would be
        spent for nothing, so the run stops, whatever skips are left."""
        if 2 * skipped <= steps:
            return
        raise TrainingDiverged(
            f"{skipped} of the {steps} steps of epoch {self.epoch + 1} were skipped as NaN or "
            f"infinite: more than half of an epoch, so training is not making progress"
            f"{self._kept_note()}. Try a smaller optim lr, gradient clipping "
            "(optim=clipped_adam) or a longer warm-up; trainer.skip_nonfinite is meant for "
            "rare bad steps."
        )

    def _kept_note(self) -> str:
        if self.history and self.checkpoint_path:
            return f"; the last good checkpoint {self.checkpoint_path} is kept"
        return ""

    def _evaluate(self) -> dict:
        """The periodic evaluation's metrics; in a data-parallel run rank 0's, on every rank
        (the stopping rules read them)."""
        metrics = None
        if self._is_main:
            # a separate, seeded RNG stream: evaluation neither perturbs training nor varies by epoch
            with torch.random.fork_rng(devices=self._cuda_devices()), torch.no_grad():
                torch.manual_seed(self.settings.eval_seed)
                metrics = self.evaluate()
        if self.collectives is not None:
            metrics = self.collectives.broadcast_object(metrics, "sending the evaluation")
        return metrics

    def _cuda_devices(self) -> list[int]:
        return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []

    # ---- checkpoints -------------------------------------------------------------------

    def state(self) -> dict:
        """Everything needed to continue exactly where training stands."""
        store = pyro.get_param_store()
        by_store_name = self.optim.get_state()
        # keyed by the module's names, which do not depend on the param store
        optim_state = {
            name: by_store_name[store.param_name(p)]
            for name, p in self.model.named_parameters()
            if store.param_name(p) in by_store_name
        }
        return {
            "identity": self.identity,
            "epoch": self.epoch,
            "history": self.history,
            "module": self.model.state_dict(),
            "optim": optim_state,
            "rng": _rng_state(),
            "settings": self.settings.model_dump(),
            "stopping": self.stopper.state_dict(),
            **self._ranks_state,
        }

    def _save(self) -> None:
        if self.collectives is not None:
            self._gather_ranks_state()  # every rank takes part; rank 0 writes
        if self.out_dir is None:
            return
        save_checkpoint(self.state(), self.checkpoint_path)
        self._write_metrics()

    _ranks_state: dict = {}  # a data-parallel run's checkpoint: world size, every rank's RNG

    def _gather_ranks_state(self) -> None:
        """Collects every rank's random state for rank 0's checkpoint, and checks that the
        ranks' parameters are still identical (a digest of each rank's), which the averaged
        gradients promise: a difference would mean the ranks train different models."""
        digest = state_digest(self.model.state_dict())
        gathered = self.collectives.gather_objects(
            (digest, _rng_state()), f"saving the checkpoint of epoch {self.epoch}"
        )
        digests = [d for d, _ in gathered]
        if len(set(digests)) > 1:
            odd = [r for r, d in enumerate(digests) if d != digests[0]]
            raise RankFailure(
                f"{self.ranks}: after epoch {self.epoch} the parameters of rank(s) "
                f"{', '.join(map(str, odd))} differ from rank 0's although every step averaged "
                "the gradients: the ranks do not run the same model or optimizer; start them "
                "with the same config."
            )
        self._ranks_state = {
            "world_size": self.world_size,
            "rng_ranks": [rng for _, rng in gathered],
        }

    def resume(self) -> None:
        """Loads the run's checkpoint, refusing one from another model or config.

        An unreadable latest checkpoint is replaced by the previous one with a warning (see
        :func:`~zoo.checkpoint.load_latest_checkpoint`); ``resumed_from`` says which was used.
        In a data-parallel run rank 0 reads the checkpoint and sends it to the other ranks
        (no shared file system is needed), or sends why it could not.
        """
        if self.collectives is None:
            self._resume_from_folder()
            return
        outcome = None
        if self._is_main:
            try:
                state = self._resume_from_folder()
                outcome = ("state", state, str(self.resumed_from))
            except ZooError as e:
                outcome = ("error", f"{e}", None)
                self.collectives.broadcast_object(outcome, "sending the checkpoint")
                raise
        outcome = self.collectives.broadcast_object(outcome, "sending the checkpoint")
        if self._is_main:
            return
        kind, value, source = outcome
        if kind == "error":
            raise CheckpointError(f"rank 0 could not resume: {value}")
        self.load_state(value, source)
        self.resumed_from = Path(source)

    def _resume_from_folder(self) -> dict:
        """Loads the checkpoint in ``out_dir`` (or the previous one); returns its state."""
        if self.checkpoint_path is None:
            raise CheckpointError("cannot resume: this trainer has no output folder")
        remove_stale_temps(self.checkpoint_path)
        if not self.checkpoint_path.exists() and not previous_path(self.checkpoint_path).exists():
            raise CheckpointError(
                f"resume = true is not valid here: there is no checkpoint at {self.checkpoint_path}. "
                "Point hydra.run.dir at the folder of the run to continue, or start without resume=true."
            )
        state, source = load_latest_checkpoint(self.checkpoint_path, self._use_checkpoint)
        self.resumed_from = source
        self._write_metrics()  # it may hold epochs that finished after the checkpoint
        return state

    def _use_checkpoint(self, state: dict, source: Path) -> None:
        """Loads ``state`` if it is this run's; another run's checkpoint is refused outright,
        a damaged one raises UnusableCheckpoint so that the previous one is tried."""
        if "identity" not in state:
            raise UnusableCheckpoint(
                f"checkpoint {source} lacks its identity: it is damaged or not a checkpoint "
                "of the zoo's trainer"
            )
        if state["identity"] != self.identity:
            raise CheckpointError(
                f"checkpoint {source} belongs to another run: it was made for "
                f"{state['identity']}, this run is {self.identity}. Resume with the config it was made with."
            )
        made_by = state.get("world_size", 1)
        if made_by != self.world_size:
            raise CheckpointError(
                f"checkpoint {source} was made by {made_by} rank(s), this run has "
                f"{self.world_size}: a run resumes with the number of ranks it was started "
                f"with (torchrun --nproc_per_node and --nnodes giving {made_by} in all), "
                "because each rank's random stream is part of the checkpoint."
            )
        self.load_state(state, source)

    def load_state(self, state: dict, source: str | os.PathLike = "<state>") -> None:
        """Continues from ``state`` (a :meth:`state` of a trainer of the same model).

        :param source: the file it came from, for the message (``<state>`` for a state
            given in memory).
        :raises UnusableCheckpoint: naming ``source``, if keys are missing, a tensor has
            another shape than the model's, or torch refuses it; nothing is loaded when the
            keys or shapes are wrong.
        """
        problems = self._misfits(state)
        if problems:
            raise UnusableCheckpoint(
                f"checkpoint {source} does not fit this run: {'; '.join(problems[:5])}"
                + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
            )
        try:
            self.model.load_state_dict(state["module"])
            self._register_params()
            store = pyro.get_param_store()
            named = dict(self.model.named_parameters())
            self.optim.set_state(
                {store.param_name(named[name]): s for name, s in state["optim"].items()}
            )
            _set_rng_state(self._own_rng(state))
            # checkpoints from before the stopping rules: a fresh rule, as those runs had none
            stopper = Stopper(self.settings.stop)
            if "stopping" in state:
                stopper.load_state_dict(state["stopping"])
        except (RuntimeError, KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            raise UnusableCheckpoint(f"checkpoint {source} cannot be loaded: {e}") from e
        self.epoch = state["epoch"]
        self.history = list(state["history"])
        self.stopper = stopper

    def _own_rng(self, state: dict) -> dict:
        """This rank's random state in ``state`` (a one-process checkpoint has one)."""
        if self.ranks is None:
            return state["rng"]
        return state["rng_ranks"][self.ranks.rank]

    def _misfits(self, state: dict) -> list[str]:
        """What in ``state`` does not fit this trainer: missing keys, wrong types, tensors
        whose shapes differ from the model's."""
        missing = [key for key in CHECKPOINT_KEYS if key not in state]
        if missing:
            return [f"it lacks {', '.join(missing)}"]
        epoch, history, module = state["epoch"], state["history"], state["module"]
        if not (isinstance(epoch, int) and epoch >= 0):
            return [f"epoch = {epoch!r} is not an integer >= 0"]
        if not (isinstance(history, list) and len(history) == epoch):
            return [f"its history does not hold one record per epoch of its {epoch}"]
        if not (isinstance(module, dict) and isinstance(state["optim"], dict)):
            return ["module and optim must be dicts"]
        rng = state["rng"]
        if not (isinstance(rng, dict) and isinstance(rng.get("torch"), torch.Tensor)):
            return ["its rng state lacks torch's generator state"]
        expected = self.model.state_dict()
        problems = [f"{name} is missing" for name in expected if name not in module]
        problems += [
            f"{name} is not a tensor of the model" for name in module if name not in expected
        ]
        problems += [
            f"{name} has shape {tuple(module[name].shape)}, the model's is {tuple(t.shape)}"
            for name, t in expected.items()
            if isinstance(module.get(name), torch.Tensor) and module[name].shape != t.shape
        ]
        parameters = dict(self.model.named_parameters())
        problems += [
            f"optimizer state for {name}, which is not a parameter of the model"
            for name in state["optim"]
            if name not in parameters
        ]
        return problems

    def _register_params(self) -> None:
        """Runs guide and model once so that Pyro's param store knows the parameters' names,
        which ``PyroOptim.set_state`` is keyed by; the RNG is left as it was."""
        x = self.data.train_x[: self.batch_size]
        args = (x,) if self.data.train_y is None else (x, self.data.train_y[: self.batch_size])
        with torch.random.fork_rng(devices=self._cuda_devices()), torch.no_grad(), poutine.block():
            guide_trace = poutine.trace(self.model.guide).get_trace(
                *args, size=len(self.data.train_x)
            )
            poutine.replay(self.model.model, trace=guide_trace)(*args, size=len(self.data.train_x))

    def _write_metrics(self) -> None:
        # the whole file each epoch (a few kB): a full disk or a kill never leaves half a line;
        # strict JSON (NaN as null), so that every JSON reader can read every line
        text = "".join(strict_json(h) + "\n" for h in self.history)
        write_text_atomic(self.out_dir / METRICS_NAME, text, "metrics")

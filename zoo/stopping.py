"""When to stop training before ``trainer.epochs``: the ``trainer.stop`` settings and the rule.

Two rules, each off unless set, checked by :class:`~zoo.train.Trainer` for every model:

- **converged** (``tol``): the training loss is averaged over consecutive windows of
  ``window`` steps, and training stops once the mean of one window differs from the mean of the
  window before it by less than ``tol`` relative to it: ``|m_prev - m| <= tol |m|``, in the
  spirit of scikit-learn's ``tol`` on the change of the lower bound between EM iterations. Each
  step's loss is a Monte Carlo estimate of the whole data set's negative ELBO, so one step is
  noisy; the window averages that noise out, and a larger window stops later and surer. Windows
  run across epoch boundaries (a run may stop in the middle of an epoch), and two windows are
  compared only at the same beta: a KL-annealing warm-up changes the objective itself, so each
  change of beta starts the comparison afresh.
- **patience** (``patience``, ``metric``, ``mode``): after each periodic evaluation, a
  ``metric`` of the test set that has not improved by more than ``min_delta`` on its best for
  ``patience`` evaluations in a row stops training. The parameters are those of the last step,
  not of the best evaluation.

Hand-written rather than a library's (PyTorch Lightning's ``EarlyStopping``, ignite's): those
are callbacks of their own training loops, and the zoo's loop needs its rule's state in its own
checkpoint so that a resumed run stops at the same step as one never interrupted.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import model_validator

from zoo.schema import SettingError, Settings, setting

REASONS = ("epochs", "converged", "patience")


class StopSettings(Settings):
    """The ``trainer.stop`` settings."""

    tol: float | None = setting(
        None,
        "a finite number > 0 (relative change of the windowed training loss), or null for no "
        "convergence rule",
        gt=0.0,
    )
    window: int = setting(100, "an integer >= 1 (steps averaged per window)", ge=1)
    min_steps: int = setting(
        0, "an integer >= 0 (steps before the convergence rule may stop)", ge=0
    )
    patience: int | None = setting(
        None,
        "an integer >= 1 (evaluations without improvement of trainer.stop.metric), or null "
        "for no patience rule",
        ge=1,
    )
    metric: str | None = setting(
        None, "the name of a periodic test metric (test/...), or null", min_length=1
    )
    mode: Literal["max", "min"] = setting("max", "max (a larger metric is better) or min")
    min_delta: float = setting(0.0, "a finite number >= 0 (the least improvement)", ge=0.0)

    @model_validator(mode="after")
    def _patience_needs_a_metric(self) -> StopSettings:
        if self.patience is not None and self.metric is None:
            raise SettingError(
                "metric",
                None,
                "trainer.stop.patience needs the metric to watch: set trainer.stop.metric to "
                "one of the model's periodic test metrics, e.g. test/elbo",
            )
        return self


class Stopper:
    """The state of the two rules of :class:`StopSettings` during one run.

    :meth:`after_step` and :meth:`after_evaluation` return the reason to stop
    (``"converged"``, ``"patience"``) or None; :attr:`message` then says why in a sentence.
    :meth:`state_dict` and :meth:`load_state_dict` carry the state through a checkpoint.
    """

    def __init__(self, settings: StopSettings) -> None:
        self.settings = settings
        self.steps = 0  # steps seen in the run (skipped non-finite steps are not seen)
        self.window_sum = 0.0
        self.window_count = 0
        self.window_beta: float | None = None
        self.previous_mean: float | None = None
        self.best: float | None = None
        self.evaluations_without_improvement = 0
        self.reason: str | None = None
        self.message = ""

    def after_step(self, loss: float, beta: float) -> str | None:
        """Counts one finite step's loss at this beta; ``"converged"`` when the rule holds."""
        self.steps += 1
        tol = self.settings.tol
        if tol is None:
            return None
        if beta != self.window_beta:  # another objective: compare nothing from before
            self.window_sum, self.window_count = 0.0, 0
            self.window_beta, self.previous_mean = beta, None
        self.window_sum += loss
        self.window_count += 1
        if self.window_count < self.settings.window:
            return None
        mean = self.window_sum / self.window_count
        previous, self.previous_mean = self.previous_mean, mean
        self.window_sum, self.window_count = 0.0, 0
        if previous is None or self.steps < self.settings.min_steps:
            return None
        change = abs(previous - mean) / abs(mean) if mean != 0 else abs(previous - mean)
        if change <= tol:
            self.reason = "converged"
            self.message = (
                f"converged after {self.steps} steps: the mean training loss of the last "
                f"{self.settings.window} steps, {mean:.6g}, changed by {change:.3g} relative to "
                f"the window before (trainer.stop.tol = {tol:g})"
            )
        return self.reason

    def after_evaluation(self, metrics: dict) -> str | None:
        """Compares the evaluation's ``metric`` with the best so far; ``"patience"`` when
        it has not improved for ``patience`` evaluations in a row.

        :raises KeyError: naming the metric and the ones the evaluation gave, if it is not
            among them (the trainer words it as a config error).
        """
        settings = self.settings
        if settings.patience is None:
            return None
        if settings.metric not in metrics:  # checked even once stopped: a typo never passes
            raise KeyError(settings.metric)
        if self.reason is not None:
            return self.reason
        value = float(metrics[settings.metric])
        sign = 1.0 if settings.mode == "max" else -1.0
        if not math.isfinite(value):
            improved = False
        elif self.best is None:
            improved = True
        else:
            improved = sign * (value - self.best) > settings.min_delta
        if improved:
            self.best, self.evaluations_without_improvement = value, 0
            return None
        self.evaluations_without_improvement += 1
        if self.evaluations_without_improvement >= settings.patience:
            self.reason = "patience"
            self.message = (
                f"stopped after {self.steps} steps: {settings.metric} has not improved on its "
                f"best, {self.best:.6g}, for {settings.patience} evaluations "
                f"(trainer.stop.patience; the last was {value:.6g})"
            )
        return self.reason

    _STATE = (
        "steps",
        "window_sum",
        "window_count",
        "window_beta",
        "previous_mean",
        "best",
        "evaluations_without_improvement",
        "reason",
        "message",
    )

    def state_dict(self) -> dict:
        """The rule's state, for the checkpoint: a resumed run stops where an uninterrupted one
        would."""
        return {name: getattr(self, name) for name in self._STATE}

    def load_state_dict(self, state: dict) -> None:
        """Restores the state of :meth:`state_dict`; raises ``KeyError`` naming what it lacks."""
        missing = [name for name in self._STATE if name not in state]
        if missing:
            raise KeyError(f"the stopping rule's state lacks {', '.join(missing)}")
        for name in self._STATE:
            setattr(self, name, state[name])

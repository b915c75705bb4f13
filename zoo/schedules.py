"""Schedules for the KL coefficient beta: pure functions of training progress.

Each schedule maps ``t``, the number of epochs elapsed (a float: ``epoch + step /
steps_per_epoch`` when stepped per iteration, the whole epoch index when stepped per
epoch), to beta. Warm-ups start at ``beta_min`` and reach 1 at ``t = warmup_epochs``.

The one exception is Blundell et al. (2015)'s minibatch weighting, which depends on the
position of the step inside its epoch rather than on elapsed time.

:func:`make_schedule` turns config values into a callable
``beta(epoch, step, steps_per_epoch) -> float`` for the trainer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

from zoo.schema import Settings, setting

Schedule = Callable[[int, int, int], float]


def constant(t: float, *, value: float = 1.0) -> float:
    """beta = ``value`` at every step (``value = 1`` is plain ELBO)."""
    return value


def linear(t: float, *, warmup_epochs: float, beta_min: float = 0.0) -> float:
    """Linear warm-up from ``beta_min`` at t = 0 to 1 at t = ``warmup_epochs`` (Bowman et al.
    2016), then 1."""
    if warmup_epochs <= 0:
        return 1.0
    return min(1.0, beta_min + (1.0 - beta_min) * t / warmup_epochs)


def sigmoid(
    t: float, *, warmup_epochs: float, beta_min: float = 0.0, steepness: float = 10.0
) -> float:
    """Logistic warm-up, rescaled to run exactly from ``beta_min`` at t = 0 to 1 at
    t = ``warmup_epochs``; larger ``steepness`` concentrates the rise around the midpoint."""
    if warmup_epochs <= 0 or t >= warmup_epochs:
        return 1.0
    u = max(t, 0.0) / warmup_epochs

    def logistic(v: float) -> float:
        return 1.0 / (1.0 + math.exp(-steepness * (v - 0.5)))

    low, high = logistic(0.0), logistic(1.0)
    return beta_min + (1.0 - beta_min) * (logistic(u) - low) / (high - low)


def cyclical(
    t: float, *, total_epochs: float, cycles: int = 4, ramp: float = 0.5, beta_min: float = 0.0
) -> float:
    """Cyclical annealing (Fu et al. 2019): ``cycles`` cycles over ``total_epochs``; in each,
    beta rises linearly from ``beta_min`` to 1 over the first ``ramp`` fraction of the cycle
    and stays at 1 for the rest."""
    # cycles elapsed; t % period would round some cycle starts to just below a whole period
    # (epoch 100 of 200 in 6 cycles), which then began at beta 1 instead of beta_min
    elapsed = t * cycles / total_epochs
    if math.isclose(elapsed, round(elapsed), rel_tol=0.0, abs_tol=1e-9):
        elapsed = float(round(elapsed))
    tau = elapsed - math.floor(elapsed)  # position inside the current cycle, in [0, 1)
    if tau >= ramp:
        return 1.0
    return beta_min + (1.0 - beta_min) * tau / ramp


def blundell(step: int, steps_per_epoch: int) -> float:
    """Minibatch KL weight of Blundell et al. (2015), pi_i = 2^(M-i) / (2^M - 1) for the i-th of
    M minibatches (i = 1..M), returned as ``M * pi_i``.

    The factor M is there because the zoo's per-step loss already weighs the data term by
    N / batch, i.e. each step is a whole-epoch ELBO estimate with the KL counted once; with
    ``beta = M * pi_i`` the M steps of an epoch weigh the KL by sum(pi_i) = 1 in total, as in
    the paper. Computed in log space, so M can be in the thousands without overflow.
    """
    m = steps_per_epoch
    i = step + 1
    # log(2^M - 1) = M log 2 + log1p(-2^-M)
    log_weight = math.log(m) - i * math.log(2.0) - math.log1p(-(2.0**-m))
    return math.exp(log_weight)


# The settings of each schedule (the ``anneal`` config group), keyed by name.


class ScheduleSettings(Settings):
    """The settings every schedule has (the ``anneal`` config group): its name, and whether beta
    moves per step or per epoch."""

    name: str = setting(..., "none, constant, linear, sigmoid, cyclical or blundell")
    per: Literal["step", "epoch"] = setting(
        "step", "step (beta moves every iteration) or epoch (held within an epoch)"
    )


BETA_MIN = setting(0.0, "a number in [0, 1]", ge=0.0, le=1.0)
WARMUP = setting(..., "a number of epochs >= 0", ge=0.0)


class NoneSettings(ScheduleSettings):
    """``anneal=none``: beta = 1 throughout, the plain ELBO."""

    name: Literal["none"] = "none"


class ConstantSettings(ScheduleSettings):
    """A fixed beta (:func:`constant`); ``anneal=tempered`` is beta = 0.1."""

    name: Literal["constant"] = "constant"
    #: beta at every step (1: the ELBO)
    value: float = setting(1.0, "a finite number >= 0", ge=0.0)


class LinearSettings(ScheduleSettings):
    """``anneal=linear``: the settings of :func:`linear`."""

    name: Literal["linear"] = "linear"
    #: epochs until beta reaches 1
    warmup_epochs: float = WARMUP
    #: beta at the start of the warm-up
    beta_min: float = BETA_MIN


class SigmoidSettings(LinearSettings):
    """``anneal=sigmoid``: the settings of :func:`sigmoid`."""

    name: Literal["sigmoid"] = "sigmoid"
    #: how sharply beta rises around the middle of the warm-up
    steepness: float = setting(10.0, "a finite number > 0", gt=0.0)


class CyclicalSettings(ScheduleSettings):
    """``anneal=cyclical``: the settings of :func:`cyclical`."""

    name: Literal["cyclical"] = "cyclical"
    #: the epochs over which the cycles are spread
    total_epochs: float = setting(..., "a number of epochs > 0", gt=0.0)
    #: the number of cycles
    cycles: int = setting(4, "an integer >= 1", ge=1)
    #: the fraction of each cycle over which beta rises to 1
    ramp: float = setting(0.5, "a number in (0, 1]", gt=0.0, le=1.0)
    #: beta at the start of each cycle
    beta_min: float = BETA_MIN


class BlundellSettings(ScheduleSettings):
    """``anneal=blundell``: the minibatch weights of :func:`blundell`, which take no settings."""

    name: Literal["blundell"] = "blundell"


SCHEDULES: dict[str, type[ScheduleSettings]] = {
    cls.model_fields["name"].default: cls
    for cls in (
        NoneSettings,
        ConstantSettings,
        LinearSettings,
        SigmoidSettings,
        CyclicalSettings,
        BlundellSettings,
    )
}
FUNCTIONS = {
    "none": constant,
    "constant": constant,
    "linear": linear,
    "sigmoid": sigmoid,
    "cyclical": cyclical,
}


def make_schedule(name: str, *, per: str = "step", **settings: float) -> Schedule:
    """Builds ``beta(epoch, step, steps_per_epoch)`` from a schedule's name and settings.

    :param str name: one of ``none``, ``constant``, ``linear``, ``sigmoid``, ``cyclical``,
        ``blundell``.
    :param str per: ``step`` to move beta every iteration, ``epoch`` to hold it fixed within
        an epoch.
    :param settings: the keyword arguments of the schedule function, checked by its
        settings class in :data:`SCHEDULES` (a ``ValueError`` names what is wrong).
    """
    if name not in SCHEDULES:
        raise ValueError(f"anneal.name {name!r} is not a schedule; valid: {', '.join(SCHEDULES)}")
    return schedule_from(SCHEDULES[name](name=name, per=per, **settings))


def schedule_from(settings: ScheduleSettings) -> Schedule:
    """The trainer's ``beta(epoch, step, steps_per_epoch)`` for validated settings."""
    if settings.name == "blundell":
        return lambda epoch, step, steps_per_epoch: blundell(step, steps_per_epoch)
    function = FUNCTIONS[settings.name]
    arguments = settings.model_dump(exclude={"name", "per"})
    per_step = settings.per == "step"

    def beta(epoch: int, step: int, steps_per_epoch: int) -> float:
        t = epoch + step / steps_per_epoch if per_step else float(epoch)
        return function(t, **arguments)

    return beta

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
    period = total_epochs / cycles
    tau = (t % period) / period  # position inside the current cycle, in [0, 1)
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


def make_schedule(name: str, *, per: str = "step", **settings: float) -> Schedule:
    """Builds ``beta(epoch, step, steps_per_epoch)`` from a schedule's name and settings.

    :param str name: one of ``none``, ``constant``, ``linear``, ``sigmoid``, ``cyclical``,
        ``blundell``.
    :param str per: ``step`` to move beta every iteration, ``epoch`` to hold it fixed within
        an epoch.
    :param settings: the keyword arguments of the schedule function.
    """
    if per not in ("step", "epoch"):
        raise ValueError(f"anneal.per must be 'step' or 'epoch', got {per!r}")
    if name == "blundell":
        return lambda epoch, step, steps_per_epoch: blundell(step, steps_per_epoch)
    functions = {
        "none": constant,
        "constant": constant,
        "linear": linear,
        "sigmoid": sigmoid,
        "cyclical": cyclical,
    }
    if name not in functions:
        raise ValueError(
            f"anneal.name {name!r} is not a schedule; valid: {', '.join(sorted(functions) + ['blundell'])}"
        )
    function = functions[name]
    function(0.0, **settings)  # fail now, not mid-run, on a wrong setting name

    def beta(epoch: int, step: int, steps_per_epoch: int) -> float:
        t = epoch + step / steps_per_epoch if per == "step" else float(epoch)
        return function(t, **settings)

    return beta

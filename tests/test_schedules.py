"""Schedule values at chosen steps."""

import math

import pytest

from zoo import schedules
from zoo.schedules import blundell, cyclical, linear, make_schedule, sigmoid


def test_linear_warmup_from_beta_min():
    assert linear(0, warmup_epochs=10, beta_min=0.1) == pytest.approx(0.1)
    assert linear(5, warmup_epochs=10, beta_min=0.1) == pytest.approx(0.55)
    assert linear(10, warmup_epochs=10, beta_min=0.1) == 1.0
    assert linear(25, warmup_epochs=10, beta_min=0.1) == 1.0
    assert linear(3, warmup_epochs=0) == 1.0


def test_sigmoid_runs_exactly_from_beta_min_to_one_and_is_symmetric():
    assert sigmoid(0, warmup_epochs=10, beta_min=0.2) == pytest.approx(0.2)
    assert sigmoid(5, warmup_epochs=10, beta_min=0.2) == pytest.approx(0.6)
    assert sigmoid(10, warmup_epochs=10, beta_min=0.2) == 1.0
    values = [sigmoid(t / 10, warmup_epochs=10) for t in range(101)]
    assert all(a < b for a, b in zip(values, values[1:]))
    # steeper: lower before the midpoint
    assert sigmoid(2, warmup_epochs=10, steepness=20) < sigmoid(2, warmup_epochs=10, steepness=5)


def test_cyclical_restarts_each_cycle():
    kwargs = dict(total_epochs=40, cycles=4, ramp=0.5)
    assert cyclical(0, **kwargs) == 0.0
    assert cyclical(2.5, **kwargs) == pytest.approx(0.5)  # halfway up the first ramp
    assert cyclical(5, **kwargs) == 1.0
    assert cyclical(9.99, **kwargs) == 1.0
    assert cyclical(10, **kwargs) == 0.0  # second cycle
    assert cyclical(32.5, **kwargs) == pytest.approx(0.5)
    assert cyclical(10, beta_min=0.1, **kwargs) == pytest.approx(0.1)


@pytest.mark.parametrize("m", [1, 2, 7, 100, 1000, 5000])
def test_blundell_weights_sum_to_one_over_an_epoch(m):
    weights = [blundell(i, m) / m for i in range(m)]  # pi_i
    assert math.fsum(weights) == pytest.approx(1.0, rel=1e-9)
    assert all(math.isfinite(w) and w >= 0 for w in weights)
    assert all(a >= b for a, b in zip(weights, weights[1:]))


def test_blundell_first_weights():
    # M = 3: pi = 4/7, 2/7, 1/7, returned times M
    assert [blundell(i, 3) for i in range(3)] == pytest.approx([12 / 7, 6 / 7, 3 / 7])


def test_make_schedule_per_step_moves_within_an_epoch_per_epoch_does_not():
    per_step = make_schedule("linear", per="step", warmup_epochs=2)
    per_epoch = make_schedule("linear", per="epoch", warmup_epochs=2)
    assert per_step(0, 5, 10) == pytest.approx(0.25)
    assert per_epoch(0, 5, 10) == 0.0
    assert per_epoch(1, 9, 10) == pytest.approx(0.5)
    assert per_step(3, 0, 10) == per_epoch(3, 0, 10) == 1.0


def test_make_schedule_none_is_one_and_blundell_uses_the_step():
    assert make_schedule("none")(4, 2, 10) == 1.0
    assert make_schedule("blundell")(0, 0, 3) == pytest.approx(12 / 7)


def test_make_schedule_refuses_unknown_names_and_settings():
    with pytest.raises(ValueError, match="valid: .*linear"):
        make_schedule("linearr")
    with pytest.raises(ValueError, match="warmup"):
        make_schedule("linear", warmup=3)
    with pytest.raises(ValueError, match="per"):
        make_schedule("linear", per="batch", warmup_epochs=1)


def test_schedules_are_pure():
    # a schedule that kept state (a step counter, a cache) would give other values when
    # called in another order; the trainer calls it again at the same step after a resume
    beta = make_schedule("sigmoid", warmup_epochs=7)
    points = [(epoch, step, 10) for epoch in range(9) for step in range(0, 10, 3)]
    forward = [beta(*p) for p in points]
    backward = [beta(*p) for p in reversed(points)][::-1]
    assert forward == backward
    assert forward[0] == 0.0 and forward[-1] == 1.0
    assert forward == sorted(forward) and len(set(forward)) > len(points) // 2
    assert schedules.sigmoid(3.5, warmup_epochs=7) == pytest.approx(0.5)  # the midpoint

"""The schedules' default settings, by hand: what a caller gets when it names only the
required ones (mutation testing found that no test noticed a changed default)."""

import math

import pytest

from zoo.schedules import cyclical, linear, make_schedule, sigmoid


def test_linear_starts_at_zero_by_default():
    assert linear(0, warmup_epochs=10) == 0.0
    assert linear(2.5, warmup_epochs=10) == pytest.approx(0.25)


def test_sigmoid_has_steepness_ten_by_default():
    def logistic(v):
        return 1 / (1 + math.exp(-10 * (v - 0.5)))

    by_hand = (logistic(0.2) - logistic(0.0)) / (logistic(1.0) - logistic(0.0))
    assert sigmoid(2, warmup_epochs=10) == pytest.approx(by_hand, rel=1e-12)
    assert by_hand == pytest.approx(0.0413, abs=1e-4)  # steepness 11 gives 0.0318


def test_cyclical_has_four_cycles_with_a_ramp_of_half_a_cycle_by_default():
    # 40 epochs, 4 cycles of 10: up over 5 epochs, then flat at 1
    assert cyclical(2.5, total_epochs=40) == pytest.approx(0.5)
    assert cyclical(7, total_epochs=40) == 1.0
    assert cyclical(12.5, total_epochs=40) == pytest.approx(0.5)


def test_an_unknown_schedule_is_refused_with_the_valid_names():
    with pytest.raises(
        ValueError, match="valid: none, constant, linear, sigmoid, cyclical, blundell$"
    ):
        make_schedule("linearr")

"""Properties of the beta schedules over their whole input space (hypothesis): bounds,
endpoints, monotone warm-ups, the cycles of cyclical annealing, Blundell's weights, and how
:func:`zoo.schedules.make_schedule` maps (epoch, step) to elapsed time."""

import math
from fractions import Fraction

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from zoo.schedules import blundell, cyclical, linear, make_schedule, sigmoid

EXAMPLES = settings(max_examples=60)
beta_mins = st.floats(0.0, 1.0)
warmups = st.floats(0.01, 1e4)
times = st.floats(0.0, 2e4)
steepnesses = st.floats(0.1, 50.0)
WARMUPS = {"linear": linear, "sigmoid": sigmoid}


def warmup(name, t, warmup_epochs, beta_min, steepness):
    extra = {"steepness": steepness} if name == "sigmoid" else {}
    return WARMUPS[name](t, warmup_epochs=warmup_epochs, beta_min=beta_min, **extra)


@pytest.mark.parametrize("name", WARMUPS)
@EXAMPLES
@given(w=warmups, beta_min=beta_mins, steepness=steepnesses, t1=times, t2=times)
def test_warmups_rise_monotonically_from_beta_min_to_one(name, w, beta_min, steepness, t1, t2):
    low, high = sorted((t1, t2))
    a, b = (warmup(name, t, w, beta_min, steepness) for t in (low, high))
    assert beta_min - 1e-12 <= a <= b <= 1.0
    assert warmup(name, 0.0, w, beta_min, steepness) == pytest.approx(beta_min, abs=1e-12)
    # linear's beta_min + (1 - beta_min) * 1 may round one ulp below 1 at t = w exactly
    assert warmup(name, w, w, beta_min, steepness) == pytest.approx(1.0, abs=1e-15)
    assert warmup(name, 1.001 * w + high, w, beta_min, steepness) == 1.0


@pytest.mark.parametrize("name", WARMUPS)
@EXAMPLES
@given(w=warmups, beta_min=st.floats(0.0, 0.9), steepness=steepnesses, u=st.floats(0.0, 0.99))
def test_warmups_stay_below_one_before_the_end_of_the_warm_up(name, w, beta_min, steepness, u):
    assert warmup(name, u * w, w, beta_min, steepness) < 1.0


@EXAMPLES
@given(w=warmups, beta_min=beta_mins, u=st.floats(0.0, 1.0))
def test_linear_is_the_straight_line_between_its_endpoints(w, beta_min, u):
    assert linear(u * w, warmup_epochs=w, beta_min=beta_min) == pytest.approx(
        beta_min + (1 - beta_min) * u, abs=1e-9
    )


@EXAMPLES
@given(w=warmups, beta_min=beta_mins, steepness=steepnesses, u=st.floats(0.0, 1.0))
def test_sigmoid_is_symmetric_about_the_midpoint_of_the_warm_up(w, beta_min, steepness, u):
    # the logistic rescaled to [beta_min, 1]: beta(u) + beta(1 - u) = beta_min + 1
    a = sigmoid(u * w, warmup_epochs=w, beta_min=beta_min, steepness=steepness)
    b = sigmoid((1 - u) * w, warmup_epochs=w, beta_min=beta_min, steepness=steepness)
    assert a + b == pytest.approx(1 + beta_min, abs=1e-6)


cycle_settings = st.fixed_dictionaries(
    {
        "total_epochs": st.floats(1.0, 1e3),
        "cycles": st.integers(1, 10),
        "ramp": st.floats(0.05, 1.0),
        "beta_min": beta_mins,
    }
)


@EXAMPLES
# u > 0: the start of a cycle is tested exactly below
@given(kwargs=cycle_settings, cycle=st.integers(0, 9), u=st.floats(0.001, 0.999))
def test_cyclical_repeats_a_ramp_from_beta_min_to_one(kwargs, cycle, u):
    period = kwargs["total_epochs"] / kwargs["cycles"]
    beta = cyclical((cycle + u) * period, **kwargs)
    assert kwargs["beta_min"] - 1e-9 <= beta <= 1.0
    # the same position in the first cycle gives the same beta (up to rounding of t % period)
    assert beta == pytest.approx(cyclical(u * period, **kwargs), abs=1e-6) or math.isclose(
        u, kwargs["ramp"], abs_tol=1e-6
    )
    if u >= kwargs["ramp"] + 1e-6:
        assert beta == 1.0


# t % period rounded the start of a cycle to just below a period (epoch 100 of 200 in 6
# cycles: 100 % (200 / 6) = 33.33...), so that cycle started at beta 1 instead of beta_min
@pytest.mark.parametrize("total_epochs, cycles, epoch", [(200, 6, 100), (100, 7, 5 * 100 / 7)])
def test_cyclical_starts_every_cycle_at_beta_min(total_epochs, cycles, epoch):
    assert cyclical(epoch, total_epochs=total_epochs, cycles=cycles, ramp=0.5) == 0.0


@EXAMPLES
@given(kwargs=cycle_settings, u1=st.floats(0.0, 0.999), u2=st.floats(0.0, 0.999))
def test_cyclical_rises_within_a_cycle(kwargs, u1, u2):
    period = kwargs["total_epochs"] / kwargs["cycles"]
    low, high = sorted((u1, u2))
    assert cyclical(low * period, **kwargs) <= cyclical(high * period, **kwargs) + 1e-12


@settings(max_examples=30)
@given(m=st.integers(1, 60))
def test_blundell_is_m_times_two_to_the_m_minus_i_over_two_to_the_m_minus_one(m):
    exact = [m * Fraction(2 ** (m - i), 2**m - 1) for i in range(1, m + 1)]
    assert [blundell(i - 1, m) for i in range(1, m + 1)] == pytest.approx(
        [float(v) for v in exact], rel=1e-12
    )


@EXAMPLES
@given(
    epoch=st.integers(0, 50),
    step=st.integers(0, 999),
    steps=st.integers(1, 1000),
    w=st.floats(0.5, 100.0),
    beta_min=beta_mins,
)
def test_make_schedule_maps_the_step_to_elapsed_epochs(epoch, step, steps, w, beta_min):
    assume(step < steps)
    per_step = make_schedule("linear", per="step", warmup_epochs=w, beta_min=beta_min)
    per_epoch = make_schedule("linear", per="epoch", warmup_epochs=w, beta_min=beta_min)
    expected = linear(epoch + step / steps, warmup_epochs=w, beta_min=beta_min)
    assert per_step(epoch, step, steps) == pytest.approx(expected, abs=1e-12)
    assert per_epoch(epoch, step, steps) == linear(epoch, warmup_epochs=w, beta_min=beta_min)

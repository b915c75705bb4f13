"""The importance-weighted log p(x) does not depend on how its K samples are chunked.

``importance_log_likelihood`` draws K samples ``chunk_size`` at a time; the final evaluation
does produce unequal chunks (694 and a last one of 142 on the digits). Combining them as an
average of per-chunk estimates is biased, and passed every test before these. The expected
value is computed by hand from the draws the guide made, ``log (1/K) sum_k w_k`` over all K,
so the comparison holds for any chunking however torch batches its random numbers.
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Normal

from zoo.metrics import importance_log_likelihood

X = torch.tensor([0.4, -1.3, 2.0])


def model(x):
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def recording_guide(draws: list):
    """q(z_i | x_i) = N(0.3 x_i, 0.8^2), a poor guide so that the weights vary; every draw
    of z, (k, N) per chunk, is appended to ``draws``."""

    def guide(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(0.3 * x, 0.8))
        draws.append(z.detach().reshape(-1, len(x)))

    return guide


def log_likelihood_by_hand(z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log (1/K) sum_k p(x, z_k) / q(z_k | x) over the K draws ``z`` (K, N)."""
    log_w = (
        Normal(0.0, 1.0).log_prob(z) + Normal(z, 1.0).log_prob(x) - Normal(0.3 * x, 0.8).log_prob(z)
    )
    return torch.logsumexp(log_w, 0) - math.log(len(z))


def estimate_and_hand_value(num_samples: int, chunk_size: int):
    draws: list = []
    estimate = importance_log_likelihood(
        model, recording_guide(draws), X, num_samples=num_samples, chunk_size=chunk_size
    )
    z = torch.cat(draws)
    assert z.shape == (num_samples, len(X))
    return estimate, log_likelihood_by_hand(z, X)


@pytest.mark.parametrize("num_samples, chunk_size", [(7, 5), (836, 694), (10, 3), (4, 4)])
def test_unequal_chunks_equal_one_big_chunk(num_samples, chunk_size):
    estimate, by_hand = estimate_and_hand_value(num_samples, chunk_size)
    torch.testing.assert_close(estimate, by_hand, rtol=1e-5, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(num_samples=st.integers(1, 60), chunk_size=st.integers(1, 70), seed=st.integers(0, 2**16))
def test_any_chunking_gives_the_estimate_of_all_samples_at_once(num_samples, chunk_size, seed):
    pyro.set_rng_seed(seed)
    estimate, by_hand = estimate_and_hand_value(num_samples, chunk_size)
    torch.testing.assert_close(estimate, by_hand, rtol=1e-5, atol=1e-5)

"""The BNN's scale-mixture prior has sigma_k = exp(-neg_log_sigma_k) from the config.

A prior built with sigma2 = e^6 instead of e^-6 once passed every test. The log density of a
weight site is compared with the mixture computed by hand at chosen weights, for the values of
the config file and for overridden ones.
"""

import math

import pytest
import torch
from omegaconf import OmegaConf
from pyro import poutine

from zoo.__main__ import config_dir
from zoo.models import BNN

PRIOR_KEYS = ("mixture_pi", "neg_log_sigma1", "neg_log_sigma2")

# the first layer's weight is (hidden, 1) = (4, 1): one value from each region of the mixture
WEIGHTS = torch.tensor([[0.0], [2e-3], [0.3], [-1.7]])


def mixture_log_density_by_hand(w: float, pi: float, sigma1: float, sigma2: float) -> float:
    def normal(v, sigma):
        return math.exp(-(v**2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))

    return math.log(pi * normal(w, sigma1) + (1 - pi) * normal(w, sigma2))


def first_layer_log_prior(bnn: BNN) -> float:
    trace = poutine.trace(bnn.model).get_trace(torch.zeros(2, 1), torch.zeros(2))
    return trace.nodes["layers.0.weight"]["fn"].log_prob(WEIGHTS).item()


def config_file_prior() -> dict:
    """The prior's values in conf/model/bnn.yaml, the defaults of every BNN run."""
    model = OmegaConf.load(f"{config_dir()}/model/bnn.yaml").model
    return {key: model[key] for key in PRIOR_KEYS}


@pytest.mark.parametrize(
    "prior",
    [None, {"mixture_pi": 0.25, "neg_log_sigma1": 1.5, "neg_log_sigma2": 7.0}],
    ids=["config file", "overridden"],
)
def test_the_prior_sigmas_are_exp_of_minus_the_configured_values(prior):
    prior = prior or config_file_prior()
    bnn = BNN(1, 1, likelihood="normal", hidden_dims=[4], prior="scale_mixture", **prior)
    pi = prior["mixture_pi"]
    sigma1, sigma2 = math.exp(-prior["neg_log_sigma1"]), math.exp(-prior["neg_log_sigma2"])
    assert sigma2 < 0.01  # Blundell et al.'s narrow component in both cases

    expected = sum(
        mixture_log_density_by_hand(w, pi, sigma1, sigma2) for w in WEIGHTS.flatten().tolist()
    )
    assert first_layer_log_prior(bnn) == pytest.approx(expected, rel=1e-6)


def test_a_gaussian_prior_has_the_configured_sigma():
    bnn = BNN(1, 1, likelihood="normal", hidden_dims=[4], prior="gaussian", prior_sigma=0.4)
    expected = sum(
        -(w**2) / (2 * 0.4**2) - math.log(0.4 * math.sqrt(2 * math.pi))
        for w in WEIGHTS.flatten().tolist()
    )
    assert first_layer_log_prior(bnn) == pytest.approx(expected, rel=1e-6)


def layer_prior_scales(bnn: BNN, x: torch.Tensor) -> dict[str, float]:
    trace = poutine.trace(bnn.model).get_trace(x, torch.zeros(len(x)))
    return {
        name: site["fn"].base_dist.scale.unique().item()
        for name, site in trace.nodes.items()
        if name.startswith("layers.")
    }


def test_the_fan_in_rule_gives_each_layer_sigma_times_sqrt_two_over_its_inputs():
    """prior_scale=fan_in: s = prior_sigma * sqrt(2 / fan-in), per layer, weights and biases."""
    bnn = BNN(6, 1, likelihood="normal", hidden_dims=[3], prior="gaussian",
              prior_sigma=0.5, prior_scale="fan_in")
    scales = layer_prior_scales(bnn, torch.zeros(2, 6))
    for layer, fan_in in [(0, 6), (1, 3)]:
        for part in ("weight", "bias"):
            assert scales[f"layers.{layer}.{part}"] == pytest.approx(0.5 * math.sqrt(2 / fan_in))


def test_the_fixed_rule_gives_every_layer_prior_sigma():
    bnn = BNN(6, 1, likelihood="normal", hidden_dims=[3], prior="gaussian", prior_sigma=0.5)
    assert set(layer_prior_scales(bnn, torch.zeros(2, 6)).values()) == {0.5}

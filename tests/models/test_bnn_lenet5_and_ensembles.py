"""The convolutional BNN (LeNet-5), deep ensembles, and the out-of-distribution metrics.

Each behaviour is checked against a computation by hand: the layer shapes of LeNet-5, the
fan-in of a convolution's initial weights, an ensemble's loss as the sum of its members' MAP
losses and its predictive as the mean of their softmaxes, the mutual information of the
predictive, and the resizing of the 8x8 digits into 28x28 out-of-distribution images.
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F
from pyro import poutine

from zoo.data import load_dataset
from zoo.data.base import Dataset
from zoo.handlers import FlipoutMessenger, LocalReparameterizationMessenger
from zoo.models import BNN
from zoo.models.bnn import BNNEvaluation, BNNSettings, resize_images
from zoo.schema import SettingError


def images(n=24, side=28, classes=10, seed=0):
    """A labelled set of random ``side`` x ``side`` images, flat, in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(2 * n, side * side, generator=generator)
    y = torch.randint(classes, (2 * n,), generator=generator)
    return Dataset("tiny", "image", x[:n], y[:n], x[n:], y[n:], (side, side), classes, "test")


def site_shapes(bnn, data):
    x = data.train_x[:2]
    trace = poutine.trace(bnn.model).get_trace(x, data.train_y[:2])
    return {
        name: tuple(site["value"].shape)
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and not site["is_observed"] and name.startswith("layers")
    }


@pytest.mark.parametrize("side, flat", [(28, 120 * 7 * 7), (8, 120 * 2 * 2)])
def test_lenet5_has_the_layers_of_uncertainty_baselines(side, flat):
    """5x5 "same" convolutions 1 -> 6 -> 16 -> 120 with 2x2 pools after the first two
    (28 -> 14 -> 7), then the dense layers: 120 * 7 * 7 -> 84 -> 10."""
    bnn = BNN.build(images(side=side), architecture="lenet5", hidden_dims=[84], guide="map")
    assert site_shapes(bnn, images(side=side)) == {
        "layers.0.weight": (6, 1, 5, 5), "layers.0.bias": (6,),
        "layers.1.weight": (16, 6, 5, 5), "layers.1.bias": (16,),
        "layers.2.weight": (120, 16, 5, 5), "layers.2.bias": (120,),
        "layers.3.weight": (84, flat), "layers.3.bias": (84,),
        "layers.4.weight": (10, 84), "layers.4.bias": (10,),
    }


def test_a_convolutions_initial_weights_use_its_fan_in_of_channels_times_kernel():
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = in_channels * 5 * 5 (150 for the
    second convolution), not the kernel width 5 (the last dimension of the weight)."""
    pyro.set_rng_seed(0)
    bnn = BNN.build(images(), architecture="lenet5", hidden_dims=[84], guide="bbb")
    loc = bnn.approximation.median()["layers.1.weight"]
    bound = 1 / math.sqrt(6 * 25)
    assert loc.abs().max().item() <= bound
    assert loc.abs().max().item() > 0.95 * bound  # 2400 uniform draws reach near the bound


def test_bayes_by_backprop_uses_flipout_for_convolutions_and_local_reparameterization_for_dense():
    bbb = BNN.build(images(), architecture="lenet5", hidden_dims=[84], guide="bbb")
    assert {type(h) for h in bbb._handlers} == {FlipoutMessenger, LocalReparameterizationMessenger}
    shared = BNN.build(images(), architecture="lenet5", hidden_dims=[84], flipout=False)
    assert {type(h) for h in shared._handlers} == {LocalReparameterizationMessenger}
    assert BNN.build(images(), architecture="lenet5", hidden_dims=[84], guide="map")._handlers == []


def test_flipout_draws_each_examples_convolution_noise_apart():
    """With flipout two copies of one image in a minibatch get different outputs; with one
    shared weight draw (flipout=false, dense layers without local reparameterization) the same."""
    data = images()
    x = data.train_x[:1].expand(2, -1)
    for flip, differ in [(True, True), (False, False)]:
        bnn = BNN.build(data, architecture="lenet5", hidden_dims=[84], flipout=flip,
                        local_reparameterization=False, init_rho=[-1.0, -1.0])
        trace = poutine.trace(bnn.guide).get_trace(x, data.train_y[:2])
        with bnn._reparameterization():
            out = poutine.replay(bnn.network, trace=trace)(x)
        assert (not torch.allclose(out[0], out[1])) is differ


def test_an_ensembles_loss_is_the_sum_of_its_members_map_losses():
    """-sum_m [ (N / b) sum_i log softmax(f_m(x_i))[y_i] + log p(w_m) ]: each member is a MAP
    network trained as if alone."""
    data = images(n=12, side=8)
    bnn = BNN.build(data, guide="ensemble", ensemble_size=3, hidden_dims=[5], prior="gaussian")
    x, y, size = data.train_x[:4], data.train_y[:4], 40
    loss = pyro.infer.Trace_ELBO().loss(bnn.model, bnn.guide, x, y, size=size)

    weights = bnn.approximation.median()
    by_hand = 0.0
    for m in range(3):
        w = [weights[f"members.{m}.{i}.{part}"] for i in range(2) for part in ("weight", "bias")]
        logits = F.linear(F.relu(F.linear(x, w[0], w[1])), w[2], w[3])
        log_lik = F.log_softmax(logits, -1).gather(-1, y[:, None]).sum()
        log_prior = sum(dist.Normal(0.0, 1.0).log_prob(t).sum() for t in w)
        by_hand -= (size / len(x)) * log_lik + log_prior
    assert loss == pytest.approx(by_hand.item(), rel=1e-5)


def test_an_ensembles_predictive_is_the_mean_of_its_members_softmaxes():
    """NLL of mean_m softmax(f_m(x)), and its mutual information
    H[mean_m p_m] - mean_m H[p_m], by hand from the members' outputs."""
    data = images(n=12, side=8)
    bnn = BNN.build(data, guide="ensemble", ensemble_size=2, hidden_dims=[5])
    metrics = bnn.evaluate(data, num_samples=100, ood=[])

    weights = bnn.approximation.median()
    probs = []
    for m in range(2):
        w = [weights[f"members.{m}.{i}.{part}"] for i in range(2) for part in ("weight", "bias")]
        probs.append(F.softmax(F.linear(F.relu(F.linear(data.test_x, w[0], w[1])), w[2], w[3]), -1))
    mean = (probs[0] + probs[1]) / 2
    nll = -mean.gather(-1, data.test_y[:, None]).log().mean()
    entropy = lambda p: -(p * p.log()).sum(-1)  # noqa: E731
    information = entropy(mean) - (entropy(probs[0]) + entropy(probs[1])) / 2
    assert metrics["test/nll"] == pytest.approx(nll.item(), rel=1e-5)
    assert metrics["test/mutual_information"] == pytest.approx(information.mean().item(), rel=1e-4)
    assert metrics["test/mutual_information"] > 0  # two different networks disagree


def test_one_network_has_no_mutual_information_and_its_mi_auroc_is_chance():
    data = images(n=12, side=8)
    metrics = BNN.build(data, guide="map", hidden_dims=[5]).evaluate(data, ood=["noise"], ood_size=30)
    assert metrics["test/mutual_information"] == 0.0
    assert metrics["test/ood/noise/mutual_information"] == 0.0
    assert metrics["test/ood/noise/auroc_mi"] == 0.5  # all ties


def test_digits_are_resized_into_the_models_images_for_out_of_distribution():
    """Bilinear resizing keeps a constant image constant and a left-right split in place."""
    half = torch.cat([torch.zeros(8, 4), torch.ones(8, 4)], 1).flatten()[None]
    resized = resize_images(torch.cat([torch.full((1, 64), 0.3), half]), (8, 8), (28, 28))
    assert resized.shape == (2, 784)
    assert torch.allclose(resized[0], torch.tensor(0.3))
    image = resized[1].view(28, 28)
    assert (image[:, :12] == 0).all() and torch.allclose(image[:, 16:], torch.tensor(1.0))

    data = images(n=12)
    bnn = BNN.build(data, guide="map", hidden_dims=[5])
    metrics = bnn.evaluate(data, ood=["noise", "digits"], ood_size=40)
    digits = resize_images(load_dataset("digits").test_x[:40], (8, 8), (28, 28))
    entropies = bnn._last_evaluation["entropies"]
    assert list(entropies) == ["test", "noise", "digits"]
    guide_trace = poutine.trace(bnn.guide).get_trace(digits[:1], torch.zeros(1, dtype=torch.long))
    probs = F.softmax(poutine.replay(bnn.network, trace=guide_trace)(digits), -1).detach()
    assert entropies["digits"] == pytest.approx(-(probs * probs.log()).sum(-1), rel=1e-4)
    assert metrics["test/ood/digits/entropy"] == pytest.approx(entropies["digits"].mean().item())


@pytest.mark.parametrize(
    "settings, key, message",
    [
        ({"guide": "map", "ensemble_size": 3}, "ensemble_size", "needs guide=ensemble"),
        ({"guide": "ensemble", "ensemble_size": 1}, "ensemble_size", "greater than or equal to 2"),
        ({"flipout": True}, "flipout", "needs architecture=lenet5"),
        ({"guide": "map", "architecture": "lenet5", "flipout": True}, "flipout", "needs guide=bbb"),
        ({"evaluation": {"ood": ["noise", "noise"]}}, "evaluation.ood", "names a set twice"),
        ({"evaluation": {"ood": ["svhn"]}}, "evaluation.ood", "'svhn' is not an out-of-distribution set"),
    ],
)
def test_bnn_settings_refuse(settings, key, message):
    with pytest.raises((SettingError, ValueError)) as error:
        BNNSettings(**settings)
    assert key.split(".")[-1] in str(error.value) and message in str(error.value)


def test_ood_may_be_one_name_or_null():
    assert BNNEvaluation(ood="digits").ood == ["digits"]
    assert BNNEvaluation(ood=None).ood == []


def test_lenet5_refuses_data_that_are_not_images():
    problem = BNNSettings(architecture="lenet5").data_problem(load_dataset("toy_regression"))
    assert "architecture=lenet5 needs images" in problem and "toy_regression" in problem


def test_the_training_data_set_is_no_out_of_distribution_set():
    data = load_dataset("digits")
    metrics = BNN.build(data, guide="map", hidden_dims=[5]).evaluate(data, ood=["noise", "digits"])
    assert "test/ood/noise/auroc_entropy" in metrics
    assert not any(key.startswith("test/ood/digits/") for key in metrics)

"""The flipout handler against the distribution of per-example weight draws, computed exactly."""

import doctest
import math
from functools import partial

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F
from pyro import poutine
from pyro.nn import PyroModule, PyroSample

from zoo.guides import BayesByBackprop
from zoo.handlers import (
    FlipoutMessenger,
    LocalReparameterizationMessenger,
    conv2d,
    flipout,
    linear,
)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny tensors: a second thread only adds synchronization, which costs milliseconds a
    call on a machine shared with other processes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def normal_weights(w_shape, b_shape=None):
    """A layer's weight (and bias) distributions: random means, weight scales in [0.2, 0.5]
    and bias scales in [1, 2], so that the bias has a good part of the output's variance."""
    w = dist.Normal(torch.randn(w_shape), 0.2 + 0.3 * torch.rand(w_shape))
    b = None if b_shape is None else dist.Normal(torch.randn(b_shape), 1 + torch.rand(b_shape))
    return w, b


def sampled_layer(op, q_w, q_b, **options):
    """x -> op(x, w, b) with w ~ q_w and b ~ q_b drawn at sample sites."""

    def layer(x):
        w = pyro.sample("w", q_w.to_event(q_w.loc.dim()))
        b = None if q_b is None else pyro.sample("b", q_b.to_event(1))
        return op(x, w, b, **options)

    return layer


# ---- outside the handler, or without a Normal weight: the plain op -----------------------


def test_conv2d_is_f_conv2d_bit_for_bit_outside_the_handler():
    x, w, b = torch.randn(3, 4, 7, 7), torch.randn(6, 2, 3, 3), torch.randn(6)
    options = dict(stride=2, padding=1, dilation=2, groups=2)
    expected = F.conv2d(x, w, b, **options)
    assert torch.equal(conv2d(x, w, b, **options), expected)
    with poutine.trace():  # inside some other handler: Pyro's stack runs, the value is the same
        assert torch.equal(conv2d(x, w, bias=b, **options), expected)


@pytest.mark.parametrize("op,plain", [(conv2d, F.conv2d), (linear, F.linear)])
def test_a_weight_that_is_no_normal_draw_gives_the_plain_op(op, plain):
    x = torch.randn(3, 2, 5, 5) if op is conv2d else torch.randn(3, 2)
    shape = (4, 2, 3, 3) if op is conv2d else (4, 2)
    w, b = torch.randn(shape), torch.randn(4)
    outside = pyro.sample("outside", dist.Normal(w, 1.0).to_event(len(shape)))
    with FlipoutMessenger(linear=True):
        delta = pyro.sample("delta", dist.Delta(w, event_dim=len(shape)))
        normal_bias = pyro.sample("normal_bias", dist.Normal(b, 1.0).to_event(1))
        assert torch.equal(op(x, w, b), plain(x, w, b))  # a plain tensor
        assert torch.equal(op(x, delta, b), plain(x, delta, b))
        assert torch.equal(op(x, outside, b), plain(x, outside, b))  # drawn outside
        # a Normal bias does not make the layer stochastic when its weight is fixed
        assert torch.equal(op(x, w, normal_bias), plain(x, w, normal_bias))


def test_only_the_latest_draw_of_a_site_counts():
    """A tensor once drawn at a site is plain once the site is drawn again, from a Normal or
    from anything else."""
    x, w = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 3, 3)
    with flipout():
        for redraw in (dist.Normal(w, 1.0), dist.Delta(w)):
            first = pyro.sample("w", dist.Normal(w, 1.0).to_event(4))
            pyro.sample("w", redraw.to_event(4))
            assert torch.equal(conv2d(x, first), F.conv2d(x, first))


def test_linear_is_left_alone_unless_asked():
    x, (q_w, q_b) = torch.ones(6, 3), normal_weights((2, 3), (2,))
    layer = sampled_layer(linear, q_w, q_b)
    with poutine.trace() as tracer, flipout():
        y = layer(x)
    w, b = (tracer.trace.nodes[name]["value"] for name in ("w", "b"))
    assert torch.equal(y, F.linear(x, w, b))
    with flipout(linear=True):
        y = layer(x)
    assert not torch.allclose(y[0], y[1:])  # the same input row, each with its own noise


def test_linear_must_be_a_bool():
    with pytest.raises(TypeError, match="linear must be True or False"):
        FlipoutMessenger(linear="yes")


# ---- the distribution of the output -------------------------------------------------------

CASES = {
    "conv2d": (conv2d, (2, 2, 4, 4), (2, 2, 3, 3), dict(padding=1)),
    "conv2d, strided and grouped": (
        conv2d,
        (2, 2, 5, 5),
        (4, 1, 3, 3),
        dict(stride=2, padding=1, groups=2),
    ),
    "linear": (linear, (2, 3), (2, 3), {}),
}


def exact_moments(op, x, q_w, q_b, options):
    """Mean and covariance of the flattened batch output when every example draws its own
    weights: the output is linear in them, so cov = J diag(sigma^2) J^T per example, and
    examples are independent."""
    params = torch.cat([q_w.loc.flatten(), q_b.loc])
    variances = torch.cat([q_w.scale.flatten(), q_b.scale]) ** 2
    n_w = q_w.loc.numel()

    def one_example(x_n, theta):
        return op(x_n[None], theta[:n_w].view_as(q_w.loc), theta[n_w:], **options).flatten()

    means, blocks = [], []
    for x_n in x:
        jacobian = torch.autograd.functional.jacobian(partial(one_example, x_n), params)
        means.append(one_example(x_n, params))
        blocks.append(jacobian @ torch.diag(variances) @ jacobian.T)
    return torch.cat(means), torch.block_diag(*blocks)


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_the_output_has_the_mean_and_covariance_of_per_example_weight_draws(case):
    """Flipout's examples share one draw, yet the batch output's first two moments are those
    of independent draws per example: the right covariance within an example (across
    channels and positions, bias included), none between examples."""
    op, x_shape, w_shape, options = CASES[case]
    x = torch.randn(x_shape)
    q_w, q_b = normal_weights(w_shape, (w_shape[0],))
    layer = sampled_layer(op, q_w, q_b, **options)
    draws = 2000
    with flipout(linear=True):
        outputs = torch.stack([layer(x).flatten() for _ in range(draws)])  # (S, B * out)
    mean, covariance = exact_moments(op, x, q_w, q_b, options)
    variance = covariance.diagonal()
    # 5 standard errors of a mean, and of a covariance estimate (as for Normal draws)
    assert ((outputs.mean(0) - mean).abs() < 5 * (variance / draws).sqrt()).all()
    sample_covariance = outputs.T.cov()
    standard_error = ((variance[:, None] * variance[None, :] + covariance**2) / draws).sqrt()
    assert ((sample_covariance - covariance).abs() < 5 * standard_error).all()


# ---- decorrelation: the signs ---------------------------------------------------------------


def perturbations_of_one_image_repeated(in_channels, out_channels, batch=16):
    """y - mean for ``batch`` copies of one image through a Bayesian conv (no bias)."""
    q_w, _ = normal_weights((out_channels, in_channels, 3, 3))
    x = torch.randn(1, in_channels, 5, 5).expand(batch, -1, -1, -1)
    layer = sampled_layer(conv2d, q_w, None, padding=1)
    with flipout():
        flipped = layer(x)
    shared = layer(x)  # without the handler: one draw, the same output for every copy
    assert torch.equal(shared[0].expand_as(shared), shared)
    return flipped - F.conv2d(x, q_w.loc, padding=1)


def test_copies_of_one_input_get_their_own_input_signs():
    """One output channel: copies differ by more than a sign only through s, when it flips
    input channels of one copy and not of the other (not one sign per example)."""
    magnitudes = perturbations_of_one_image_repeated(in_channels=4, out_channels=1).abs()
    assert not torch.allclose(magnitudes[0].expand_as(magnitudes), magnitudes)


def test_copies_of_one_input_get_their_own_output_signs():
    """One input channel: each copy's perturbation is the first copy's times one sign per
    output channel, shared over space (so the layer's weight is still one kernel per copy),
    and the signs differ across channels (not one sign per example)."""
    perturbation = perturbations_of_one_image_repeated(in_channels=1, out_channels=4)
    ratio = perturbation / perturbation[:1]  # (B, C_out, H, W)
    signs = ratio[..., :1, :1]
    assert torch.allclose(ratio, signs.expand_as(ratio)) and (signs.abs() - 1).abs().max() < 1e-5
    assert (signs != signs[:, :1]).any()


def test_the_perturbation_is_the_guides_draw_with_its_signs_flipped():
    """One input and one output channel, one example: the output is the convolution at
    ``mu + s r (W - mu)`` with bias ``mu_b + r (b - mu_b)``, W and b the guide's very draw,
    each sign combination in turn; the guide's mean, not the prior's, is the centre though
    the model replays the guide's draw."""
    net = TinyConvNet(in_channels=1, out_channels=1)
    guide = BayesByBackprop(net)
    x, y = torch.randn(1, 1, 5, 5), torch.zeros(1)
    seen = set()
    for _ in range(40):
        with flipout():
            guide_trace = poutine.trace(guide).get_trace(x, y)
            model_trace = poutine.trace(poutine.replay(net, trace=guide_trace)).get_trace(x, y)
        w, b = (guide_trace.nodes[f"conv.{name}"]["value"] for name in ("weight", "bias"))
        mu_w, mu_b = guide.locs.conv.weight, guide.locs.conv.bias
        features = model_trace.nodes["_RETURN"]["value"]["features"]
        signs = [
            (sr, r)
            for sr in (1, -1)
            for r in (1, -1)
            if torch.allclose(
                features,
                F.conv2d(x, mu_w + sr * (w - mu_w), mu_b + r * (b - mu_b), padding=1),
                atol=1e-5,
            )
        ]
        assert len(signs) == 1
        seen.update(signs)
    assert seen == {(1, 1), (1, -1), (-1, 1), (-1, -1)}


# ---- gradients, with a Bayes-by-Backprop guide ---------------------------------------------


class TinyConvNet(PyroModule):
    """A Bayesian conv layer (PyroSample weights, N(0, 1) priors) then mean pooling: a
    regression on the pooled features, as a user's own network would be written."""

    def __init__(self, in_channels=1, out_channels=2):
        super().__init__()
        self.conv = PyroModule()
        self.conv.weight = PyroSample(
            dist.Normal(0.0, 1.0).expand([out_channels, in_channels, 3, 3]).to_event(4)
        )
        self.conv.bias = PyroSample(dist.Normal(0.0, 1.0).expand([out_channels]).to_event(1))

    def forward(self, x, y=None):
        features = conv2d(x, self.conv.weight, self.conv.bias, padding=1)  # (B, C, H, W)
        loc = features.mean((1, 2, 3))
        with pyro.plate("data", len(x)):
            pyro.sample("y", dist.Normal(loc, 0.1), obs=y)
        return {"features": features}


def toy_regression():
    x = torch.randn(32, 1, 6, 6)
    return x, 3.0 * x.mean((1, 2, 3)) + 0.5


def test_svi_gradients_reach_the_means_and_the_scales():
    x, y = toy_regression()
    net = TinyConvNet()
    guide = BayesByBackprop(net)
    with flipout():
        guide(x, y)  # creates the parameters
        loss = pyro.infer.Trace_ELBO().loss_and_grads(net, guide, x, y)
    assert math.isfinite(loss)
    grads = {name: p.grad for name, p in guide.named_parameters()}
    assert {name.split(".")[0] for name in grads} == {"locs", "rhos"}
    for name, grad in grads.items():
        assert grad is not None and torch.isfinite(grad).all() and (grad != 0).all(), name


def test_the_scales_gradient_flows_through_the_layer_output():
    """The data term alone (no log density of the weights) reaches rho, through ``W - mu``."""
    x, y = toy_regression()
    net = TinyConvNet()
    guide = BayesByBackprop(net)
    with flipout():
        guide_trace = poutine.trace(guide).get_trace(x, y)
        features = poutine.replay(net, trace=guide_trace)(x, y)["features"]
    features.square().sum().backward()
    for rho in (guide.rhos.conv.weight, guide.rhos.conv.bias):
        assert rho.grad is not None and (rho.grad != 0).all()


def test_a_few_svi_steps_reduce_the_loss():
    x, y = toy_regression()
    net = TinyConvNet()
    guide = BayesByBackprop(net, init_scale=0.05)
    elbo = pyro.infer.Trace_ELBO()
    svi = pyro.infer.SVI(net, guide, pyro.optim.Adam({"lr": 0.05}), elbo)

    def mean_loss():
        return sum(elbo.loss(net, guide, x, y) for _ in range(10)) / 10

    with flipout():
        before = mean_loss()
        for _ in range(30):
            svi.step(x, y)
        after = mean_loss()
    assert after < 0.5 * before


# ---- a user's network, and stacking with local reparameterization ---------------------------


def test_the_docstring_example_runs():
    examples = doctest.DocTestFinder().find(FlipoutMessenger)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for example in examples:
        runner.run(example)
    assert runner.tries > 5 and runner.failures == 0


CONV_LOC = torch.randn(1, 1, 3, 3)


class ConvThenDense(PyroModule):
    """conv 1 -> 1 channel (flipout's) then a dense layer 4 -> 3 (local reparameterization's)."""

    def __init__(self):
        super().__init__()
        self.conv_weight = PyroSample(dist.Normal(CONV_LOC, 0.5).to_event(4))
        self.dense_weight = PyroSample(dist.Normal(torch.randn(3, 4), 0.5).to_event(2))

    def forward(self, x):
        h = conv2d(x, self.conv_weight)  # (B, 1, 4, 4) -> (B, 1, 2, 2)
        return h, linear(h.flatten(1), self.dense_weight)  # (B, 4) -> (B, 3)


@pytest.mark.parametrize("flipout_inside", [True, False])
def test_stacks_with_local_reparameterization_each_on_its_own_op(flipout_inside):
    net = ConvThenDense()
    x = torch.randn(1, 1, 4, 4).expand(32, -1, -1, -1)
    handlers = [LocalReparameterizationMessenger(), FlipoutMessenger()]
    if not flipout_inside:
        handlers.reverse()
    with poutine.trace() as tracer, handlers[0], handlers[1]:
        h, y = net(x)
    w_conv, w_dense = (
        tracer.trace.nodes[name]["value"] for name in ("conv_weight", "dense_weight")
    )
    # flipout: each copy of the image sees the drawn kernel or its mirror image, both occur
    at_draw = F.conv2d(x[0], w_conv)
    mirrored = F.conv2d(x[0], 2 * CONV_LOC - w_conv)
    flipped = [not torch.allclose(h_n, at_draw, atol=1e-5) for h_n in h]
    assert all(torch.allclose(h_n, mirrored, atol=1e-5) for h_n, f in zip(h, flipped) if f)
    assert any(flipped) and not all(flipped)
    # local reparameterization: the dense output is sampled afresh per row, not at the draw
    assert not torch.allclose(y, F.linear(h.flatten(1), w_dense), atol=1e-4)


def test_an_op_computed_by_a_handler_inside_keeps_its_value():
    """Local reparameterization inside flipout(linear=True) samples the dense layer: 16 rows
    of one input get 16 values, where flipout (one input, one output) gives 2 at most."""
    x, (q_w, _) = torch.ones(16, 1), normal_weights((1, 1))
    layer = sampled_layer(linear, q_w, None)
    with flipout(linear=True), LocalReparameterizationMessenger():
        y = layer(x)
    assert len(y.unique()) == 16


def test_local_reparameterization_keeps_an_op_that_flipout_inside_it_computed():
    """The other order: flipout inside local reparameterization samples the dense layer, so
    16 rows of one input get the drawn weight or its mirror image, 2 values at most."""
    x, (q_w, _) = torch.ones(16, 1), normal_weights((1, 1))
    layer = sampled_layer(linear, q_w, None)
    with LocalReparameterizationMessenger(), flipout(linear=True):
        y = layer(x)
    assert len(y.unique()) <= 2

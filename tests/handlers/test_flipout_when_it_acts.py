"""When flipout acts and when it leaves an op alone: only on weights drawn from a Normal (not
on a symmetric non-Normal draw, nor on a weight fixed by conditioning), dense layers only when
asked (also for ``FlipoutMessenger()`` built directly), once under two nested handlers, as a
wrapper of a function as well as a context manager; the signs of a dense layer per example and
feature; the layer's dtype kept (bfloat16 too)."""

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.nn.functional as F
from pyro import poutine

from zoo.handlers import FlipoutMessenger, conv2d, flipout, linear


def conv_layer(q_w):
    """x -> conv2d(x, w) with w ~ q_w drawn at the sample site ``w``."""

    def layer(x):
        return conv2d(x, pyro.sample("w", q_w.to_event(4)), padding=1)

    return layer


def dense_layer(q_w):
    def layer(x):
        return linear(x, pyro.sample("w", q_w.to_event(2)))

    return layer


def test_a_symmetric_draw_that_is_no_normal_gives_the_plain_op():
    """A Laplace weight has a ``loc`` and the full batch shape, as a Normal's would: it is
    still no Normal draw, so the layer is the op at the weight drawn."""
    x = torch.randn(3, 2, 5, 5)
    with poutine.trace() as tracer, flipout():
        y = conv_layer(dist.Laplace(torch.randn(4, 2, 3, 3), 0.5))(x)
    assert torch.equal(y, F.conv2d(x, tracer.trace.nodes["w"]["value"], padding=1))


def test_a_weight_fixed_by_conditioning_is_not_perturbed():
    """An observed Normal site (a weight set with ``poutine.condition``) is a fixed value,
    not a draw to flip."""
    x, w0 = torch.randn(3, 2, 5, 5), torch.randn(4, 2, 3, 3)
    layer = conv_layer(dist.Normal(torch.zeros(4, 2, 3, 3), 1.0))
    with flipout():
        y = poutine.condition(layer, data={"w": w0})(x)
    assert torch.equal(y, F.conv2d(x, w0, padding=1))


def test_a_messenger_built_without_arguments_leaves_dense_layers_alone():
    x = torch.ones(6, 3)
    with poutine.trace() as tracer, FlipoutMessenger():
        y = dense_layer(dist.Normal(torch.randn(2, 3), 0.5))(x)
    assert torch.equal(y, F.linear(x, tracer.trace.nodes["w"]["value"]))


def test_a_dense_layers_signs_are_per_example_and_feature():
    """16 copies of one row through 4 inputs and 3 outputs: with one sign per example (not per
    input feature) every copy's perturbation would be the first one's up to its sign."""
    pyro.set_rng_seed(0)
    q_w = dist.Normal(torch.randn(3, 4), 0.5)
    x = torch.randn(1, 4).expand(16, 4)
    with flipout(linear=True):
        y = dense_layer(q_w)(x)
    magnitudes = (y - F.linear(x, q_w.loc)).abs()
    assert not torch.allclose(magnitudes, magnitudes[:1].expand_as(magnitudes))


@pytest.mark.parametrize("op", ["conv2d", "linear"])
def test_two_nested_handlers_flip_once(op):
    """The inner handler computes the op; the outer one must keep that value, not draw new
    signs for it: nested, the same seed gives the very output of one handler."""
    if op == "conv2d":
        layer, x = conv_layer(dist.Normal(torch.randn(4, 2, 3, 3), 0.5)), torch.randn(8, 2, 5, 5)
    else:
        layer, x = dense_layer(dist.Normal(torch.randn(3, 4), 0.5)), torch.randn(8, 4)
    pyro.set_rng_seed(1)
    with flipout(linear=True):
        once = layer(x)
    pyro.set_rng_seed(1)
    with flipout(linear=True), flipout(linear=True):
        nested = layer(x)
    assert torch.equal(nested, once)


def test_flipout_wraps_a_function_as_well():
    """``flipout(fn)`` is ``fn`` under the handler: same seed, same output as the context
    manager, and not the plain op (copies of one image get their own noise)."""
    layer = conv_layer(dist.Normal(torch.randn(4, 2, 3, 3), 0.5))
    x = torch.randn(1, 2, 5, 5).expand(8, 2, 5, 5)
    pyro.set_rng_seed(2)
    wrapped = flipout(layer)(x)
    pyro.set_rng_seed(2)
    with flipout():
        managed = layer(x)
    assert torch.equal(wrapped, managed)
    assert not torch.allclose(wrapped[0].expand_as(wrapped), wrapped)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_the_output_keeps_the_layers_dtype(dtype):
    """The signs take the input's dtype: float32 signs would turn a bfloat16 input into
    float32, which the convolution then refuses beside a bfloat16 weight."""
    q_w = dist.Normal(torch.randn(4, 2, 3, 3, dtype=dtype), torch.tensor(0.5, dtype=dtype))
    x = torch.randn(3, 2, 5, 5, dtype=dtype)
    with flipout():
        y = conv_layer(q_w)(x)
    assert y.dtype == dtype and y.shape == (3, 4, 5, 5)

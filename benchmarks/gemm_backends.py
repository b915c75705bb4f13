"""Single-thread GEMM speed of torch's MKL path against oneDNN's linear, and a VAE step with each.

``torch.mm`` and ``F.linear`` on CPU float32 go to MKL's sgemm; oneDNN, which torch also ships,
has a linear of its own (``torch.ops.mkldnn._linear_pointwise``, the op that Inductor uses on
CPU). This measures both on the Fashion-MNIST VAE's shapes, then a hand-written VAE step
(784-400-50, batch 128, fused Adam) with ``F.linear`` and with oneDNN's linear behind a small
autograd function, rounds interleaved in one process. It also prints how far apart the two
GEMMs' results are: they sum in other orders.

Then the zoo's own VAE step (its trainer's ``GuardedSVI``) three ways, with a
``TorchFunctionMode`` that sends ``F.linear`` to oneDNN: MKL with replayed steps (the
default); oneDNN through the autograd function above, with Pyro tracing each step (a replay
would record the function's forward without its backward); oneDNN as a ``torch.library``
custom op with a registered backward, which the replay records as one node.

    python benchmarks/gemm_backends.py --rounds 9
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext
from pathlib import Path

import pyro
import torch
import torch.nn.functional as F
from side_by_side import write_result
from torch.overrides import TorchFunctionMode

from zoo.handlers import KLAnnealingMessenger
from zoo.models import VAE
from zoo.optim import Adam
from zoo.replay import Replay
from zoo.train import GuardedSVI, make_elbo

SHAPES = [(128, 784, 400), (128, 400, 100), (128, 50, 400), (128, 400, 784), (784, 128, 400)]


def onednn_linear(x, weight, bias):
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [None], "")


class OneDNNLinear(torch.autograd.Function):
    """y = x W^T + b, forward and backward on oneDNN's linear."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return onednn_linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = onednn_linear(grad, weight.t().contiguous(), None)
        grad_w = onednn_linear(grad.t().contiguous(), x.t().contiguous(), None)
        return grad_x, grad_w, grad.sum(0)


@torch.library.custom_op("zoo_benchmarks::onednn_linear", mutates_args=())
def onednn_linear_op(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    flat = x.reshape(-1, x.shape[-1]).contiguous()
    out = onednn_linear(flat, weight.contiguous(), bias)
    return out.reshape(*x.shape[:-1], weight.shape[0])


@onednn_linear_op.register_fake
def _(x, weight, bias):
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


def _setup_context(ctx, inputs, output):
    x, weight, bias = inputs
    ctx.save_for_backward(x, weight)
    ctx.has_bias = bias is not None


def _backward(ctx, grad):
    x, weight = ctx.saved_tensors
    g, flat = grad.reshape(-1, grad.shape[-1]), x.reshape(-1, x.shape[-1])
    grad_x = onednn_linear_op(g, weight.t(), None).reshape(x.shape)
    grad_w = onednn_linear_op(g.t(), flat.t(), None)
    return grad_x, grad_w, g.sum(0) if ctx.has_bias else None


onednn_linear_op.register_autograd(_backward, setup_context=_setup_context)


class LinearOn(TorchFunctionMode):
    """Sends every CPU float32 ``F.linear`` to ``linear(x, weight, bias)``."""

    def __init__(self, linear) -> None:
        super().__init__()
        self.linear = linear

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear:
            x, weight = args[0], args[1]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            if x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32:
                return self.linear(x, weight, bias)
        return func(*args, **kwargs)


def zoo_vae_step(x_all: torch.Tensor, batch: int, linear=None, replay: bool = True):
    """One step of the zoo's Fashion-MNIST-shaped VAE by its trainer's GuardedSVI; ``linear``
    replaces F.linear (None: torch's own, MKL)."""
    pyro.set_rng_seed(0)
    model = VAE(784, 50, [400])
    elbo = make_elbo("trace")
    replayed = Replay(elbo, model.model, model.guide, model, pyro_steps=2) if replay else None
    svi = GuardedSVI(model.model, model.guide, Adam({"lr": 1e-3}), elbo, replay=replayed)
    annealer = KLAnnealingMessenger(1.0)
    n = len(x_all)

    def step(x):
        with annealer, LinearOn(linear) if linear else nullcontext():
            svi.step(x, size=n)

    for _ in range(4):  # the Pyro steps and the one that makes the graph
        step(x_all[:batch])
    return step


def gflops(fn, flops: float, repeats: int = 300) -> float:
    for _ in range(30):
        fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return flops * repeats / (time.perf_counter() - start) / 1e9


def vae_step(linear):
    """A hand-written VAE step (the reference's ELBO) whose layers call ``linear``."""
    torch.manual_seed(0)
    layers = [
        torch.nn.Linear(784, 400),
        torch.nn.Linear(400, 100),
        torch.nn.Linear(50, 400),
        torch.nn.Linear(400, 784),
    ]
    params = [p for layer in layers for p in layer.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-3, fused=True)

    def step(x):
        for p in params:
            p.grad = None
        h = F.softplus(linear(x, layers[0]))
        loc, raw = linear(h, layers[1]).chunk(2, -1)
        eps = torch.randn_like(loc)
        z = loc + raw.exp() * eps
        logits = linear(F.softplus(linear(z, layers[2])), layers[3])
        log_lik = (x * logits - F.softplus(logits)).sum()
        loss = -(log_lik + (-0.5 * z.pow(2)).sum() - (-0.5 * eps.pow(2) - raw).sum())
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def interleaved(sides: dict, batch, args) -> dict[str, list[float]]:
    """Milliseconds per step of each side, rounds interleaved."""
    ms = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name, step in sides.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step(batch())
            ms[name].append((time.perf_counter() - start) / args.steps * 1e3)
    return ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gemm_backends.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)

    gemm = {}
    for m, k, n in SHAPES:
        x, w, b = torch.randn(m, k), torch.randn(n, k), torch.randn(n)
        flops = 2.0 * m * k * n
        mkl = gflops(lambda x=x, w=w, b=b: F.linear(x, w, b), flops)
        dnn = gflops(lambda x=x, w=w, b=b: onednn_linear(x, w, b), flops)
        gap = float((F.linear(x, w, b) - onednn_linear(x, w, b)).abs().max())
        gemm[f"{m}x{k}x{n}"] = {"mkl_gflops": mkl, "onednn_gflops": dnn, "max_abs_difference": gap}
        print(
            f"{m}x{k}x{n}: MKL {mkl:.0f} GFLOP/s, oneDNN {dnn:.0f} GFLOP/s, results {gap:.2g} apart"
        )

    sides = {
        "mkl": vae_step(lambda x, layer: F.linear(x, layer.weight, layer.bias)),
        "onednn": vae_step(lambda x, layer: OneDNNLinear.apply(x, layer.weight, layer.bias)),
    }
    x = torch.bernoulli(torch.rand(128, 784))
    ms = interleaved(sides, lambda: x, args)
    ratios = [d / m for d, m in zip(ms["onednn"], ms["mkl"])]

    pyro.enable_validation(False)
    x_all = torch.bernoulli(torch.rand(12800, 784))
    zoo_sides = {
        "zoo_mkl_replayed": zoo_vae_step(x_all, 128),
        "zoo_onednn_function_pyro": zoo_vae_step(x_all, 128, OneDNNLinear.apply, replay=False),
        "zoo_onednn_custom_op_replayed": zoo_vae_step(x_all, 128, onednn_linear_op),
    }
    zoo_ms = interleaved(zoo_sides, lambda: x_all[torch.randint(len(x_all), (128,))], args)
    zoo_ratios = {
        name: statistics.median(a / b for a, b in zip(zoo_ms[name], zoo_ms["zoo_mkl_replayed"]))
        for name in zoo_sides
    }
    result = {
        "benchmark": "gemm_backends",
        "settings": vars(args) | {"out": str(args.out)},
        "gemm": gemm,
        "vae_step_ms": ms,
        "vae_step_ms_median": {k: statistics.median(v) for k, v in ms.items()},
        "vae_step_ratio_onednn_to_mkl": {
            "median": statistics.median(ratios),
            "min": min(ratios),
            "max": max(ratios),
        },
        "zoo_step_ms_median": {k: statistics.median(v) for k, v in zoo_ms.items()},
        "zoo_step_ratio_to_mkl_replayed": zoo_ratios,
        "zoo_step_ms": zoo_ms,
        "versions": {"torch": torch.__version__, "pyro": pyro.__version__},
    }
    print(
        f"VAE step: MKL {result['vae_step_ms_median']['mkl']:.2f} ms, oneDNN "
        f"{result['vae_step_ms_median']['onednn']:.2f} ms, ratio {statistics.median(ratios):.3f} "
        f"({min(ratios):.3f}-{max(ratios):.3f})"
    )
    for name, ratio in zoo_ratios.items():
        print(f"zoo VAE step, {name}: {result['zoo_step_ms_median'][name]:.2f} ms, {ratio:.3f}")
    write_result(result, args.out)


if __name__ == "__main__":
    main()

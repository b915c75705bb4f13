"""What flipout costs: forward and backward of a LeNet-5-sized convolution stack, flipout against
plain convolutions on fixed weights (MAP), side by side in one process.

The stack: conv 1 -> 6 (5x5, same), max-pool 2, conv 6 -> 16 (5x5, valid), max-pool 2,
conv 16 -> 120 (5x5, same), ReLU after each conv; a batch of 128 images of 28x28. Variants:

- ``map``: ``F.conv2d`` at weight and bias tensors that require grad (the MAP network);
- ``shared draw``: Bayes by Backprop without flipout, one draw ``mu + softplus(rho) * eps``
  of every weight and bias per step, shared by the batch;
- ``flipout``: the same draws at Pyro sample sites, under :class:`zoo.handlers.FlipoutMessenger`
  (two convolutions per layer: the mean and the flipped perturbation);
- ``flipout, grouped``: as ``flipout``, but mean and perturbation in one convolution with
  twice the groups (input ``[x, x * s]``, weight ``[mu, W - mu]``), a candidate speed-up.

Rounds interleave the variants; each figure is the median over rounds of the time of one step,
with torch on 2 threads. Ratios are against ``map``.

    nice -n 5 python benchmarks/flipout_cost.py --rounds 7 --steps 5
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.poutine.runtime import Message

from zoo.handlers import FlipoutMessenger, conv2d
from zoo.handlers.flipout import _random_signs

# (in channels, out channels, padding, pool after)
LAYERS = [(1, 6, 2, True), (6, 16, 0, True), (16, 120, 2, False)]
BATCH, SIZE = 128, 28


class GroupedFlipoutMessenger(FlipoutMessenger):
    """Flipout for ``conv2d`` with the mean and the perturbation in one grouped convolution."""

    def _pyro_conv2d(self, msg: Message) -> None:
        x, weight, bias = msg["args"][:3]
        padding = msg["kwargs"].get("padding", 0)
        q_weight, q_bias = self._normal_drawn_as(weight), self._normal_drawn_as(bias)
        if msg["done"] or q_weight is None or q_bias is None:
            return
        both = torch.cat([x, x * _random_signs(x, 2)], dim=1)  # (B, 2 C_in, H, W)
        weights = torch.cat([q_weight.loc, weight - q_weight.loc])  # (2 C_out, C_in, k, k)
        biases = torch.cat([q_bias.loc, bias - q_bias.loc])
        mean, perturbation = F.conv2d(both, weights, biases, padding=padding, groups=2).chunk(
            2, dim=1
        )
        msg["value"] = mean + perturbation * _random_signs(perturbation, 2)
        msg["done"] = True


def make_parameters():
    """Per layer: (weight, bias) for MAP and (mu_w, rho_w, mu_b, rho_b) for the Bayesian ones."""
    fixed, bayesian = [], []
    for c_in, c_out, _, _ in LAYERS:
        w = (torch.randn(c_out, c_in, 5, 5) / (25 * c_in) ** 0.5).requires_grad_()
        b = torch.zeros(c_out, requires_grad=True)
        fixed.append((w, b))
        mu_w, mu_b = (t.detach().clone().requires_grad_() for t in (w, b))
        rho_w, rho_b = (torch.full_like(t, -4.0).requires_grad_() for t in (w, b))
        bayesian.append((mu_w, rho_w, mu_b, rho_b))
    return fixed, bayesian


def stack(x, weights_and_biases, conv):
    for (_, _, padding, pool), (w, b) in zip(LAYERS, weights_and_biases):
        x = F.relu(conv(x, w, b, padding=padding))
        if pool:
            x = F.max_pool2d(x, 2)
    return x  # (B, 120, 5, 5)


def drawn(bayesian, at_sites: bool):
    layers = []
    for i, (mu_w, rho_w, mu_b, rho_b) in enumerate(bayesian):
        q_w = dist.Normal(mu_w, F.softplus(rho_w)).to_event(4)
        q_b = dist.Normal(mu_b, F.softplus(rho_b)).to_event(1)
        if at_sites:
            layers.append((pyro.sample(f"w{i}", q_w), pyro.sample(f"b{i}", q_b)))
        else:
            layers.append((q_w.rsample(), q_b.rsample()))
    return layers


def step(variant, x, fixed, bayesian):
    if variant == "map":
        out = stack(x, fixed, F.conv2d)
    elif variant == "shared draw":
        out = stack(x, drawn(bayesian, at_sites=False), F.conv2d)
    else:
        handler = FlipoutMessenger() if variant == "flipout" else GroupedFlipoutMessenger()
        with handler:
            out = stack(x, drawn(bayesian, at_sites=True), conv2d)
    out.square().mean().backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5, help="steps per variant and round")
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    x = torch.randn(BATCH, 1, SIZE, SIZE)
    fixed, bayesian = make_parameters()
    variants = ["map", "shared draw", "flipout", "flipout, grouped"]
    times: dict[str, list[float]] = {v: [] for v in variants}
    for variant in variants:  # warm-up: oneDNN picks its kernels at the first call
        step(variant, x, fixed, bayesian)
    for _ in range(args.rounds):
        for variant in variants:
            start = time.perf_counter()
            for _ in range(args.steps):
                step(variant, x, fixed, bayesian)
            times[variant].append((time.perf_counter() - start) / args.steps)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}; "
        f"batch {BATCH} of {SIZE}x{SIZE}, {args.rounds} rounds of {args.steps} steps"
    )
    base = statistics.median(times["map"])
    for variant in variants:
        median = statistics.median(times[variant])
        print(f"{variant:18s} {1e3 * median:8.1f} ms/step   x{median / base:.2f} of map")


if __name__ == "__main__":
    main()

"""Training time of the LeNet-5 BNN per guide, side by side in one process: Bayes by Backprop
(flipout on the convolutions, local reparameterization on the dense layers; and with one
weight draw shared by the batch) against the same network trained by MAP.

Each variant is the zoo's own model (``zoo.models.BNN``, ``architecture=lenet5``,
``hidden_dims=[84]``) stepped by ``pyro.infer.SVI`` with ``Trace_ELBO`` and the zoo's fused Adam,
as the trainer does, on minibatches of 128 Fashion-MNIST-sized images (random pixels: the time
does not depend on them). Rounds interleave the variants, so load on the shared machine falls
on all of them alike; each figure is the median over rounds of the mean time of a step, and
the ratio is against MAP. An epoch of the 60,000 training images is 469 steps.

    python benchmarks/bnn_lenet5_step.py --rounds 7 --steps 10 --threads 2
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time

import pyro
import torch

from zoo.data.base import Dataset
from zoo.models import BNN
from zoo.optim import Adam

VARIANTS = {
    "map": {"guide": "map"},
    "mc_dropout": {"guide": "mc_dropout", "dropout": 0.5},
    "bbb (flipout + local reparameterization)": {"guide": "bbb"},
    "bbb (one shared draw of the conv weights)": {"guide": "bbb", "flipout": False},
    "ensemble of 5": {"guide": "ensemble", "ensemble_size": 5},
}
BATCH, SIDE, TRAIN = 128, 28, 60_000


def fashion_mnist_shaped(n: int) -> Dataset:
    x = torch.rand(2 * n, SIDE * SIDE)
    y = torch.randint(10, (2 * n,))
    return Dataset("shape", "image", x[:n], y[:n], x[n:], y[n:], (SIDE, SIDE), 10, "random")


def stepper(settings: dict, data: Dataset):
    bnn = BNN.build(data, architecture="lenet5", hidden_dims=[84], prior="gaussian", **settings)
    svi = pyro.infer.SVI(bnn.model, bnn.guide, Adam({"lr": 1e-3}), pyro.infer.Trace_ELBO())
    x, y = data.train_x[:BATCH], data.train_y[:BATCH]
    svi.step(x, y, size=TRAIN)  # the first step builds the optimizer state
    return lambda: svi.step(x, y, size=TRAIN)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pyro.set_rng_seed(0)
    data = fashion_mnist_shaped(BATCH)
    steps = {name: stepper(settings, data) for name, settings in VARIANTS.items()}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            times[name].append((time.perf_counter() - start) / args.steps)
    base = statistics.median(times["map"])
    epoch_steps = math.ceil(TRAIN / BATCH)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{args.threads} threads, {args.rounds} rounds of {args.steps} steps, batch {BATCH}")
    print(f"{'variant':45s} {'ms/step':>9s} {'s/epoch':>8s} {'vs MAP':>7s}  (min-max ratio)")
    rows = {}
    for name, values in times.items():
        median = statistics.median(values)
        ratios = [v / m for v, m in zip(values, times["map"])]
        rows[name] = {"ms_per_step": 1e3 * median, "ratio": median / base,
                      "ratio_min": min(ratios), "ratio_max": max(ratios)}
        print(f"{name:45s} {1e3 * median:9.1f} {median * epoch_steps:8.1f} {median / base:7.2f}"
              f"  ({min(ratios):.2f}-{max(ratios):.2f})")
    print(json.dumps({"threads": args.threads, "rounds": args.rounds, "rows": rows}))


if __name__ == "__main__":
    main()

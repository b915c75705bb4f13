"""The optimizer step alone: ``pyro.optim.Adam`` (one torch Adam per parameter) against one
``torch.optim.Adam`` over all parameters, looping, ``foreach`` and ``fused``.

Parameters of the shapes of the benchmarked models (VAE 784-400-50, BNN 784-400-400-10 means
and scales, GMM K = 4, D = 2) with fixed random gradients; rounds interleave the methods in
one process, and each figure is the median over rounds of the time of one step.

    python benchmarks/adam_step.py --rounds 15 --steps 50
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import pyro
import torch

from zoo.optim import IMPLEMENTATIONS, Adam

SHAPES = {
    "vae": [(400, 784), (400,), (100, 400), (100,), (400, 50), (400,), (784, 400), (784,)],
    "bnn": [(400, 784), (400,), (400, 400), (400,), (10, 400), (10,)] * 2,
    "gmm": [(4,), (4, 2), (4, 2), (4, 2), (4, 2)],
}


def stepper(shapes, implementation: str):
    pyro.clear_param_store()
    params = []
    for i, shape in enumerate(shapes):
        p = pyro.param(f"p{i}", torch.randn(shape)).unconstrained()
        p.grad = torch.randn_like(p)
        params.append(p)
    optim = Adam({"lr": 1e-3}, implementation=implementation)
    optim(params)  # the first step creates the optimizer state, while the names are in the store
    return lambda: optim(params)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=50, help="steps per method per round")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: default)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/optim/adam_step.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)  # on 2 shared cores more threads oversubscribe
    methods = ["per_parameter", *IMPLEMENTATIONS]
    rows = {}
    for model, shapes in SHAPES.items():
        steps = {m: stepper(shapes, m) for m in methods}
        times = {m: [] for m in methods}
        for _ in range(args.rounds):
            for m, step in steps.items():
                start = time.perf_counter()
                for _ in range(args.steps):
                    step()
                times[m].append((time.perf_counter() - start) / args.steps * 1e3)
        rows[model] = {m: statistics.median(t) for m, t in times.items()}
        print(f"{model}: " + ", ".join(f"{m} {v:.3f} ms" for m, v in rows[model].items()))
    result = {
        "benchmark": "adam_step",
        "settings": vars(args) | {"out": str(args.out)},
        "ms_per_step_median": rows,
        "machine": {"cpu_count": platform.os.cpu_count(), "platform": platform.platform()},
        "versions": {"torch": torch.__version__, "pyro": pyro.__version__},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()

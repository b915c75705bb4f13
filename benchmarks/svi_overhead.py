"""The fixed cost of one SVI step: the zoo's trainer against a plain Pyro SVI loop.

The model has one latent site, ``loc ~ Normal(0, 1)``, and a data plate over a minibatch of
``x ~ Normal(loc, 1)``; the guide is ``Normal(m, softplus(s))``. Its arithmetic is negligible,
so the time of a step is the machinery around it: Pyro's tracing, the ELBO, the optimizer and,
for the zoo, the trainer (minibatch by index, the annealing handler, the finiteness guard of
``GuardedSVI``). Rounds interleave the methods (trainer, plain Pyro, guarded step alone,
plain PyTorch) in one process; the ratio is the median over rounds of trainer / plain Pyro.

    python benchmarks/svi_overhead.py --rounds 15 --steps 400
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pyro.infer import SVI, Trace_ELBO
from pyro.nn import PyroParam, pyro_method

from zoo.models.base import ZooModel, data_plate
from zoo.train import GuardedSVI, Trainer, TrainSettings


class OneSite(ZooModel):
    """loc ~ Normal(0, 1); x_i ~ Normal(loc, 1); guide Normal(m, softplus(s))."""

    def __init__(self) -> None:
        super().__init__()
        self.m = PyroParam(torch.tensor(0.0))
        self.s = PyroParam(torch.tensor(0.0))

    @pyro_method
    def model(self, x, y=None, size=None):
        loc = pyro.sample("loc", dist.Normal(0.0, 1.0))
        with data_plate(x, size):
            pyro.sample("x", dist.Normal(loc, 1.0), obs=x)

    @pyro_method
    def guide(self, x, y=None, size=None):
        pyro.sample("loc", dist.Normal(self.m, F.softplus(self.s)))


def plain_pyro(svi: SVI, x: torch.Tensor, steps: int, batch: int) -> None:
    n = len(x)
    for index in torch.randperm(n)[: steps * batch].view(steps, batch):
        svi.step(x[index], size=n)


def plain_torch(params, optimizer, x: torch.Tensor, steps: int, batch: int) -> None:
    """The same ELBO estimator by hand: one reparameterized draw, data term scaled N / batch."""
    m, s = params
    n = len(x)
    prior = torch.distributions.Normal(0.0, 1.0)
    for index in torch.randperm(n)[: steps * batch].view(steps, batch):
        optimizer.zero_grad()
        q = torch.distributions.Normal(m, F.softplus(s))
        loc = q.rsample()
        log_lik = torch.distributions.Normal(loc, 1.0).log_prob(x[index]).sum() * (n / batch)
        loss = -(log_lik + prior.log_prob(loc) - q.log_prob(loc))
        loss.backward()
        optimizer.step()
        loss.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=400, help="steps per method per round")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: default)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/svi_overhead.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)  # on 2 shared cores more threads oversubscribe
    # the trainer's default (trainer.validate=false) for both sides: torch.distributions
    # validates arguments by default, which would slow the plain-PyTorch reference alone
    pyro.enable_validation(False)

    pyro.set_rng_seed(0)
    n = args.steps * args.batch_size
    x = torch.randn(n) + 1.0
    data = SimpleNamespace(train_x=x, train_y=None, name="one_site")

    zoo_model = OneSite()
    settings = TrainSettings(epochs=1, batch_size=args.batch_size, progress=False)
    trainer = Trainer(zoo_model, data, pyro.optim.Adam({"lr": 1e-2}), settings)
    pyro_model = OneSite()
    pyro_svi = SVI(pyro_model.model, pyro_model.guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    guarded_model = OneSite()
    guarded_svi = GuardedSVI(
        guarded_model.model, guarded_model.guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO()
    )
    params = [torch.zeros((), requires_grad=True), torch.zeros((), requires_grad=True)]
    optimizer = torch.optim.Adam(params, lr=1e-2)

    def zoo_trainer():
        trainer.settings = settings.model_copy(update={"epochs": trainer.epoch + 1})
        trainer.fit()

    methods = {
        "zoo_trainer": zoo_trainer,
        "plain_pyro": lambda: plain_pyro(pyro_svi, x, args.steps, args.batch_size),
        "guarded_svi_loop": lambda: plain_pyro(guarded_svi, x, args.steps, args.batch_size),
        "plain_torch": lambda: plain_torch(params, optimizer, x, args.steps, args.batch_size),
    }
    times: dict[str, list[float]] = {name: [] for name in methods}
    with pyro.validation_enabled(False):  # the trainer's default; the plain loops alike
        for round_ in range(args.rounds + 1):  # round 0 warms up and is left out
            for name, method in methods.items():
                start = time.perf_counter()
                method()
                elapsed = (time.perf_counter() - start) / args.steps * 1e3
                if round_:
                    times[name].append(elapsed)

    def ratio(a: str, b: str) -> dict:
        r = [x / y for x, y in zip(times[a], times[b])]
        return {"median": statistics.median(r), "min": min(r), "max": max(r)}

    result = {
        "benchmark": "svi_overhead",
        "settings": vars(args) | {"out": str(args.out)},
        "ms_per_step_median": {k: statistics.median(v) for k, v in times.items()},
        "ratio_trainer_vs_plain_pyro": ratio("zoo_trainer", "plain_pyro"),
        "ratio_guarded_vs_plain_pyro": ratio("guarded_svi_loop", "plain_pyro"),
        "ratio_plain_pyro_vs_torch": ratio("plain_pyro", "plain_torch"),
        "machine": {"cpu_count": platform.os.cpu_count(), "platform": platform.platform()},
        "versions": {"torch": torch.__version__, "pyro": pyro.__version__},
        "estimates": {
            "zoo": zoo_model.m.detach().item(),
            "pyro": pyro_model.m.detach().item(),
            "posterior_mean": float(x.sum() / (n + 1)),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'method':<18} {'ms/step':>8}")
    for name, ms in result["ms_per_step_median"].items():
        print(f"{name:<18} {ms:>8.3f}")
    for key in ("ratio_trainer_vs_plain_pyro", "ratio_guarded_vs_plain_pyro"):
        r = result[key]
        print(f"{key}: median {r['median']:.3f} (min {r['min']:.3f}, max {r['max']:.3f})")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()

"""GMM at scale: the zoo's SVI step against plain PyTorch, and the zoo against scikit-learn.

``--part step``: at each N, the zoo's trainer (``sampling=replacement``, minibatches of
``--batch-size`` rows drawn by index) and a plain-PyTorch step of the same model, mean-field
guide and single-sample ELBO (Dirichlet, Normal and LogNormal factors, reparameterized, data
term scaled N / batch), started from the same parameters, alternate in rounds of ``--steps``
steps in one process; the ratio is the median over rounds. The zoo's step time at each N
shows whether a step does O(N) work.

``--part fit``: at each N, one subprocess fits scikit-learn's ``BayesianGaussianMixture``
(diagonal, K components, its defaults) and reports its fit time and held-out log-likelihood
per point; another builds the zoo's GMM (k-means++ restarts included) and trains it until its
held-out plug-in log predictive density is within ``--tolerance`` nats per point of
scikit-learn's, checking every ``--check-every`` steps (the checks are not on the clock). Each
subprocess reports its peak resident memory (``ru_maxrss``) and that after loading the data.

    python benchmarks/gmm_vs_torch.py --part step --sizes 1e5 1e6 1e7
    python benchmarks/gmm_vs_torch.py --part step --sizes 1e5 1e6 1e7 --elbo jit
    python benchmarks/gmm_vs_torch.py --part fit --sizes 1e5 1e6
    python benchmarks/gmm_vs_torch.py --part fit --sizes 1e5 1e6 1e7 --restarts 1 --restart-steps 50
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pyro
import torch
import torch.nn.functional as F
from optim_flags import add_optim_arguments, reference_adam  # benchmarks/optim_flags.py
from torch import distributions as td

from zoo.data import load_dataset
from zoo.models import GMM
from zoo.optim import DEFAULT_IMPLEMENTATION, Adam
from zoo.train import Trainer, TrainSettings

K, D = 4, 2


def synthetic(n: int):
    return load_dataset("synthetic_gmm", n=n, components=K, dims=D, separation=4.0, seed=0)


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


class TorchGMM:
    """The zoo's GMM and mean-field guide written out, started at the zoo model's values."""

    def __init__(self, zoo_model: GMM, adam: str = "default"):
        guide = zoo_model.posterior
        self.prior_w = td.Dirichlet(zoo_model.weight_concentration)
        self.prior_loc = td.Normal(zoo_model.loc_center, zoo_model.loc_spread)
        self.prior_scale = td.LogNormal(zoo_model.scale_log_median, zoo_model.scale_log_sd)
        with torch.no_grad():
            q_w = guide.distribution("weights")
            q_loc = guide.distribution("locs").base_dist
            q_scale = guide.distribution("scales").base_dist
            self.params = [
                self._raw(q_w.concentration),
                q_loc.loc.clone(),
                self._raw(q_loc.scale),
                q_scale.loc.clone(),
                self._raw(q_scale.scale),
            ]
        for p in self.params:
            p.requires_grad_(True)
        self.optimizer = reference_adam(self.params, 0.01, adam)

    @staticmethod
    def _raw(positive: torch.Tensor) -> torch.Tensor:
        return (positive + torch.log(-torch.expm1(-positive))).detach().clone()

    def loss(self, x: torch.Tensor, n: int) -> torch.Tensor:
        w_raw, loc_loc, loc_raw, scale_loc, scale_raw = self.params
        q_w = td.Dirichlet(F.softplus(w_raw))
        q_loc = td.Normal(loc_loc, F.softplus(loc_raw))
        q_scale = td.LogNormal(scale_loc, F.softplus(scale_raw))
        w, locs, scales = q_w.rsample(), q_loc.rsample(), q_scale.rsample()  # (K,), (K, D) x2
        mixture = td.MixtureSameFamily(
            td.Categorical(probs=w), td.Independent(td.Normal(locs, scales), 1)
        )
        log_lik = mixture.log_prob(x).sum() * (n / len(x))
        log_prior = (
            self.prior_w.log_prob(w)
            + self.prior_loc.log_prob(locs).sum()
            + self.prior_scale.log_prob(scales).sum()
        )
        log_q = q_w.log_prob(w) + q_loc.log_prob(locs).sum() + q_scale.log_prob(scales).sum()
        return -(log_lik + log_prior - log_q)

    def steps(self, x: torch.Tensor, steps: int, batch_size: int) -> None:
        n = len(x)
        for _ in range(steps):
            index = torch.randint(n, (batch_size,))
            self.optimizer.zero_grad()
            loss = self.loss(x[index], n)
            loss.backward()
            self.optimizer.step()
            loss.item()


def zoo_trainer(
    model: GMM,
    data,
    batch_size: int,
    lr: float,
    elbo: str = "trace",
    optim: str = DEFAULT_IMPLEMENTATION,
    replay: bool = True,
) -> Trainer:
    settings = TrainSettings(
        epochs=1,
        batch_size=batch_size,
        sampling="replacement",
        progress=False,
        elbo=elbo,
        replay=replay,
    )
    return Trainer(model, data, Adam({"lr": lr}, implementation=optim), settings)


def zoo_steps(trainer: Trainer, steps: int) -> None:
    trainer.steps_per_epoch = steps  # an "epoch" of this many minibatches
    trainer.settings = trainer.settings.model_copy(update={"epochs": trainer.epoch + 1})
    trainer.fit()


def part_step(args) -> dict:
    rows = []
    for n in args.sizes:
        data = synthetic(n)
        pyro.set_rng_seed(0)
        model = GMM.build(data, components=K, restarts=1, restart_steps=20)
        reference = TorchGMM(model, args.torch_adam)
        trainer = zoo_trainer(
            model, data, args.batch_size, 0.01, args.elbo, args.optim, args.replay == "true"
        )
        zoo_ms, torch_ms = [], []
        for round_ in range(args.rounds + 1):  # round 0 warms up and is left out
            start = time.perf_counter()
            zoo_steps(trainer, args.steps)
            zoo_elapsed = (time.perf_counter() - start) / args.steps * 1e3
            start = time.perf_counter()
            reference.steps(data.train_x, args.steps, args.batch_size)
            torch_elapsed = (time.perf_counter() - start) / args.steps * 1e3
            if round_:
                zoo_ms.append(zoo_elapsed)
                torch_ms.append(torch_elapsed)
        ratios = [z / t for z, t in zip(zoo_ms, torch_ms)]
        rows.append(
            {
                "n": n,
                "zoo_ms_per_step": statistics.median(zoo_ms),
                "torch_ms_per_step": statistics.median(torch_ms),
                "ratio_median": statistics.median(ratios),
                "ratio_min": min(ratios),
                "ratio_max": max(ratios),
            }
        )
        r = rows[-1]
        print(
            f"N = {n:>9}: zoo {r['zoo_ms_per_step']:.3f} ms/step, torch {r['torch_ms_per_step']:.3f}"
            f" ms/step, ratio {r['ratio_median']:.3f} ({r['ratio_min']:.3f}-{r['ratio_max']:.3f})",
            flush=True,
        )
        del data, model, reference, trainer
    return {"step": rows}


def worker_sklearn(n: int, seed: int) -> dict:
    from sklearn.mixture import BayesianGaussianMixture

    data = synthetic(n)
    train_x, test_x = data.train_x.numpy(), data.test_x.numpy()
    rss_data = maxrss_mb()
    model = BayesianGaussianMixture(n_components=K, covariance_type="diag", random_state=seed)
    start = time.perf_counter()
    model.fit(train_x)
    elapsed = time.perf_counter() - start
    return {
        "method": "sklearn_bgm",
        "n": n,
        "fit_s": elapsed,
        "n_iter": int(model.n_iter_),
        "test_log_lik": float(model.score(test_x)),
        "rss_after_data_mb": rss_data,
        "peak_rss_mb": maxrss_mb(),
        "data_mb": (train_x.nbytes + test_x.nbytes) / 2**20,
    }


def worker_zoo(
    n: int,
    target: float,
    tolerance: float,
    check_every: int,
    max_steps: int,
    restarts: int,
    restart_steps: int,
):
    data = synthetic(n)
    rss_data = maxrss_mb()
    pyro.set_rng_seed(0)
    # library imports are off the clock, as scikit-learn's are: the first torch optimizer
    # imports torch._dynamo (about 1 s on this machine), so import it before starting
    import torch._dynamo  # noqa: F401

    start = time.perf_counter()
    # k-means++ starts, each trained restart_steps steps on at most 10k rows: on the clock
    model = GMM.build(data, components=K, restarts=restarts, restart_steps=restart_steps)
    trainer = zoo_trainer(model, data, 1000, 0.01)
    build_s = time.perf_counter() - start
    train_s, steps, checks = 0.0, 0, []
    while True:
        with torch.no_grad():
            log_lik = model.log_predictive(data.test_x).mean().item()  # plug-in, off the clock
        checks.append((steps, build_s + train_s, log_lik))
        if log_lik >= target - tolerance or steps >= max_steps:
            break
        start = time.perf_counter()
        zoo_steps(trainer, check_every)
        train_s += time.perf_counter() - start
        steps += check_every
    return {
        "method": "zoo",
        "n": n,
        "reached": log_lik >= target - tolerance,
        "time_to_target_s": build_s + train_s,
        "build_s": build_s,
        "steps": steps,
        "test_log_lik": log_lik,
        "checks": checks,
        "rss_after_data_mb": rss_data,
        "peak_rss_mb": maxrss_mb(),
    }


def run_worker(args, *extra) -> dict:
    command = [sys.executable, __file__, "--threads", str(args.threads), *extra]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def part_fit(args) -> dict:
    rows = []
    for n in args.sizes:
        sk = run_worker(args, "--worker", "sklearn", "--sizes", str(n))
        zoo = run_worker(
            args,
            "--worker",
            "zoo",
            "--sizes",
            str(n),
            "--target",
            repr(sk["test_log_lik"]),
            "--tolerance",
            str(args.tolerance),
            "--check-every",
            str(args.check_every),
            "--max-steps",
            str(args.max_steps),
            "--restarts",
            str(args.restarts),
            "--restart-steps",
            str(args.restart_steps),
        )
        ratio = zoo["time_to_target_s"] / sk["fit_s"]
        rows.append({"n": n, "sklearn": sk, "zoo": zoo, "time_ratio": ratio})
        print(
            f"N = {n:>9}: sklearn {sk['fit_s']:.2f} s ({sk['n_iter']} iterations, "
            f"log-lik {sk['test_log_lik']:.4f}, peak {sk['peak_rss_mb']:.0f} MB, "
            f"{sk['rss_after_data_mb']:.0f} MB after data); zoo {zoo['time_to_target_s']:.2f} s "
            f"to {zoo['test_log_lik']:.4f} in {zoo['steps']} steps "
            f"({'reached' if zoo['reached'] else 'NOT reached'}; peak {zoo['peak_rss_mb']:.0f} MB, "
            f"{zoo['rss_after_data_mb']:.0f} MB after data); ratio {ratio:.3f}",
            flush=True,
        )
    return {"fit": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["step", "fit"], default="step")
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e5, 1e6])
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument(
        "--elbo", default="trace", choices=["trace", "jit"], help="the zoo's trainer.elbo (step)"
    )
    parser.add_argument(
        "--replay", default="true", choices=["true", "false"], help="the zoo's trainer.replay"
    )
    parser.add_argument("--steps", type=int, default=200, help="steps per method per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--tolerance", type=float, default=0.01, help="nats per point")
    parser.add_argument("--check-every", type=int, default=50, help="steps between checks")
    parser.add_argument("--max-steps", type=int, default=5000)
    parser.add_argument("--restarts", type=int, default=4, help="model.restarts (zoo default 4)")
    parser.add_argument(
        "--restart-steps", type=int, default=200, help="model.restart_steps (zoo default 200)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: default)")
    add_optim_arguments(parser)
    parser.add_argument("--worker", choices=["sklearn", "zoo"], help=argparse.SUPPRESS)
    parser.add_argument("--target", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.sizes = [int(n) for n in args.sizes]
    if args.threads:
        torch.set_num_threads(args.threads)  # on 2 shared cores more threads oversubscribe
    # the trainer's default (trainer.validate=false) for both sides: torch.distributions
    # validates arguments by default, which would slow the plain-PyTorch reference alone
    pyro.enable_validation(False)
    if args.worker == "sklearn":
        print(json.dumps(worker_sklearn(args.sizes[0], 0)))
        return
    if args.worker == "zoo":
        result = worker_zoo(
            args.sizes[0],
            args.target,
            args.tolerance,
            args.check_every,
            args.max_steps,
            args.restarts,
            args.restart_steps,
        )
        print(json.dumps(result))
        return

    result = part_step(args) if args.part == "step" else part_fit(args)
    out = args.out or Path(f"benchmarks/results/gmm_{args.part}.json")
    result = {
        "benchmark": f"gmm_vs_torch --part {args.part}",
        "settings": vars(args) | {"out": str(out), "components": K, "dims": D},
        **result,
        "machine": {"cpu_count": platform.os.cpu_count(), "platform": platform.platform()},
        "versions": {"torch": torch.__version__, "pyro": pyro.__version__},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()

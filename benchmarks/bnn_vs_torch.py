"""BNN epoch time: the zoo's Bayes by Backprop against the same estimator in plain PyTorch.

Both train an MLP 784-400-400-10 (ReLU) with a Normal(0, ``--prior-sigma``^2) prior on every
weight and bias and the guide Normal(mu, softplus(rho)) (mu from U(+-1/sqrt(fan_in)) for
weight matrices and 0 for biases, rho ~ U(-5, -4)); each step draws one reparameterized set of
weights for the minibatch, and the loss is ``-(N / B) log p(y | x, w) - log p(w) + log q(w)``:
the Monte Carlo KL of the zoo's default ELBO (``Trace_ELBO``), or with ``--elbo meanfield``
the closed-form KL (``TraceMeanField_ELBO``) on both sides. Same Adam, batch and minibatch
order rule (a fresh permutation per epoch). Epochs are interleaved (zoo, torch, zoo, ...) in one
process; the ratio is the median of the per-epoch ratios, the first epoch left out. The test
error of both (predictive averaged over ``--eval-samples`` weight draws) checks that the two
did the same work.

    python benchmarks/bnn_vs_torch.py --epochs 4
    python benchmarks/bnn_vs_torch.py --epochs 4 --train-rows 20000   # shorter
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import pyro
import torch
import torch.nn.functional as F
from optim_flags import add_optim_arguments, reference_adam  # benchmarks/optim_flags.py
from side_by_side import alternate, ratios_result, reference_epoch, write_result
from torch import nn

from zoo.data import load_dataset
from zoo.models import BNN
from zoo.optim import Adam
from zoo.train import Trainer, TrainSettings


class TorchBBB(nn.Module):
    """Bayes by Backprop by hand: (mu, rho) per weight, one draw of every weight per step."""

    def __init__(self, sizes: list[int], prior_sigma: float, init_rho=(-5.0, -4.0)):
        super().__init__()
        self.prior = torch.distributions.Normal(0.0, prior_sigma)
        self.mus, self.rhos = nn.ParameterList(), nn.ParameterList()
        for n_in, n_out in zip(sizes, sizes[1:]):
            bound = 1.0 / math.sqrt(n_in)
            for shape in ((n_out, n_in), (n_out,)):
                mu = (
                    torch.empty(shape).uniform_(-bound, bound)
                    if len(shape) == 2
                    else torch.zeros(shape)
                )
                self.mus.append(nn.Parameter(mu))
                self.rhos.append(nn.Parameter(torch.empty(shape).uniform_(*init_rho)))

    def network(self, x: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
        h = x
        for i in range(0, len(weights), 2):
            if i:
                h = F.relu(h)
            h = F.linear(h, weights[i], weights[i + 1])
        return h  # (B, C)

    def loss(self, x: torch.Tensor, y: torch.Tensor, size: int, closed_form_kl: bool):
        qs = [
            torch.distributions.Normal(mu, F.softplus(rho)) for mu, rho in zip(self.mus, self.rhos)
        ]
        weights = [q.rsample() for q in qs]
        log_lik = -F.cross_entropy(self.network(x, weights), y, reduction="sum") * (size / len(x))
        if closed_form_kl:
            kl = sum(torch.distributions.kl_divergence(q, self.prior).sum() for q in qs)
        else:
            kl = sum((q.log_prob(w) - self.prior.log_prob(w)).sum() for q, w in zip(qs, weights))
        return -(log_lik - kl)

    @torch.no_grad()
    def test_error(self, x: torch.Tensor, y: torch.Tensor, samples: int) -> float:
        probs = 0.0
        for _ in range(samples):
            weights = [
                mu + F.softplus(rho) * torch.randn_like(mu) for mu, rho in zip(self.mus, self.rhos)
            ]
            probs = probs + self.network(x, weights).softmax(-1)
        return 1.0 - (probs.argmax(-1) == y).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="fashion_mnist")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--train-rows", type=int, default=0, help="first rows only (0: all)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--hidden", type=int, nargs="+", default=[400, 400])
    parser.add_argument("--prior-sigma", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--elbo", default="trace", choices=["trace", "meanfield", "jit"])
    parser.add_argument("--eval-samples", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: default)")
    add_optim_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/bnn.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)  # on 2 shared cores more threads oversubscribe
    # the trainer's default (trainer.validate=false) for both sides: torch.distributions
    # validates arguments by default, which would slow the plain-PyTorch reference alone
    pyro.enable_validation(False)

    data = load_dataset(args.data)
    if args.train_rows:
        rows = slice(0, args.train_rows)
        data = dataclasses.replace(data, train_x=data.train_x[rows], train_y=data.train_y[rows])
    pyro.set_rng_seed(0)
    zoo_model = BNN.build(
        data, hidden_dims=args.hidden, prior="gaussian", prior_sigma=args.prior_sigma
    )
    settings = TrainSettings(epochs=1, batch_size=args.batch_size, elbo=args.elbo, progress=False)
    trainer = Trainer(zoo_model, data, Adam({"lr": args.lr}, implementation=args.optim), settings)
    torch.manual_seed(0)
    sizes = [data.num_features, *args.hidden, data.num_classes]
    reference = TorchBBB(sizes, args.prior_sigma)
    optimizer = reference_adam(reference.parameters(), args.lr, args.torch_adam)
    closed_form = args.elbo == "meanfield"

    def zoo_epoch(epoch: int) -> float:
        trainer.settings = settings.model_copy(update={"epochs": epoch})
        return trainer.fit()[-1]["train/loss"]

    def torch_epoch() -> float:
        x, y, n = data.train_x, data.train_y, len(data.train_x)
        loss = lambda index: reference.loss(x[index], y[index], n, closed_form)  # noqa: E731
        return reference_epoch(loss, optimizer, n, args.batch_size)

    zoo_times, torch_times = alternate(args.epochs, zoo_epoch, torch_epoch)
    torch.manual_seed(1)
    zoo_error = zoo_model.evaluate(data, num_samples=args.eval_samples, ood=None)["test/error"]
    torch.manual_seed(1)
    torch_error = reference.test_error(data.test_x, data.test_y, args.eval_samples)
    settings_used = vars(args) | {"out": str(args.out), "train_rows_used": len(data.train_x)}
    result = ratios_result("bnn_vs_torch", settings_used, zoo_times, torch_times)
    result["test_error"] = {"zoo": zoo_error, "torch": torch_error}
    write_result(result, args.out)
    print(
        f"zoo / torch epoch time: median {result['ratio_median']:.3f} "
        f"(min {result['ratio_min']:.3f}, max {result['ratio_max']:.3f}) over {len(result['ratios'])} epochs; "
        f"test error zoo {zoo_error:.4f}, torch {torch_error:.4f}; written to {args.out}"
    )


if __name__ == "__main__":
    main()

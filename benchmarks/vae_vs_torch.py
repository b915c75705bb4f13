"""VAE epoch time: the zoo's SVI trainer against the same VAE written in plain PyTorch.

Both train the same architecture (784-400-50 by default), the same single-sample
reparameterized ELBO with the data term scaled by N / batch, the same Adam settings, batch
size and dynamic binarization. Epochs are interleaved (zoo, torch, zoo, torch, ...) in one
process so that both see the same machine load; the printed ratio is the median of the
per-epoch ratios. The test ELBO of both after the last epoch checks that the two did the same
work.

    python benchmarks/vae_vs_torch.py --data fashion_mnist --epochs 6
    python benchmarks/vae_vs_torch.py --data fashion_mnist --epochs 13 --train-rows 12800
    python benchmarks/vae_vs_torch.py --data digits --hidden 128 --latent 8 --epochs 20
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path

import pyro
import torch
from optim_flags import add_optim_arguments, reference_adam  # benchmarks/optim_flags.py
from side_by_side import alternate, ratios_result, reference_epoch, write_result
from torch import nn

from zoo.data import load_dataset
from zoo.models import VAE
from zoo.models.vae import binarize
from zoo.optim import Adam
from zoo.train import Trainer, TrainSettings


class TorchVAE(nn.Module):
    """The reference: encoder and decoder as in zoo.models.vae, the ELBO by hand."""

    def __init__(self, num_features: int, hidden: int, latent: int):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(num_features, hidden), nn.Softplus(), nn.Linear(hidden, 2 * latent)
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent, hidden), nn.Softplus(), nn.Linear(hidden, num_features)
        )

    def loss(self, x: torch.Tensor, size: int) -> torch.Tensor:
        loc, log_scale = self.encoder(x).chunk(2, dim=-1)
        scale = log_scale.exp()
        z = loc + scale * torch.randn_like(loc)
        logits = self.decoder(z)
        log_lik = -nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(
            -1
        )
        log_prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        log_q = torch.distributions.Normal(loc, scale).log_prob(z).sum(-1)
        return -(size / len(x)) * (log_lik + log_prior - log_q).sum()

    @torch.no_grad()
    def test_elbo(self, x: torch.Tensor) -> float:
        loc, log_scale = self.encoder(x).chunk(2, dim=-1)
        q = torch.distributions.Normal(loc, log_scale.exp())
        z = q.rsample()
        logits = self.decoder(z)
        log_lik = -nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(
            -1
        )
        kl = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(-1)
        return (log_lik - kl).mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="fashion_mnist")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--train-rows", type=int, default=0, help="first rows only (0: all)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=400)
    parser.add_argument("--latent", type=int, default=50)
    parser.add_argument("--elbo", default="trace", choices=["trace", "jit"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    add_optim_arguments(parser)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/vae.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)  # on 2 shared cores more threads oversubscribe
    # the trainer's default (trainer.validate=false) for both sides: torch.distributions
    # validates arguments by default, which would slow the plain-PyTorch reference alone
    pyro.enable_validation(False)

    data = load_dataset(args.data)
    if args.train_rows:  # shorter epochs: more of them, so more ratios, in the same time
        rows = slice(0, args.train_rows)
        data = dataclasses.replace(data, train_x=data.train_x[rows], train_y=data.train_y[rows])
    x_test = VAE.test_inputs(data.test_x)
    pyro.set_rng_seed(0)
    zoo_model = VAE.build(data, latent_dim=args.latent, hidden_dims=[args.hidden])
    settings = TrainSettings(epochs=1, batch_size=args.batch_size, elbo=args.elbo, progress=False)
    trainer = Trainer(zoo_model, data, Adam({"lr": 1e-3}, implementation=args.optim), settings)
    torch.manual_seed(0)
    reference = TorchVAE(data.num_features, args.hidden, args.latent)
    optimizer = reference_adam(reference.parameters(), 1e-3, args.torch_adam)

    def zoo_epoch(epoch: int) -> float:
        trainer.settings = settings.model_copy(update={"epochs": epoch})
        return trainer.fit()[-1]["train/loss"]

    def torch_epoch() -> float:
        x = binarize(data.train_x)  # dynamic binarization, as the zoo's epoch does it
        loss = lambda index: reference.loss(x[index], len(x))  # noqa: E731
        return reference_epoch(loss, optimizer, len(x), args.batch_size)

    zoo_times, torch_times = alternate(args.epochs, zoo_epoch, torch_epoch)
    torch.manual_seed(1)
    zoo_elbo = zoo_model.evaluate(data, iw_samples=0)["test/elbo"]
    torch.manual_seed(1)
    torch_elbo = reference.test_elbo(x_test)
    settings_used = vars(args) | {"out": str(args.out), "train_rows_used": len(data.train_x)}
    result = ratios_result("vae_vs_torch", settings_used, zoo_times, torch_times)
    result["test_elbo"] = {"zoo": zoo_elbo, "torch": torch_elbo}
    write_result(result, args.out)
    print(
        f"zoo / torch epoch time: median {result['ratio_median']:.3f} "
        f"(min {result['ratio_min']:.3f}, max {result['ratio_max']:.3f}) over {len(result['ratios'])} epochs; "
        f"test ELBO zoo {zoo_elbo:.2f}, torch {torch_elbo:.2f} "
        f"(differ by {abs(zoo_elbo - torch_elbo):.2f} nats); written to {args.out}"
    )
    assert math.isfinite(result["ratio_median"])


if __name__ == "__main__":
    main()

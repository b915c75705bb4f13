"""Variational autoencoder (Kingma & Welling 2014) with its amortized guide.

Model:  z_i ~ Normal(0, I),  x_i ~ Bernoulli(logits = decoder(z_i)),  inside a data plate.
Guide:  q(z_i | x_i) = Normal(loc(x_i), scale(x_i)) from an encoder network
        (:class:`zoo.guides.AmortizedNormal`), scale through exp or softplus.

Pixels are binarized dynamically: each epoch draws x ~ Bernoulli(intensity) afresh for the
training set, while the test set is binarized once from a fixed seed so that test numbers
are comparable across runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pydantic import Field
from pyro.nn import pyro_method
from torch import nn

from zoo import plots
from zoo.guides import AmortizedNormal
from zoo.metrics import elbo_parts, importance_log_likelihood
from zoo.models.base import ModelSettings, ZooModel, data_plate
from zoo.progress import progress_bar
from zoo.schema import Settings, setting

ACTIVATIONS = {"softplus": nn.Softplus, "relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU}
TEST_BINARIZATION_SEED = 20140101  # fixed once for all runs: test numbers stay comparable
# decoder passes per chunk of the importance-weighted estimate: their logits (5000 x 784
# floats, 16 MB) stay near the cache for the elementwise log density, which at 250,000 rows
# per chunk (0.8 GB) runs at memory speed. benchmarks/iwae_evaluation.py (Fashion-MNIST
# shapes, one thread, both cores busy with other jobs): 1.73 times the decoder's matrix
# multiplies alone, against 2.02 untraced at 250,000 rows and 3.59 traced
IW_ROWS_PER_CHUNK = 5000


Activation = Literal["softplus", "relu", "tanh", "elu"]
LayerSizes = list[Annotated[int, Field(ge=1)]]


class VAEEvaluation(Settings):
    iw_samples: int = setting(
        5000, "an integer >= 0 (K of the importance-weighted log p(x); 0: none)", ge=0
    )
    batch_size: int = setting(500, "an integer >= 1 (test images per pass)", ge=1)
    active_threshold: float = setting(0.01, "a finite number >= 0", ge=0.0)


class VAESettings(ModelSettings):
    name: Literal["vae"] = "vae"
    #: the dimension of the latent code z
    latent_dim: int = setting(50, "an integer >= 1", ge=1)
    hidden_dims: LayerSizes = setting([400], "a list of integers >= 1, e.g. [128] or [] for none")
    activation: Activation = setting("softplus", "softplus, relu, tanh or elu")
    scale: Literal["exp", "softplus"] = setting("exp", "exp or softplus")
    free_bits: float = setting(
        0.0, "a finite number >= 0 (nats per latent dimension, zoo.free_bits; 0: the ELBO)", ge=0.0
    )
    evaluation: VAEEvaluation = setting(VAEEvaluation(), "the evaluation settings", trains=False)

    def data_problem(self, data) -> str | None:
        if data.kind != "image":
            return (
                f"model=vae models images (a Bernoulli likelihood of pixel intensities in [0, 1]), "
                f"and data={data.name} is {data.kind} data; use data=digits, fashion_mnist or mnist"
            )
        return None

    def trainer_problem(self, trainer) -> str | None:
        if self.free_bits > 0 and trainer.elbo not in ("trace", "meanfield"):
            return (
                f"model.free_bits={self.free_bits} needs trainer.elbo=trace or meanfield "
                f"(the free-bits objective extends those two), got trainer.elbo={trainer.elbo}"
            )
        return None


def mlp(sizes: Sequence[int], activation: str) -> nn.Sequential:
    """Linear layers of the given sizes with ``activation`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i > 0:
            layers.append(ACTIVATIONS[activation]())
        layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """x (B, D) -> (loc, raw_scale), each (B, latent_dim)."""

    def __init__(
        self, num_features: int, hidden_dims: Sequence[int], latent_dim: int, activation: str
    ):
        super().__init__()
        self.net = mlp([num_features, *hidden_dims, 2 * latent_dim], activation)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, raw_scale = self.net(x).chunk(2, dim=-1)
        return loc, raw_scale


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Samples each pixel from Bernoulli(intensity)."""
    return torch.bernoulli(x, generator=generator)


class VAE(ZooModel):
    """A VAE on flattened images with pixel intensities in [0, 1].

    :param int num_features: pixels per image (D).
    :param int latent_dim: size of z.
    :param hidden_dims: hidden layer sizes of the decoder; the encoder mirrors them.
    :param str activation: ``softplus``, ``relu``, ``tanh`` or ``elu``.
    :param str scale: how the encoder's raw output becomes the guide's scale: ``exp`` or
        ``softplus``.
    :param float free_bits: nats per latent dimension below which the KL of a dimension,
        averaged over the minibatch, does not count in training (:mod:`zoo.free_bits`);
        0 trains on the ELBO. The evaluation always reports the ELBO itself.
    """

    Settings = VAESettings
    replayable = True  # tests/test_replay.py trains it both ways, bit for bit

    def __init__(
        self,
        num_features: int,
        latent_dim: int = 50,
        hidden_dims: Sequence[int] = (400,),
        activation: str = "softplus",
        scale: str = "exp",
        free_bits: float = 0.0,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.latent_dim = latent_dim
        # the KL of each dimension of z, averaged over the minibatch, counts above this only
        self.free_bits = {"z": free_bits} if free_bits > 0 else {}
        decoder_sizes = [latent_dim, *hidden_dims[::-1], num_features]
        self.decoder = mlp(decoder_sizes, activation)
        self.encoder = AmortizedNormal(
            self.model,
            Encoder(num_features, list(hidden_dims), latent_dim, activation),
            site="z",
            scale=scale,
            create_plates=lambda x, y=None, size=None: data_plate(x, size),
        )

    @pyro_method
    def model(self, x: torch.Tensor, y: torch.Tensor | None = None, size: int | None = None):
        """z ~ Normal(0, I), x ~ Bernoulli(logits = decoder(z)), in a data plate of ``size``
        rows."""
        decoder = self.decoder  # looked up once: registers its parameters with Pyro
        with data_plate(x, size):
            prior_loc = x.new_zeros(x.shape[0], self.latent_dim)
            z = pyro.sample("z", dist.Normal(prior_loc, 1.0).to_event(1))  # (B, L)
            logits = decoder(z)  # (B, D)
            pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x)

    @pyro_method
    def guide(self, x: torch.Tensor, y: torch.Tensor | None = None, size: int | None = None):
        """q(z | x) from the encoder (:class:`zoo.guides.AmortizedNormal`)."""
        return self.encoder(x, y, size)

    def prepare_epoch(self, x: torch.Tensor) -> torch.Tensor:
        return binarize(x)

    @staticmethod
    def test_inputs(x: torch.Tensor) -> torch.Tensor:
        """The fixed binarization of a test set: drawn on the CPU whatever ``x``'s device, since
        a CUDA generator with the same seed draws another stream (GPU runs would score
        another test set)."""
        generator = torch.Generator().manual_seed(TEST_BINARIZATION_SEED)
        return binarize(x.cpu(), generator).to(x.device)

    def importance_log_weights(self, x: torch.Tensor, num_samples: int) -> torch.Tensor:
        """``log p(x, z_k) - log q(z_k | x)`` for ``num_samples`` fresh draws z_k of the guide,
        shape ``(num_samples, len(x))``: the traced weights of :func:`zoo.metrics.importance_log_likelihood`
        (the same draws from the same random stream, the same numbers up to rounding) in plain
        torch, without a Pyro trace per chunk."""
        q = self.encoder.distribution(x)  # Normal(loc, scale).to_event(1), (B,) x (L,)
        z = q.rsample((num_samples,))  # (K, B, L)
        log_prior = dist.Normal(0.0, 1.0).log_prob(z).sum(-1)
        logits = self.decoder(z)  # (K, B, D)
        # log Bernoulli(x | logits) summed over pixels, = x . logits - sum softplus(logits): the
        # product as a batched reduction, never a (K, B, D) tensor of it (17% faster than
        # binary_cross_entropy_with_logits here, which makes three such tensors)
        log_likelihood = torch.einsum("kbd,bd->kb", logits, x) - F.softplus(logits).sum(-1)
        return log_likelihood + log_prior - q.log_prob(z)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel probabilities decoded from the posterior mean of z."""
        return torch.sigmoid(self.decoder(self.encoder.median(x)["z"]))

    @torch.no_grad()
    def sample_prior(self, n: int) -> torch.Tensor:
        """Pixel probabilities of n images decoded from z ~ p(z)."""
        device = next(self.decoder.parameters()).device
        return torch.sigmoid(self.decoder(torch.randn(n, self.latent_dim, device=device)))

    @torch.no_grad()
    def evaluate(
        self,
        data,
        *,
        iw_samples: int = 5000,
        batch_size: int = 500,
        active_threshold: float = 0.01,
        progress: bool = False,
    ) -> dict[str, float]:
        """Test ELBO per image in nats with its parts, the importance-weighted log p(x) with
        ``iw_samples`` samples (K), and the number of active latent units (Burda et al. 2016:
        Cov_x(E_q[z_u | x]) > ``active_threshold``)."""
        x = self.test_inputs(data.test_x)
        n = len(x)
        reconstruction = kl = log_px = 0.0
        posterior_means = []
        batches = x.split(batch_size)
        for batch in progress_bar(batches, desc="test", total=len(batches), enabled=progress):
            r, k = elbo_parts(self.model, self.guide, batch)
            reconstruction, kl = reconstruction + r, kl + k
            if iw_samples > 0:
                log_px += (
                    importance_log_likelihood(
                        self.model,
                        self.guide,
                        batch,
                        num_samples=iw_samples,
                        chunk_size=max(1, IW_ROWS_PER_CHUNK // len(batch)),
                        log_weights=self.importance_log_weights,
                    )
                    .sum()
                    .item()
                )
            posterior_means.append(self.encoder.median(batch)["z"])
        active = (torch.cat(posterior_means).var(dim=0) > active_threshold).sum().item()
        metrics = {
            "test/elbo": (reconstruction - kl) / n,
            "test/reconstruction": reconstruction / n,
            "test/kl": kl / n,
            "test/active_units": int(active),
        }
        if iw_samples > 0:
            metrics["test/log_px"] = log_px / n
            metrics["test/iw_samples"] = iw_samples
        return metrics

    @torch.no_grad()
    def figures(self, data, history: list[dict], out_dir: Path) -> dict[str, str]:
        out_dir = Path(out_dir)
        x = self.test_inputs(data.test_x[:32])
        written = {
            "reconstructions": plots.image_pairs(
                x,
                self.reconstruct(x),
                data.shape,
                out_dir / "reconstructions.png",
                title="test images (left) and their reconstructions (right)",
            ),
            "prior_samples": plots.image_grid(
                self.sample_prior(64),
                data.shape,
                out_dir / "prior_samples.png",
                title="samples from the prior",
            ),
            "elbo_curve": plots.elbo_curve(history, out_dir / "elbo_curve.png"),
        }
        if self.latent_dim == 2 and data.test_y is not None:
            z = self.encoder.median(self.test_inputs(data.test_x))["z"]
            written["latent_scatter"] = plots.latent_scatter(
                z, data.test_y, out_dir / "latent_scatter.png"
            )
        return {name: str(path) for name, path in written.items()}

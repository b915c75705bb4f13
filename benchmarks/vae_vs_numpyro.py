"""VAE epoch time: the zoo against NumPyro, plain PyTorch and the step's matrix-multiply floor.

Five sides train the same VAE (784-400-50, softplus, Bernoulli pixels, a Normal guide with
exp scale from the encoder), the same single-sample reparameterized ``Trace_ELBO`` with the
data term scaled by N / batch, Adam (lr 1e-3), batch 128 and dynamic binarization, on one
thread each, epochs interleaved in one process (zoo, torch, NumPyro, floor, zoo, ...) so that
all see the same load:

- **zoo**: the zoo's trainer with its defaults (``Trace_ELBO``, fused Adam, each step
  shape recorded once and replayed: ``zoo.replay``);
- **zoo_pyro**: the same trainer with ``trainer.replay=false`` (Pyro traces every step);
- **torch**: the hand-written reference of ``benchmarks/vae_vs_torch.py`` (torch's Adam);
- **NumPyro**: ``numpyro.infer.SVI`` with its ``Trace_ELBO`` and ``numpyro.optim.Adam``, the
  networks as pure functions of ``numpyro.param`` arrays, the step ``jax.jit(svi.update)`` in a
  Python loop over the same batches (XLA on the same single core: benchmarks/one_core.py);
- **floor**: the step's eleven matrix multiplies alone in torch (four forward; seven backward:
  the gradient of each layer's weights, and of its input except the first layer's), on
  tensors of the step's shapes, nothing else.

    pip install -e ".[bench]"     # numpyro and jax, only for this benchmark
    python benchmarks/vae_vs_numpyro.py --epochs 9 --train-rows 12800

Each ratio is the median over epochs (the first left out: one-off costs, JIT compilation) of
the per-epoch ratio, with its smallest and largest; the test ELBO of each side after training
checks that they did the same work. It writes a JSON into ``benchmarks/results/``.
"""

from __future__ import annotations

# one core for every side, XLA's threads included: before jax is imported
import one_core

CORE = one_core.CORE

import argparse  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as ndist  # noqa: E402
import pyro  # noqa: E402
import torch  # noqa: E402
from side_by_side import (  # noqa: E402
    add_peer_arguments,
    interleave,
    peer_result,
    reference_epoch,
    trainer_epochs,
    training_rows,
    write_result,
)
from vae_vs_torch import TorchVAE  # noqa: E402

from zoo.models import VAE  # noqa: E402
from zoo.models.vae import binarize  # noqa: E402
from zoo.optim import Adam  # noqa: E402
from zoo.train import Trainer, TrainSettings  # noqa: E402


def _dense_init(key, n_in: int, n_out: int):
    """torch.nn.Linear's default initialization: U(-1/sqrt(n_in), 1/sqrt(n_in))."""
    bound = 1.0 / np.sqrt(n_in)
    k1, k2 = jax.random.split(key)
    return (
        jax.random.uniform(k1, (n_in, n_out), minval=-bound, maxval=bound),
        jax.random.uniform(k2, (n_out,), minval=-bound, maxval=bound),
    )


def _mlp(prefix: str, sizes: list[int], key):
    """The parameters of a softplus MLP as ``numpyro.param`` sites; returns its function."""
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        key, sub = jax.random.split(key)
        w0, b0 = _dense_init(sub, n_in, n_out)
        layers.append((numpyro.param(f"{prefix}.{i}.w", w0), numpyro.param(f"{prefix}.{i}.b", b0)))

    def apply(h):
        for i, (w, b) in enumerate(layers):
            if i > 0:
                h = jax.nn.softplus(h)
            h = h @ w + b
        return h

    return apply


def numpyro_vae(features: int, hidden: int, latent: int, size: int):
    """The model and guide in NumPyro, for minibatches of a data set of ``size`` rows."""
    key = jax.random.PRNGKey(0)

    def model(x):
        decoder = _mlp("decoder", [latent, hidden, features], key)
        with numpyro.handlers.scale(scale=size / x.shape[0]), numpyro.plate("data", x.shape[0]):
            z = numpyro.sample("z", ndist.Normal(jnp.zeros((x.shape[0], latent)), 1.0).to_event(1))
            numpyro.sample("x", ndist.Bernoulli(logits=decoder(z)).to_event(1), obs=x)

    def guide(x):
        encoder = _mlp("encoder", [features, hidden, 2 * latent], jax.random.PRNGKey(1))
        loc, log_scale = jnp.split(encoder(x), 2, axis=-1)
        with numpyro.handlers.scale(scale=size / x.shape[0]), numpyro.plate("data", x.shape[0]):
            numpyro.sample("z", ndist.Normal(loc, jnp.exp(log_scale)).to_event(1))

    return model, guide


def numpyro_test_elbo(svi, state, x: np.ndarray, size: int) -> float:
    """The single-sample ELBO per test image at the trained parameters (the model scales a
    batch's terms by size / len(x): the loss is -size / len(x) times the sum over x)."""
    params = svi.get_params(state)
    loss = numpyro.infer.Trace_ELBO().loss(jax.random.PRNGKey(7), params, svi.model, svi.guide, x)
    return -float(loss) / size


def floor_step(batch: int, features: int, hidden: int, latent: int):
    """The VAE step's eleven GEMMs on preallocated tensors of its shapes."""
    x = torch.randn(batch, features)
    h = torch.randn(batch, hidden)
    out2 = torch.randn(batch, 2 * latent)
    z = torch.randn(batch, latent)
    logits = torch.randn(batch, features)
    w1, w2 = torch.randn(hidden, features), torch.randn(2 * latent, hidden)
    w3, w4 = torch.randn(hidden, latent), torch.randn(features, hidden)

    def step():
        # forward: encoder x W1^T, h W2^T; decoder z W3^T, h W4^T
        torch.mm(x, w1.T)
        torch.mm(h, w2.T)
        torch.mm(z, w3.T)
        torch.mm(h, w4.T)
        # backward: weight gradients of the four layers, input gradients of the last three
        torch.mm(logits.T, h)
        torch.mm(logits, w4)
        torch.mm(h.T, z)
        torch.mm(h, w3)
        torch.mm(out2.T, h)
        torch.mm(out2, w2)
        torch.mm(h.T, x)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_peer_arguments(
        parser, epochs=9, train_rows=12800, out="benchmarks/results/vae_vs_numpyro.json"
    )
    parser.add_argument("--hidden", type=int, default=400)
    parser.add_argument("--latent", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(1)
    pyro.enable_validation(False)
    numpyro.enable_validation(False)

    data = training_rows("fashion_mnist", args.train_rows)
    n, d, b = len(data.train_x), data.num_features, args.batch_size
    steps = n // b
    x_test = VAE.test_inputs(data.test_x)

    def zoo_trainer(replay: bool) -> Trainer:
        pyro.set_rng_seed(0)
        model = VAE.build(data, latent_dim=args.latent, hidden_dims=[args.hidden])
        settings = TrainSettings(epochs=1, batch_size=b, progress=False, replay=replay)
        return Trainer(model, data, Adam({"lr": 1e-3}), settings)

    trainer, pyro_trainer = zoo_trainer(True), zoo_trainer(False)
    zoo_model = trainer.model
    torch.manual_seed(0)
    reference = TorchVAE(d, args.hidden, args.latent)
    optimizer = torch.optim.Adam(reference.parameters(), lr=1e-3)

    model, guide = numpyro_vae(d, args.hidden, args.latent, n)
    svi = numpyro.infer.SVI(model, guide, numpyro.optim.Adam(1e-3), numpyro.infer.Trace_ELBO())
    state = svi.init(jax.random.PRNGKey(0), jnp.asarray(binarize(data.train_x[:b]).numpy()))
    update = jax.jit(svi.update)
    floor = floor_step(b, d, args.hidden, args.latent)

    def torch_epoch(epoch: int) -> None:
        x = binarize(data.train_x)
        reference_epoch(lambda index: reference.loss(x[index], n), optimizer, n, b)

    def numpyro_epoch(epoch: int) -> None:
        nonlocal state
        x = jnp.asarray(binarize(data.train_x).numpy())
        order = np.random.permutation(n)[: steps * b].reshape(steps, b)
        for index in order:
            state, loss = update(state, x[index])
        jax.block_until_ready(loss)

    def floor_epoch(epoch: int) -> None:
        for _ in range(steps):
            floor()

    sides = {
        "zoo": trainer_epochs(trainer),
        "zoo_pyro": trainer_epochs(pyro_trainer),
        "torch": torch_epoch,
        "numpyro": numpyro_epoch,
        "floor": floor_epoch,
    }
    seconds = interleave(args.epochs, sides)

    torch.manual_seed(1)
    elbos = {
        "zoo": zoo_model.evaluate(data, iw_samples=0)["test/elbo"],
        "zoo_pyro": pyro_trainer.model.evaluate(data, iw_samples=0)["test/elbo"],
        "torch": reference.test_elbo(x_test),
        "numpyro": numpyro_test_elbo(svi, state, jnp.asarray(x_test.numpy()), n),
    }
    settings_used = vars(args) | {
        "out": str(args.out),
        "steps_per_epoch": steps,
        "core": one_core.CORE,
    }
    versions = {"numpyro": numpyro.__version__, "jax": jax.__version__}
    # test ELBO of each side after training: the sides did the same work
    result = peer_result("vae_vs_numpyro", settings_used, seconds, elbos, versions)
    write_result(result, args.out)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()

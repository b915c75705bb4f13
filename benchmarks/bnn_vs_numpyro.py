"""BNN epoch time: the zoo's Bayes by Backprop against NumPyro, plain PyTorch and the floor.

Five sides train the MLP 784-400-400-10 (ReLU) of ``benchmarks/bnn_vs_torch.py``: a N(0, 1)
prior on every weight and bias, the guide Normal(mu, softplus(rho)), one draw of every weight
per step (sampled weights: the zoo with ``local_reparameterization=False``, since NumPyro and
the reference sample weights), the Monte Carlo KL of ``Trace_ELBO``, Adam (lr 1e-3), batch
128, on one core and one thread each, epochs interleaved in one process:

- **zoo**: the zoo's trainer (fused Adam and replayed steps, ``zoo.replay``: its defaults);
- **zoo_pyro**: the same trainer with ``trainer.replay=false`` (Pyro traces every step);
- **torch**: ``TorchBBB`` of ``benchmarks/bnn_vs_torch.py`` (torch's Adam);
- **NumPyro**: ``numpyro.infer.SVI`` with ``Trace_ELBO``, the weights as ``numpyro.sample``
  sites and the guide's mu and rho as ``numpyro.param``, the step ``jax.jit(svi.update)``;
- **floor**: the step's eight matrix multiplies alone (three forward; the three weight
  gradients and two input gradients backward).

    pip install -e ".[bench]"
    python benchmarks/bnn_vs_numpyro.py --epochs 5 --train-rows 6400

The ratios are medians over epochs (the first left out), with their smallest and largest; the
test error of each side (10 weight draws) checks that they did the same work.
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
from bnn_vs_torch import TorchBBB  # noqa: E402
from side_by_side import (  # noqa: E402
    add_peer_arguments,
    interleave,
    peer_result,
    reference_epoch,
    trainer_epochs,
    training_rows,
    write_result,
)

from zoo.models import BNN  # noqa: E402
from zoo.optim import Adam  # noqa: E402
from zoo.train import Trainer, TrainSettings  # noqa: E402


def numpyro_bbb(sizes: list[int], size: int):
    """Model and guide: a N(0, 1) weight per site, Normal(mu, softplus(rho)) in the guide."""
    shapes = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        shapes += [(f"w{i}", (n_in, n_out)), (f"b{i}", (n_out,))]

    def network(x, weights):
        h = x
        for i in range(len(sizes) - 1):
            if i:
                h = jax.nn.relu(h)
            h = h @ weights[f"w{i}"] + weights[f"b{i}"]
        return h

    def model(x, y):
        weights = {
            name: numpyro.sample(name, ndist.Normal(jnp.zeros(shape), 1.0).to_event(len(shape)))
            for name, shape in shapes
        }
        with numpyro.handlers.scale(scale=size / x.shape[0]), numpyro.plate("data", x.shape[0]):
            numpyro.sample("y", ndist.Categorical(logits=network(x, weights)), obs=y)

    def guide(x, y):
        key = jax.random.PRNGKey(0)
        for name, shape in shapes:
            key, k1, k2 = jax.random.split(key, 3)
            bound = 1.0 / np.sqrt(shape[0]) if len(shape) == 2 else 0.0
            mu = numpyro.param(
                f"{name}_mu", jax.random.uniform(k1, shape, minval=-bound, maxval=bound)
            )
            rho = numpyro.param(
                f"{name}_rho", jax.random.uniform(k2, shape, minval=-5.0, maxval=-4.0)
            )
            numpyro.sample(name, ndist.Normal(mu, jax.nn.softplus(rho)).to_event(len(shape)))

    def test_error(params, x, y, draws: int, key) -> float:
        probs = 0.0
        for _ in range(draws):
            key, sub = jax.random.split(key)
            weights = {}
            for name, shape in shapes:
                sub, k = jax.random.split(sub)
                mu, rho = params[f"{name}_mu"], params[f"{name}_rho"]
                weights[name] = mu + jax.nn.softplus(rho) * jax.random.normal(k, shape)
            probs = probs + jax.nn.softmax(network(x, weights), -1)
        return 1.0 - float((probs.argmax(-1) == y).mean())

    return model, guide, test_error


def floor_step(batch: int, sizes: list[int]):
    """The step's eight GEMMs on tensors of its shapes."""
    acts = [torch.randn(batch, n) for n in sizes]
    weights = [torch.randn(n_out, n_in) for n_in, n_out in zip(sizes[:-1], sizes[1:])]

    def step():
        for a, w in zip(acts[:-1], weights):  # forward
            torch.mm(a, w.T)
        for i, w in enumerate(weights):  # backward: every weight, every input but the data's
            torch.mm(acts[i + 1].T, acts[i])
            if i:
                torch.mm(acts[i + 1], w)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_peer_arguments(
        parser, epochs=5, train_rows=6400, out="benchmarks/results/bnn_vs_numpyro.json"
    )
    parser.add_argument("--eval-samples", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    pyro.enable_validation(False)
    numpyro.enable_validation(False)

    data = training_rows("fashion_mnist", args.train_rows)
    n, b = len(data.train_x), args.batch_size
    steps = n // b
    sizes = [data.num_features, 400, 400, data.num_classes]

    def zoo_trainer(replay: bool) -> Trainer:
        pyro.set_rng_seed(0)
        model = BNN.build(
            data,
            hidden_dims=[400, 400],
            prior="gaussian",
            prior_sigma=1.0,
            local_reparameterization=False,
        )
        settings = TrainSettings(epochs=1, batch_size=b, progress=False, replay=replay)
        return Trainer(model, data, Adam({"lr": 1e-3}), settings)

    trainer, pyro_trainer = zoo_trainer(True), zoo_trainer(False)
    zoo_model = trainer.model
    torch.manual_seed(0)
    reference = TorchBBB(sizes, 1.0)
    optimizer = torch.optim.Adam(reference.parameters(), lr=1e-3)

    model, guide, numpyro_error = numpyro_bbb(sizes, n)
    x_np, y_np = jnp.asarray(data.train_x.numpy()), jnp.asarray(data.train_y.numpy())
    svi = numpyro.infer.SVI(model, guide, numpyro.optim.Adam(1e-3), numpyro.infer.Trace_ELBO())
    state = svi.init(jax.random.PRNGKey(0), x_np[:b], y_np[:b])
    update = jax.jit(svi.update)
    floor = floor_step(b, sizes)

    def torch_epoch(epoch: int) -> None:
        x, y = data.train_x, data.train_y
        reference_epoch(lambda index: reference.loss(x[index], y[index], n, False), optimizer, n, b)

    def numpyro_epoch(epoch: int) -> None:
        nonlocal state
        order = np.random.permutation(n)[: steps * b].reshape(steps, b)
        for index in order:
            state, loss = update(state, x_np[index], y_np[index])
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
    errors = {
        "zoo": zoo_model.evaluate(data, num_samples=args.eval_samples, ood=None)["test/error"],
        "zoo_pyro": pyro_trainer.model.evaluate(data, num_samples=args.eval_samples, ood=None)[
            "test/error"
        ],
        "torch": reference.test_error(data.test_x, data.test_y, args.eval_samples),
        "numpyro": numpyro_error(
            svi.get_params(state),
            jnp.asarray(data.test_x.numpy()),
            jnp.asarray(data.test_y.numpy()),
            args.eval_samples,
            jax.random.PRNGKey(1),
        ),
    }
    settings_used = vars(args) | {
        "out": str(args.out),
        "steps_per_epoch": steps,
        "core": one_core.CORE,
    }
    versions = {"numpyro": numpyro.__version__, "jax": jax.__version__}
    # test error of each side after training: the sides did the same work
    result = peer_result("bnn_vs_numpyro", settings_used, seconds, errors, versions)
    write_result(result, args.out)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()

"""Free bits (zoo.free_bits) against a hand computation: the objective is the ELBO with the KL
of each latent dimension, averaged over the minibatch, replaced by max(lambda, KL_j); it is
scaled with the data plate and annealed with the KL; a dimension below lambda gets no gradient,
draw by draw; and the trainer and the VAE config use it."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from zoo.data import load_dataset
from zoo.free_bits import FreeBitsTrace_ELBO, FreeBitsTraceMeanField_ELBO
from zoo.handlers import kl_annealing
from zoo.models import VAE
from zoo.train import Trainer, TrainSettings

N, B = 10, 2  # data set size, minibatch size
# per (data point, dimension): the guide's loc and scale; dims 0 and 2 have small KLs
LOC = torch.tensor([[0.05, 1.5, -0.1], [-0.05, -2.0, 0.1]])
SCALE = torch.tensor([[0.9, 0.3, 1.1], [1.0, 0.5, 0.95]])
X = torch.tensor([0.3, -0.7])


def model(x):
    with pyro.plate("data", N, subsample=torch.arange(len(x))):
        pyro.sample("z", dist.Normal(torch.zeros(len(x), 3), 1.0).to_event(1))
        # the likelihood ignores z, so that the closed-form objective is deterministic
        pyro.sample("x", dist.Normal(0.0, 1.0), obs=x)


def guide(x):
    loc = pyro.param("loc", LOC.clone())
    scale = pyro.param("scale", SCALE.clone(), constraint=dist.constraints.positive)
    with pyro.plate("data", N, subsample=torch.arange(len(x))):
        pyro.sample("z", dist.Normal(loc, scale).to_event(1))


def normal_kl(loc, scale):
    """KL(N(loc, scale) || N(0, 1)), elementwise."""
    return 0.5 * (scale**2 + loc**2 - 1) - torch.log(scale)


def log_likelihood():
    return dist.Normal(0.0, 1.0).log_prob(X).sum()


@pytest.fixture(autouse=True)
def clear_params():
    pyro.clear_param_store()


@pytest.mark.parametrize("beta", [1.0, 0.4])
def test_the_closed_form_objective_is_the_elbo_with_kl_per_dimension_floored(beta):
    free_bits = 0.1
    kl_per_dim = normal_kl(LOC, SCALE).mean(0)  # averaged over the minibatch
    assert (kl_per_dim < free_bits).tolist() == [True, False, True]  # the example has both kinds
    by_hand = -(N / B) * log_likelihood() + beta * N * torch.clamp(kl_per_dim, min=free_bits).sum()
    elbo = FreeBitsTraceMeanField_ELBO(free_bits={"z": free_bits})
    with kl_annealing(beta=beta):
        loss = elbo.differentiable_loss(model, guide, X)
        value = elbo.loss(model, guide, X)
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-6)
    assert value == pytest.approx(by_hand.item(), rel=1e-6)


def test_zero_free_bits_is_the_elbo():
    elbo = FreeBitsTraceMeanField_ELBO(free_bits={"z": 0.0})
    plain = pyro.infer.TraceMeanField_ELBO()
    assert elbo.loss(model, guide, X) == pytest.approx(plain.loss(model, guide, X), rel=1e-7)


def test_the_monte_carlo_objective_floors_the_kl_estimate_at_the_guides_draw():
    free_bits = 0.3
    elbo = FreeBitsTrace_ELBO(free_bits={"z": free_bits})
    torch.manual_seed(3)
    loss = elbo.differentiable_loss(model, guide, X)
    torch.manual_seed(3)
    z = dist.Normal(LOC, SCALE).rsample()  # the same draw as the guide's
    kl_estimate = dist.Normal(LOC, SCALE).log_prob(z) - dist.Normal(0.0, 1.0).log_prob(z)
    by_hand = (
        -(N / B) * log_likelihood() + N * torch.clamp(kl_estimate.mean(0), min=free_bits).sum()
    )
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-6)


@pytest.mark.parametrize("elbo_class", [FreeBitsTrace_ELBO, FreeBitsTraceMeanField_ELBO])
def test_a_dimension_below_lambda_gets_no_gradient_draw_by_draw(elbo_class):
    kl_per_dim = normal_kl(LOC, SCALE).mean(0)
    free_bits = 0.5  # well above dims 0 and 2 (also for a Monte Carlo draw), below dim 1
    assert kl_per_dim[1] > 1.0
    for seed in range(5):
        pyro.clear_param_store()
        torch.manual_seed(seed)
        elbo_class(free_bits={"z": free_bits}).differentiable_loss(model, guide, X).backward()
        grad = pyro.param("loc").grad
        if elbo_class is FreeBitsTrace_ELBO:  # the draw's estimate must be below lambda too
            torch.manual_seed(seed)
            z = dist.Normal(LOC, SCALE).rsample()
            estimate = (
                dist.Normal(LOC, SCALE).log_prob(z) - dist.Normal(0.0, 1.0).log_prob(z)
            ).mean(0)
            below = estimate < free_bits
        else:
            below = kl_per_dim < free_bits
        assert below.any() and not below.all()
        # zero up to rounding: the ELBO's KL and the penalty are summed in different orders
        assert torch.all(grad[:, below].abs() < 1e-6)
        assert torch.all(grad[:, ~below].abs() > 1e-2)


def test_the_elbo_without_free_bits_does_pull_those_dimensions():
    pyro.infer.TraceMeanField_ELBO().differentiable_loss(model, guide, X).backward()
    # d KL / d loc = loc: every dimension of every point is pulled towards the prior
    expected = (N / B) * LOC
    torch.testing.assert_close(pyro.param("loc").grad, expected)


@pytest.mark.parametrize(
    ("free_bits", "message"),
    [
        (
            {"w": 0.1},
            r"'w' is not a latent site of the model that the guide draws; those are \['z'\]",
        ),
        ({"x": 0.1}, r"'x' is not a latent site .*; those are \['z'\]"),
    ],
)
def test_sites_it_cannot_serve_are_named(free_bits, message):
    with pytest.raises(ValueError, match=message):
        FreeBitsTrace_ELBO(free_bits=free_bits).loss(model, guide, X)


@pytest.mark.parametrize("nats", [-0.1, math.inf, math.nan, "0.1"])
def test_lambda_must_be_a_finite_number_at_least_zero(nats):
    with pytest.raises(ValueError, match="free bits of site 'z' must be a finite number >= 0"):
        FreeBitsTrace_ELBO(free_bits={"z": nats})


def test_the_trainer_trains_the_vae_on_the_free_bits_objective():
    data = load_dataset("digits")
    vae = VAE(data.num_features, latent_dim=2, hidden_dims=[8], free_bits=0.25)
    assert vae.free_bits == {"z": 0.25}
    for elbo, expected in [
        ("trace", FreeBitsTrace_ELBO),
        ("meanfield", FreeBitsTraceMeanField_ELBO),
    ]:
        settings = TrainSettings(epochs=1, batch_size=32, elbo=elbo, progress=False)
        trainer = Trainer(vae, data, pyro.optim.Adam({"lr": 1e-3}), settings)
        assert type(trainer.elbo) is expected and trainer.elbo.free_bits == {"z": 0.25}
    plain = VAE(data.num_features, latent_dim=2, hidden_dims=[8])
    assert plain.free_bits == {}
    trainer = Trainer(plain, data, pyro.optim.Adam({"lr": 1e-3}), TrainSettings(progress=False))
    assert type(trainer.elbo) is pyro.infer.Trace_ELBO

"""The KL-annealing handler against log densities computed by hand."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from zoo.handlers import KLAnnealingMessenger, kl_annealing

X = torch.tensor([0.3, -1.2, 2.0, 0.7])


def global_model(x):
    z = pyro.sample("z", dist.Normal(0.0, 1.0))
    with pyro.plate("data", len(x)):
        pyro.sample("x", dist.Normal(z, 0.5), obs=x)


def global_guide(x):
    pyro.sample("z", dist.Normal(0.4, 0.3))


def local_model(x, size=None):
    with pyro.plate("data", size or len(x), subsample=torch.arange(len(x))):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, 0.5), obs=x)


def local_guide(x, size=None):
    with pyro.plate("data", size or len(x), subsample=torch.arange(len(x))):
        pyro.sample("z", dist.Normal(0.5 * x, 0.6))


def annealed_loss(elbo, model, guide, beta, *args, **kwargs):
    pyro.set_rng_seed(7)
    with kl_annealing(beta=beta):
        return elbo.differentiable_loss(model, guide, *args, **kwargs).item()


def guide_sample(guide, *args, **kwargs):
    """The sample the ELBO draws after the same seed."""
    pyro.set_rng_seed(7)
    return poutine.trace(guide).get_trace(*args, **kwargs).nodes["z"]["value"]


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.5, 1.0, 3.0])
def test_trace_elbo_weighs_only_the_kl_part(beta):
    z = guide_sample(global_guide, X)
    log_lik = dist.Normal(z, 0.5).log_prob(X).sum()
    log_prior = dist.Normal(0.0, 1.0).log_prob(z)
    log_q = dist.Normal(0.4, 0.3).log_prob(z)
    expected = -(log_lik + beta * (log_prior - log_q))
    actual = annealed_loss(Trace_ELBO(), global_model, global_guide, beta, X)
    assert actual == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("beta", [0.0, 0.25, 1.0])
def test_meanfield_elbo_weighs_the_analytic_kl(beta):
    z = guide_sample(global_guide, X)
    log_lik = dist.Normal(z, 0.5).log_prob(X).sum()
    kl = torch.distributions.kl_divergence(dist.Normal(0.4, 0.3), dist.Normal(0.0, 1.0))
    expected = -(log_lik - beta * kl)
    actual = annealed_loss(TraceMeanField_ELBO(), global_model, global_guide, beta, X)
    assert actual == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("beta", [0.0, 0.3, 1.0])
def test_same_numbers_under_plate_subsampling(beta):
    """A minibatch of 4 from 100 rows: every site in the plate is scaled by 100/4, the
    latent ones by beta as well."""
    size = 100
    z = guide_sample(local_guide, X, size=size)
    log_lik = dist.Normal(z, 0.5).log_prob(X)
    log_prior = dist.Normal(0.0, 1.0).log_prob(z)
    log_q = dist.Normal(0.5 * X, 0.6).log_prob(z)
    expected = -(size / len(X)) * (log_lik + beta * (log_prior - log_q)).sum()
    actual = annealed_loss(Trace_ELBO(), local_model, local_guide, beta, X, size=size)
    assert actual == pytest.approx(expected.item(), rel=1e-6)


def test_observed_and_subsample_sites_keep_their_scale():
    with kl_annealing(beta=0.2):
        trace = poutine.trace(local_model).get_trace(X, size=40)
    assert trace.nodes["z"]["scale"] == pytest.approx(0.2 * 10)
    assert trace.nodes["x"]["scale"] == pytest.approx(10)
    assert trace.nodes["data"]["scale"] == 1.0  # the plate's own subsample site


@pytest.mark.parametrize("inner", [True, False])
def test_multiplies_with_poutine_scale_in_either_order(inner):
    if inner:
        scaled = poutine.scale(kl_annealing(global_model, beta=0.5), scale=3.0)
    else:
        scaled = kl_annealing(poutine.scale(global_model, scale=3.0), beta=0.5)
    trace = poutine.trace(scaled).get_trace(X)
    assert trace.nodes["z"]["scale"] == pytest.approx(1.5)
    assert trace.nodes["x"]["scale"] == pytest.approx(3.0)


def test_guide_sites_are_scaled_and_beta_can_change_between_steps():
    annealer = KLAnnealingMessenger(0.0)
    with annealer:
        assert poutine.trace(global_guide).get_trace(X).nodes["z"]["scale"] == 0.0
    annealer.beta = 0.75
    with annealer:
        assert poutine.trace(global_guide).get_trace(X).nodes["z"]["scale"] == 0.75


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "1", torch.ones(2)])
def test_bad_beta_is_refused(bad):
    with pytest.raises((ValueError, TypeError), match="beta"):
        KLAnnealingMessenger(bad)


def test_svi_step_with_beta_zero_learns_only_the_reconstruction():
    """With beta = 0 the guide's loc goes to the maximum-likelihood z (the data point, 2.0),
    not to the posterior mean 1.6 that the prior pulls towards 0."""
    x = torch.tensor([2.0])
    loc = torch.tensor(0.0, requires_grad=True)

    def guide(x):
        pyro.sample("z", dist.Normal(loc, 0.05))

    optimizer = torch.optim.Adam([loc], lr=0.05)
    for _ in range(400):
        optimizer.zero_grad()
        with kl_annealing(beta=0.0):
            Trace_ELBO().differentiable_loss(global_model, guide, x).backward()
        optimizer.step()
    assert loc.item() == pytest.approx(2.0, abs=0.1)


@pytest.mark.parametrize("annealing_inside", [True, False])
def test_composes_with_condition_in_either_order(annealing_inside):
    """The observed site keeps scale 1 whichever of the two handlers is outside."""
    data = {"x": X}

    def model():
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        with pyro.plate("data", len(X)):
            pyro.sample("x", dist.Normal(z, 0.5))

    if annealing_inside:
        annealed = poutine.condition(kl_annealing(model, beta=0.1), data=data)
    else:
        annealed = kl_annealing(poutine.condition(model, data=data), beta=0.1)
    trace = poutine.trace(annealed).get_trace()
    assert trace.nodes["x"]["is_observed"]
    assert trace.nodes["x"]["scale"] == 1.0
    assert trace.nodes["z"]["scale"] == pytest.approx(0.1)


def test_a_handler_outside_that_unobserves_a_site_is_refused():
    with pytest.raises(ValueError, match="site 'x' became latent.*apply that handler inside"):
        poutine.trace(poutine.uncondition(kl_annealing(global_model, beta=0.1))).get_trace(X)


def test_a_factor_is_never_annealed():
    def model():
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.factor("penalty", -(z**2))

    with kl_annealing(beta=0.1):
        trace = poutine.trace(model).get_trace()
    assert trace.nodes["penalty"]["scale"] == 1.0


def enumerated_model(x):
    weights = pyro.sample("weights", dist.Dirichlet(torch.ones(2)))
    with pyro.plate("data", len(x)):
        k = pyro.sample("k", dist.Categorical(weights), infer={"enumerate": "parallel"})
        pyro.sample("x", dist.Normal(torch.tensor([-1.0, 1.0])[k], 1.0), obs=x)


def enumerated_guide(x):
    pyro.sample("weights", dist.Dirichlet(torch.tensor([2.0, 3.0])))


def test_an_enumerated_site_is_summed_out_as_part_of_the_likelihood():
    """Under TraceEnum_ELBO the loss is -(log sum_k p(x, k | w) + beta (log p(w) - log q(w))):
    the enumerated site keeps the observation's scale."""
    beta = 0.3
    pyro.set_rng_seed(7)
    w = poutine.trace(enumerated_guide).get_trace(X).nodes["weights"]["value"]
    components = dist.Normal(torch.tensor([-1.0, 1.0]), 1.0)
    log_lik = (w.log() + components.log_prob(X[:, None])).logsumexp(-1).sum()
    kl_part = dist.Dirichlet(torch.ones(2)).log_prob(w) - dist.Dirichlet(
        torch.tensor([2.0, 3.0])
    ).log_prob(w)
    expected = -(log_lik + beta * kl_part)
    pyro.set_rng_seed(7)
    with kl_annealing(beta=beta):
        elbo = pyro.infer.TraceEnum_ELBO(max_plate_nesting=1)
        actual = elbo.loss(enumerated_model, enumerated_guide, X)
    assert actual == pytest.approx(expected.item(), rel=1e-5)

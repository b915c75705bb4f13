"""What Pyro's own autoguide tests ask of ``AutoNormal`` and friends, asked of the zoo's guides
where the question applies to them (written for the zoo, not copied): initialization
strategies, deterministic and consistent summaries for every kind of support, Predictive,
plates, JIT, an AutoGuideList, and exact answers on conjugate models."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, JitTrace_ELBO, Predictive, Trace_ELBO, TraceMeanField_ELBO
from pyro.infer.autoguide import (
    AutoDiscreteParallel,
    AutoGuideList,
    init_to_feasible,
    init_to_mean,
    init_to_median,
    init_to_sample,
    init_to_value,
)

from zoo.guides import BayesByBackprop, MeanField

SUPPORTS = {
    "real": lambda: dist.Normal(torch.zeros(2), 1.0).to_event(1),
    "positive": lambda: dist.Gamma(torch.full((2,), 3.0), 2.0).to_event(1),
    "unit_interval": lambda: dist.Beta(torch.full((2,), 2.0), 3.0).to_event(1),
    "simplex": lambda: dist.Dirichlet(torch.ones(3)),
    "interval": lambda: dist.Uniform(torch.zeros(2), torch.tensor([1.0, 4.0])).to_event(1),
    "greater_than": lambda: dist.Pareto(torch.ones(2), 3.0).to_event(1),
    "corr_cholesky": lambda: dist.LKJCholesky(3, 2.0),
}


def one_site_model(support):
    def model():
        pyro.sample("z", SUPPORTS[support]())

    return model


@pytest.mark.parametrize("support", sorted(SUPPORTS))
def test_median_and_quantiles_are_deterministic_consistent_and_in_the_support(support):
    model = one_site_model(support)
    guide = MeanField(model)
    guide()
    quantiles = guide.quantiles([0.25, 0.5, 0.75])
    again = guide.quantiles([0.25, 0.5, 0.75])
    assert torch.equal(quantiles["z"], again["z"])
    assert torch.equal(quantiles["z"][1], guide.median()["z"])
    fn = SUPPORTS[support]()
    for q in quantiles["z"]:
        if support == "simplex":  # marginal quantiles: each in [0, 1], their sum need not be 1
            assert ((q >= 0) & (q <= 1)).all()
        else:
            assert fn.support.check(q).all()


@pytest.mark.parametrize(
    "init_loc_fn",
    [init_to_feasible, init_to_mean, init_to_median, init_to_sample],
    ids=lambda f: f.__name__,
)
@pytest.mark.parametrize("guide_class", [MeanField, BayesByBackprop])
def test_each_of_pyros_init_strategies_gives_a_finite_start(guide_class, init_loc_fn):
    def model():
        pyro.sample("a", dist.Normal(torch.zeros(3), 1.0).to_event(1))
        pyro.sample("b", dist.Normal(2.0, 0.5))

    guide = guide_class(model, init_loc_fn=init_loc_fn)
    loss = Trace_ELBO().loss(model, guide)
    assert math.isfinite(loss)


def test_init_to_value_sets_the_median():
    def model():
        pyro.sample("s", dist.LogNormal(0.0, 1.0))
        pyro.sample("p", dist.Beta(2.0, 2.0))

    guide = MeanField(model, init_loc_fn=init_to_value(values={"s": torch.tensor(3.0)}))
    assert guide.median()["s"].item() == pytest.approx(3.0, rel=1e-5)


@pytest.mark.parametrize("guide_class", [MeanField, BayesByBackprop])
def test_conjugate_normal_mean_and_sd_are_exact(guide_class):
    """One Normal mean with a Normal prior: the posterior is in the family, so the fit is exact
    up to the optimizer's noise (mean and sd within 5%)."""
    x = torch.tensor([0.9, 1.4, 2.1, 1.1, 0.5, 1.8, 1.2, 1.6])

    def model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    guide = guide_class(model)
    steps = 300
    optim = pyro.optim.ClippedAdam({"lr": 0.1, "lrd": 0.02 ** (1 / steps)})
    svi = SVI(model, guide, optim, TraceMeanField_ELBO(num_particles=8, vectorize_particles=True))
    for _ in range(steps):
        svi.step(x)
    n = len(x)
    q = guide.get_posterior(x)["mu"]
    assert q.mean.item() == pytest.approx(x.sum().item() / (n + 1), rel=0.05)
    assert q.stddev.item() == pytest.approx(1 / math.sqrt(n + 1), rel=0.05)


@pytest.mark.parametrize("guide_class", [MeanField, BayesByBackprop])
def test_predictive_draws_the_sites_in_their_shapes(guide_class):
    def model(x, y=None):
        w = pyro.sample("w", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        with pyro.plate("data", len(x)):
            return pyro.sample("y", dist.Normal(x @ w, 0.5), obs=y)

    x, y = torch.randn(6, 2), torch.randn(6)
    guide = guide_class(model)
    guide(x, y)
    draws = Predictive(model, guide=guide, num_samples=7)(x)
    # as for AutoNormal: Predictive keeps a plate dim of size 1 on a site outside the plate
    assert draws["w"].shape == (7, 1, 2) and draws["y"].shape == (7, 6)


@pytest.mark.parametrize("guide_class", [MeanField, BayesByBackprop])
def test_jit_elbo_matches_the_plain_elbo(guide_class):
    def model():
        pyro.sample("a", dist.Normal(torch.zeros(3), 1.0).to_event(1))

    guide = guide_class(model)
    guide()
    pyro.set_rng_seed(4)
    plain = Trace_ELBO().loss(model, guide)
    pyro.set_rng_seed(4)
    jit = JitTrace_ELBO().loss(model, guide)
    assert jit == pytest.approx(plain, rel=1e-5)


def test_nested_plates_give_each_factor_the_sites_batch_shape():
    def model():
        with pyro.plate("outer", 3, dim=-2), pyro.plate("inner", 4, dim=-1):
            pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("s", dist.LogNormal(0.0, 1.0))

    guide = MeanField(model)
    trace = poutine.trace(guide).get_trace()
    model_trace = poutine.trace(model).get_trace()
    assert trace.nodes["z"]["value"].shape == (3, 4)
    for name in ("z", "s"):
        frames = trace.nodes[name]["cond_indep_stack"]
        assert frames == model_trace.nodes[name]["cond_indep_stack"]
    assert guide.quantiles([0.1, 0.9])["s"].shape == (2, 3, 4)


def test_a_discrete_site_enumerated_beside_meanfield_in_an_autoguidelist():
    """Pyro's pattern for mixed models: AutoDiscreteParallel for the discrete site, the zoo's
    guide for the continuous ones, under TraceEnum_ELBO."""

    def model(x):
        locs = pyro.sample("locs", dist.Normal(torch.tensor([-2.0, 2.0]), 1.0).to_event(1))
        with pyro.plate("data", len(x)):
            k = pyro.sample("k", dist.Categorical(torch.ones(2) / 2))
            pyro.sample("x", dist.Normal(locs[k], 0.5), obs=x)

    x = torch.tensor([-2.1, -1.8, 2.2, 1.9, 2.0])
    guide = AutoGuideList(model)
    guide.append(MeanField(poutine.block(model, hide=["k"])))
    guide.append(AutoDiscreteParallel(poutine.block(model, expose=["k"])))
    elbo = pyro.infer.TraceEnum_ELBO(max_plate_nesting=1)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), elbo)
    losses = [svi.step(x) for _ in range(100)]
    assert losses[-1] < losses[0]
    assert guide[0].median(x)["locs"].shape == (2,)  # AutoDiscreteParallel has no median

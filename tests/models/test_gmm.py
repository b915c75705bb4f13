"""The Bayesian GMM: its two forms agree, it recovers known components up to permutation,
restarts keep the best start, a step's cost does not depend on N, and its metrics."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO
from torch.utils._python_dispatch import TorchDispatchMode

from zoo.data import load_dataset
from zoo.handlers import kl_annealing
from zoo.metrics import adjusted_rand_index
from zoo.models import GMM
from zoo.models.gmm import best_permutation, initial_components
from zoo.train import Trainer, TrainSettings


@pytest.fixture(scope="module")
def faithful():
    return load_dataset("old_faithful")


def twin_models(x, k=3):
    """A mixture-form and an enumerated-form GMM with the same priors and guide values."""
    mixture = GMM(x.shape[1], k, loc_spread=2.0)
    enumerated = GMM(x.shape[1], k, form="enumerated", loc_spread=2.0)
    mixture.start_at(initial_components(x, k))
    enumerated.load_state_dict(mixture.state_dict())
    return mixture, enumerated


def test_mixture_and_enumerated_forms_give_the_same_log_likelihood_and_elbo():
    x = load_dataset("synthetic_gmm", n=500, components=3).train_x
    mixture, enumerated = twin_models(x)
    batch, size = x[:50], len(x)
    losses = []
    for model, elbo in [(mixture, Trace_ELBO()), (enumerated, TraceEnum_ELBO(max_plate_nesting=1))]:
        pyro.set_rng_seed(7)  # the same guide draws for both
        losses.append(elbo.loss(model.model, model.guide, batch, size=size))
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)

    # the likelihood alone, at fixed parameters: the summed-out joint equals the mixture
    params = mixture.posterior_mean()
    trace = poutine.trace(
        poutine.enum(poutine.condition(enumerated.model, data=params), first_available_dim=-2)
    ).get_trace(batch)
    site = trace.nodes["x"]
    log_joint = site["fn"].log_prob(batch) + trace.nodes["assignment"]["fn"].log_prob(
        trace.nodes["assignment"]["value"]
    )  # (K, B)
    expected = GMM.mixture(**params).log_prob(batch)
    assert torch.allclose(log_joint.logsumexp(0), expected, atol=1e-5)


@pytest.mark.parametrize("beta", [0.0, 0.4])
def test_the_two_forms_give_the_same_elbo_under_kl_annealing(beta):
    """The summed-out assignment is part of the likelihood in both forms, so annealing weighs
    the same terms: the enumerated form failed at its first step with Pyro's "share a common
    poutine.scale" error."""
    x = load_dataset("synthetic_gmm", n=200, components=3).train_x
    mixture, enumerated = twin_models(x)
    losses = []
    for model, elbo in [(mixture, Trace_ELBO()), (enumerated, TraceEnum_ELBO(max_plate_nesting=1))]:
        pyro.set_rng_seed(7)
        with kl_annealing(beta=beta):
            losses.append(elbo.loss(model.model, model.guide, x[:50], size=len(x)))
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


@pytest.mark.parametrize(
    "form,elbo", [("enumerated", "traceenum"), ("mixture", "meanfield"), ("mixture", "trace")]
)
def test_each_form_trains_with_its_elbos(faithful, form, elbo):
    model = GMM.build(faithful, form=form, restarts=1, restart_steps=5)
    settings = TrainSettings(epochs=2, batch_size=64, elbo=elbo, progress=False)
    history = Trainer(model, faithful, pyro.optim.Adam({"lr": 0.02}), settings).fit()
    assert all(math.isfinite(h["train/loss"]) for h in history)


def test_recovers_known_components_up_to_permutation():
    data = load_dataset("synthetic_gmm", n=3000, components=3, dims=2, seed=3)
    pyro.set_rng_seed(0)
    model = GMM.build(data, components=3, restarts=2, restart_steps=150)
    settings = TrainSettings(epochs=2, batch_size=200, progress=False)
    Trainer(model, data, pyro.optim.Adam({"lr": 0.02}), settings).fit()
    metrics = model.evaluate(data, mc_samples=20)
    assert metrics["test/ari"] > 0.95
    assert metrics["fit/max_error_weights"] < 0.03
    assert metrics["fit/max_error_locs"] < 0.15
    assert metrics["fit/max_error_scales"] < 0.15
    truth = data.truth
    order = best_permutation(model.posterior_mean()["locs"], truth["locs"])
    for k in range(3):  # the reported components are the matched ones, in the truth's order
        assert metrics[f"fit/mean_{k}_x0"] == pytest.approx(truth["locs"][k, 0].item(), abs=0.15)
    assert sorted(order.tolist()) == [0, 1, 2]


def collapsed_start(x, k):
    """Every component at the data's mean with the data's spread: a known bad start."""
    return {
        "weights": torch.full((k,), 1.0 / k),
        "locs": x.mean(0).expand(k, -1).clone() + 1e-3 * torch.randn(k, x.shape[1]),
        "scales": x.std(0).expand(k, -1).clone(),
    }


@pytest.mark.parametrize("bad_first", [True, False])
def test_restarts_keep_the_best_elbo_and_not_a_collapsed_start(bad_first):
    x = load_dataset("synthetic_gmm", n=2000, components=3, seed=1).train_x
    model = GMM(2, 3, loc_spread=2 * x.std(0), scale_median=0.5 * x.std(0))
    good, bad = initial_components(x, 3), collapsed_start(x, 3)
    starts = [bad, good] if bad_first else [good, bad]
    elbos = model.restart(x, starts, steps=10, batch_size=256, lr=0.05)
    assert model.restart_index == max(range(2), key=lambda i: elbos[i])
    assert model.restart_index == (1 if bad_first else 0)
    locs = model.posterior_mean()["locs"]
    assert torch.cdist(locs, locs).max() > 2 * x.std(0).min()  # the kept start is spread out


class RecordOps(TorchDispatchMode):
    """Records every torch operation with the shapes of its tensor arguments."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        shapes = [tuple(a.shape) for a in args if isinstance(a, torch.Tensor)]
        self.ops.append((str(func), shapes))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("form", ["mixture", "enumerated"])
def test_a_step_costs_the_same_at_n_1e3_and_1e6(form):
    """Every operation of one SVI step (model, guide, ELBO, gradients, optimizer) and every
    tensor shape in the traces is the same for N = 1e3 and N = 1e6 rows."""
    recorded = []
    for n in (1_000, 1_000_000):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        x = torch.randn(n, 2)
        model = GMM(2, 3, form=form)
        elbo = TraceEnum_ELBO(max_plate_nesting=1) if form == "enumerated" else Trace_ELBO()
        svi = SVI(model.model, model.guide, pyro.optim.Adam({"lr": 0.01}), elbo)
        index = torch.randint(n, (100,))  # what the trainer does with sampling=replacement
        svi.step(x[index], size=n)  # the first step creates the optimizer's state
        batch = x[torch.randint(n, (100,))]  # an O(batch) gather: its input is the data
        with RecordOps() as ops:
            svi.step(batch, size=n)
        guide_trace = poutine.trace(model.guide).get_trace(x[index], size=n)
        model_trace = poutine.trace(poutine.replay(model.model, trace=guide_trace)).get_trace(
            x[index], size=n
        )
        shapes = [
            (name, tuple(site["value"].shape))
            for trace in (guide_trace, model_trace)
            for name, site in trace.nodes.items()
            if site["type"] == "sample"
        ]
        recorded.append((ops.ops, shapes))
    (ops_small, shapes_small), (ops_large, shapes_large) = recorded
    assert shapes_small == shapes_large
    # SVI updates the parameters in the order of a set of tensors: compare as multisets
    assert len(ops_small) > 50 and sorted(ops_small) == sorted(ops_large)


def test_log_predictive_in_original_units_equals_the_mixture_there(faithful):
    model = GMM.build(faithful, restarts=1, restart_steps=50)
    metrics = model.evaluate(faithful, mc_samples=50)
    fitted = model.components_in_original_units(faithful)
    x = faithful.original_units(faithful.test_x)
    by_hand = GMM.mixture(**fitted).log_prob(x).mean().item()
    assert metrics["test/log_pred_plugin"] == pytest.approx(by_hand, abs=1e-4)
    assert abs(metrics["test/log_pred_mc"] - metrics["test/log_pred_plugin"]) < 0.1
    assert metrics["fit/mean_0_eruptions"] < metrics["fit/mean_1_eruptions"]  # sorted order
    assert metrics["fit/weight_0"] + metrics["fit/weight_1"] == pytest.approx(1.0, abs=1e-5)


def test_assignment_probabilities_are_distributions_over_components(faithful):
    model = GMM.build(faithful, restarts=1, restart_steps=50)
    for num_samples in (0, 10):
        probs = model.assignment_probs(faithful.test_x, num_samples=num_samples)
        assert probs.shape == (len(faithful.test_x), 2)
        assert torch.allclose(probs.sum(-1), torch.ones(len(probs)), atol=1e-5)


def test_adjusted_rand_index_by_hand_and_against_scikit_learn():
    a = torch.tensor([0, 0, 1, 1, 2, 2])
    assert adjusted_rand_index(a, torch.tensor([5, 5, 3, 3, 9, 9])) == pytest.approx(1.0)
    # sklearn's docstring example: adjusted_rand_score([0, 0, 1, 1], [0, 0, 1, 2]) = 0.571...
    assert adjusted_rand_index(
        torch.tensor([0, 0, 1, 1]), torch.tensor([0, 0, 1, 2])
    ) == pytest.approx(0.5714285714, abs=1e-9)
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        u = torch.randint(4, (300,), generator=generator)
        v = torch.where(torch.rand(300, generator=generator) < 0.6, u, torch.randint(5, (300,)))
        expected = sklearn_metrics.adjusted_rand_score(u.numpy(), v.numpy())
        assert adjusted_rand_index(u, v) == pytest.approx(expected, abs=1e-10)


def test_best_permutation_undoes_a_shuffle():
    truth = torch.randn(6, 2) * 5
    shuffle = torch.randperm(6)
    fitted = truth[shuffle] + 0.01 * torch.randn(6, 2)
    perm = best_permutation(fitted, truth)
    assert torch.allclose(fitted[perm], truth, atol=0.1)
    truth9 = torch.arange(9.0).unsqueeze(-1).expand(9, 2) * 10  # greedy beyond K = 8
    assert torch.equal(best_permutation(truth9.flip(0), truth9), torch.arange(8, -1, -1))


def test_figures_are_written(faithful, tmp_path):
    model = GMM.build(faithful, restarts=1, restart_steps=10)
    history = [
        {"epoch": 1, "train/loss": 2.0, "beta": 1.0},
        {"epoch": 2, "train/loss": 1.5, "beta": 1.0},
    ]
    figures = model.figures(faithful, history, tmp_path)
    assert set(figures) == {"elbo_curve", "components"}
    assert all((tmp_path / f"{name}.png").stat().st_size > 1000 for name in figures)


def test_a_model_trained_by_the_trainer_resumes_exactly(faithful, tmp_path):
    def trainer(out_dir, epochs):
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        model = GMM.build(faithful, restarts=2, restart_steps=10)
        settings = TrainSettings(
            epochs=epochs, batch_size=64, sampling="replacement", progress=False
        )
        return Trainer(model, faithful, pyro.optim.Adam({"lr": 0.02}), settings, out_dir=out_dir)

    straight = trainer(tmp_path / "a", 3)
    straight.fit()
    trainer(tmp_path / "b", 1).fit()
    resumed = trainer(tmp_path / "b", 3)
    resumed.resume()
    resumed.fit()
    for (name, a), (_, b) in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().items()
    ):
        assert torch.equal(a, b), name


def test_model_ignores_labels():
    x = torch.randn(10, 2)
    model = GMM(2, 2)
    pyro.set_rng_seed(0)
    a = Trace_ELBO().loss(model.model, model.guide, x, size=10)
    pyro.set_rng_seed(0)
    b = Trace_ELBO().loss(model.model, model.guide, x, torch.zeros(10, dtype=torch.long), size=10)
    assert a == b
    assert isinstance(
        GMM.mixture(torch.ones(2) / 2, x[:2], torch.ones(2, 2)), dist.MixtureSameFamily
    )


def test_component_log_probs_match_normal_log_prob():
    x = torch.randn(300, 3) * 3
    params = {
        "weights": torch.rand(5, 4).softmax(-1),
        "locs": torch.randn(5, 4, 3) * 3,
        "scales": torch.rand(5, 4, 3) + 0.3,
    }
    expected = params["weights"].log().unsqueeze(1) + dist.Normal(
        params["locs"].unsqueeze(1), params["scales"].unsqueeze(1)
    ).log_prob(x[None, :, None, :]).sum(-1)
    assert torch.allclose(GMM._component_log_probs(x, params), expected, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("offset", [100.0, 1000.0])
def test_component_log_probs_are_exact_far_from_the_origin(offset):
    """Raw, unstandardized data far from 0: within 1e-3 nats of the float64 density (expanding
    the quadratic around the origin was 0.008 nats off here at 100 and 0.5 at 1000)."""
    x = torch.randn(300, 2) + offset
    params = {
        "weights": torch.full((1, 2), 0.5),
        "locs": torch.tensor([[[-1.0, 0.0], [1.0, 0.5]]]) + offset,
        "scales": torch.full((1, 2, 2), 0.5),
    }
    expected = params["weights"].double().log().unsqueeze(1) + dist.Normal(
        params["locs"].double().unsqueeze(1), params["scales"].double().unsqueeze(1)
    ).log_prob(x.double()[None, :, None, :]).sum(-1)
    error = (GMM._component_log_probs(x, params).double() - expected).abs().max()
    assert error < 1e-3

"""The Bayesian neural network: its prior, its minibatch scaling and KL weights, local
reparameterization, its metrics, and the command line."""

import json
import math
import os

import pyro
import pytest
import torch
from pyro import poutine
from zoo_subprocess import zoo

from zoo.data import Dataset, load_dataset
from zoo.distributions import ScaleMixtureNormal
from zoo.handlers import linear, local_reparameterization
from zoo.models import BNN
from zoo.models.bnn import (
    auroc,
    calibration_table,
    expected_calibration_error,
    mixture_coverage,
)
from zoo.schedules import make_schedule
from zoo.train import Trainer, TrainSettings

# ---- the scale-mixture prior --------------------------------------------------------------


def test_scale_mixture_log_density_matches_a_direct_computation():
    pi, s1, s2 = 0.25, 1.0, math.exp(-6)
    w = torch.linspace(-3, 3, 61, dtype=torch.float64)

    def normal(x, s):
        return torch.exp(-(x**2) / (2 * s**2)) / (s * math.sqrt(2 * math.pi))

    direct = torch.log(pi * normal(w, s1) + (1 - pi) * normal(w, s2))
    prior = ScaleMixtureNormal(torch.zeros((), dtype=torch.float64), s1, s2, pi)
    assert torch.allclose(prior.log_prob(w), direct, rtol=1e-12)


def test_scale_mixture_log_density_stays_finite_far_in_the_tails():
    prior = ScaleMixtureNormal(0.0, 1.0, math.exp(-6), 0.5)
    w = torch.tensor([0.0, 1.0, 50.0, -1e3, 1e4], requires_grad=True)
    log_p = prior.log_prob(w)
    # far out, the narrow component's density underflows; the log density is the wide one's
    expected = math.log(0.5) - w.detach() ** 2 / 2 - 0.5 * math.log(2 * math.pi)
    assert torch.isfinite(log_p).all()
    assert torch.allclose(log_p[2:], expected[2:], rtol=1e-6)
    log_p.sum().backward()
    assert torch.isfinite(w.grad).all()
    spike = math.log(0.5 / math.sqrt(2 * math.pi) * (1 + math.exp(6)))  # both components at 0
    assert prior.log_prob(torch.tensor(0.0)).item() == pytest.approx(spike)


def test_scale_mixture_samples_have_its_variance():
    prior = ScaleMixtureNormal(0.0, 1.0, 0.1, 0.3).expand([200_000])
    assert prior.sample().var().item() == pytest.approx(0.3 + 0.7 * 0.01, rel=0.02)


# ---- minibatches and the KL weight --------------------------------------------------------


def toy(n_train=64):
    return load_dataset("toy_regression", n_train=n_train, n_test=64)


def small_bnn(data, **settings):
    settings = {"hidden_dims": [8], "prior": "gaussian", "noise": 0.1, **settings}
    return BNN.build(data, **settings)


@pytest.mark.parametrize("m", [3, 1000])
def test_blundell_weights_count_the_kl_once_per_epoch(m):
    """beta_i = M pi_i multiplies a KL that every step's full-data ELBO estimate counts once:
    over the M steps of an epoch the KL weights average to 1, as pi_i sum to 1."""
    schedule = make_schedule("blundell")
    betas = [schedule(0, i, m) for i in range(m)]
    assert all(math.isfinite(b) for b in betas)
    assert math.fsum(betas) / m == pytest.approx(1.0, rel=1e-9)
    assert betas[0] == pytest.approx(m / 2 / (1 - 2.0**-m))


def test_an_epoch_of_minibatch_losses_is_the_full_batch_loss_for_the_same_weights():
    """The data term is scaled by N / batch: with the weights held fixed (the same seed for
    the guide's draw), the mean of an epoch's minibatch losses is the full-batch loss."""
    data = toy()
    bnn = small_bnn(data, local_reparameterization=False)  # one weight draw for all rows
    elbo = pyro.infer.Trace_ELBO()
    x, y, n = data.train_x, data.train_y, len(data.train_x)

    def loss(index):
        pyro.set_rng_seed(1)
        return elbo.loss(bnn.model, bnn.guide, x[index], y[index], size=n)

    batches = torch.randperm(n).view(8, n // 8)
    epoch = sum(loss(b) for b in batches) / len(batches)
    assert epoch == pytest.approx(loss(torch.arange(n)), rel=1e-5)


def test_the_trainers_epoch_loss_estimates_the_full_batch_elbo():
    """Through the trainer, with the parameters frozen (lr = 0): the mean minibatch loss
    per data point matches the full-batch loss averaged over as many weight draws, up to
    Monte Carlo noise (4 standard errors)."""
    data = toy()
    bnn = small_bnn(data)
    settings = TrainSettings(epochs=40, batch_size=8, progress=False, validate=True)
    trainer = Trainer(bnn, data, pyro.optim.Adam({"lr": 0.0}), settings)
    history = trainer.fit()
    n = len(data.train_x)
    minibatch = torch.tensor([h["train/loss"] for h in history])  # mean over 8 steps each
    elbo = pyro.infer.Trace_ELBO()
    full = torch.tensor(
        [elbo.loss(bnn.model, bnn.guide, data.train_x, data.train_y) / n for _ in range(320)]
    )
    standard_error = math.sqrt(minibatch.var() / len(minibatch) + full.var() / len(full))
    assert abs(minibatch.mean() - full.mean()) < 4 * standard_error


# ---- local reparameterization -------------------------------------------------------------


def test_local_reparameterization_has_the_moments_of_weight_sampling():
    torch.manual_seed(0)
    x = torch.randn(5, 3)
    w_loc, w_scale = torch.randn(2, 3), 0.1 + torch.rand(2, 3)
    b_loc, b_scale = torch.randn(2), 0.1 + torch.rand(2)

    def layer(x):
        w = pyro.sample("w", pyro.distributions.Normal(w_loc, w_scale).to_event(2))
        b = pyro.sample("b", pyro.distributions.Normal(b_loc, b_scale).to_event(1))
        return linear(x, w, b)

    draws = 20_000
    sampled = torch.stack([layer(x) for _ in range(draws)])  # (S, 5, 2), weights drawn
    with local_reparameterization():
        local = torch.stack([layer(x) for _ in range(draws)])
    mean = x @ w_loc.T + b_loc
    variance = x**2 @ (w_scale**2).T + b_scale**2
    for outputs in (sampled, local):
        # 5 standard errors of a mean and of a variance of Normal draws
        assert ((outputs.mean(0) - mean).abs() < 5 * (variance / draws).sqrt()).all()
        assert ((outputs.var(0) - variance).abs() < 5 * variance * math.sqrt(2 / draws)).all()


def test_local_reparameterization_replays_the_guides_distribution_in_the_model():
    data = toy()
    bnn = small_bnn(data, local_reparameterization=True)
    x, y = data.train_x[:4], data.train_y[:4]
    guide_trace = poutine.trace(bnn.guide).get_trace(x, y)
    model_trace = poutine.trace(poutine.replay(bnn.model, trace=guide_trace)).get_trace(x, y)
    weights = [name for name in guide_trace.stochastic_nodes if name.endswith("weight")]
    assert weights and all(
        model_trace.nodes[name]["value"] is guide_trace.nodes[name]["value"] for name in weights
    )
    # the model's output is not the network at the drawn weights: it was sampled afresh
    with poutine.replay(trace=guide_trace):
        at_weights = bnn._outputs(x, 4)[0].squeeze(-1)
    assert not torch.allclose(model_trace.nodes["y"]["fn"].loc, at_weights)
    svi = pyro.infer.SVI(
        bnn.model, bnn.guide, pyro.optim.Adam({"lr": 0.01}), pyro.infer.Trace_ELBO()
    )
    assert math.isfinite(svi.step(data.train_x, data.train_y))


# ---- metrics ------------------------------------------------------------------------------


def test_calibration_error_and_auroc_by_hand():
    confidence = torch.tensor([0.95, 0.95, 0.55, 0.55])
    correct = torch.tensor([1.0, 1.0, 1.0, 0.0])
    table = calibration_table(confidence, correct, bins=15)
    # two non-empty bins: |1 - 0.95| and |0.5 - 0.55|, each half the points
    assert expected_calibration_error(table) == pytest.approx(0.05)
    assert table[2].sum() == 4
    assert auroc(torch.tensor([0.1, 0.2]), torch.tensor([0.3, 0.4])) == 1.0
    assert auroc(torch.tensor([0.1, 0.3]), torch.tensor([0.2, 0.4])) == 0.75
    assert auroc(torch.tensor([0.5]), torch.tensor([0.5])) == 0.5


@pytest.mark.parametrize(
    "guide,extra", [("bbb", {}), ("map", {}), ("mc_dropout", {"dropout": 0.5})]
)
def test_classification_metrics_and_reliability_figure(tmp_path, guide, extra):
    data = load_dataset("digits")
    bnn = BNN.build(data, hidden_dims=[16], guide=guide, **extra)
    metrics = bnn.evaluate(data, num_samples=5, ood=["noise"], ood_size=50)
    ood = [f"test/ood/noise/{key}" for key in ("entropy", "mutual_information", "auroc_entropy", "auroc_mi")]
    assert set(metrics) == {
        "test/error",
        "test/nll",
        "test/brier",
        "test/ece",
        "test/entropy",
        "test/mutual_information",
        *ood,
    }
    # the reliability table holds the test rows only (not the OOD ones), and the error agrees
    # with its per-bin accuracies; the metrics' arithmetic is checked by hand in test_bnn_nll.py
    confidence, accuracy, counts = bnn._last_evaluation["reliability"]
    assert counts.sum().item() == len(data.test_x)
    correct = (accuracy * counts).sum().item()
    assert metrics["test/error"] == pytest.approx(1 - correct / len(data.test_x), abs=1e-6)
    assert 0 <= metrics["test/ece"] <= 1
    assert 0 <= metrics["test/brier"] <= 2 and metrics["test/nll"] > 0
    figures = bnn.figures(data, [{"epoch": 1, "train/loss": 1.0, "beta": 1.0}], tmp_path)
    assert set(figures) == {"elbo_curve", "reliability", "entropy"}
    assert os.path.getsize(figures["entropy"]) > 1000
    assert os.path.getsize(figures["reliability"]) > 1000


def linear_data(n, seed):
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=generator)
    y = 2 * x.squeeze(-1) - 1 + 0.1 * torch.randn(n, generator=generator)
    return x, y


@pytest.mark.parametrize("draws", [1, 20])
def test_coverage_of_a_predictive_the_test_points_are_drawn_from(draws):
    """Test points drawn from the predictive mixture itself (pick a draw s, then
    y = mu_s + sigma_s eps) have a uniform predictive CDF, so each central interval covers its
    level: with 4000 points within 0.025 (more than 3 binomial standard errors). Empirical
    quantiles of the S noisy draws gave 0.87 at S = 20 and 0 at S = 1."""
    generator = torch.Generator().manual_seed(3)
    n = 4000
    means = torch.randn(draws, n, generator=generator)
    noises = 0.2 + torch.rand(draws, generator=generator)
    pick = torch.randint(draws, (n,), generator=generator)
    y = means[pick, torch.arange(n)] + noises[pick] * torch.randn(n, generator=generator)
    for level in (0.5, 0.95):
        assert mixture_coverage(means, noises, y, level) == pytest.approx(level, abs=0.025)


def test_the_map_guide_covers_its_nominal_rate():
    """One draw of the weights (the MAP guide) whose line and noise generated the test data: the
    predictive is exactly the data's distribution, so the 95% interval covers about 95% of 2000
    points (binomial standard error 0.005), the 50% interval about half (0.011)."""
    (x, y), (tx, ty) = linear_data(10, 1), linear_data(2000, 2)  # y = 2 x - 1 + 0.1 eps
    data = Dataset("line", "regression", x, y, tx, ty, (1,), None, "generated")
    bnn = BNN.build(data, hidden_dims=[], guide="map", noise=0.1)
    parameters = dict(bnn.approximation.named_parameters())
    with torch.no_grad():
        parameters["layers.0.weight_unconstrained"].fill_(2.0)
        parameters["layers.0.bias_unconstrained"].fill_(-1.0)
    metrics = bnn.evaluate(data, num_samples=20)
    assert metrics["test/coverage_95"] == pytest.approx(0.95, abs=0.02)
    assert metrics["test/coverage_50"] == pytest.approx(0.5, abs=0.04)


def test_coverage_of_a_well_specified_regression():
    """A BNN with no hidden layer and a learned noise is Bayesian linear regression, which the
    data follow: its central intervals must cover at their nominal rates. With 2000 test
    points a coverage has a binomial standard error of at most 0.011; the tolerance of 0.04
    (50%) and 0.025 (95%) leaves room for the mean-field fit and Monte Carlo quantiles."""
    (x, y), (tx, ty) = linear_data(500, 1), linear_data(2000, 2)
    data = Dataset("line", "regression", x, y, tx, ty, (1,), None, "generated")
    bnn = BNN.build(data, hidden_dims=[], prior="gaussian", noise=0.3, learn_noise=True)
    trainer = Trainer(
        bnn,
        data,
        pyro.optim.Adam({"lr": 0.02}),
        TrainSettings(epochs=60, batch_size=100, elbo="meanfield", progress=False),
    )
    trainer.fit()
    metrics = bnn.evaluate(data, num_samples=400)
    assert metrics["test/noise"] == pytest.approx(0.1, rel=0.15)
    assert metrics["test/coverage_50"] == pytest.approx(0.5, abs=0.04)
    assert metrics["test/coverage_95"] == pytest.approx(0.95, abs=0.025)


@pytest.mark.slow
def test_coverage_on_the_toy_problem(tmp_path):
    """The toy noise is heteroscedastic (eps also shifts x inside the sines: its effect on y
    ranges from 0.02 to 0.13), the likelihood homoscedastic, so the predictive is too wide
    where the data are tight and too narrow where they are spread: the 95% interval still
    covers about 95% of 1024 test points, the 50% interval more than half. Tolerances: the
    95% coverage within 0.04 (3 binomial standard errors plus the misfit), the 50% coverage
    between 0.45 and 0.8."""
    data = load_dataset("toy_regression", n_train=1024, n_test=1024)
    bnn = BNN.build(data, hidden_dims=[50, 50], prior="scale_mixture", learn_noise=True)
    trainer = Trainer(
        bnn,
        data,
        pyro.optim.Adam({"lr": 0.003}),
        TrainSettings(epochs=150, batch_size=128, progress=False),
    )
    trainer.fit()
    metrics = bnn.evaluate(data, num_samples=500)
    assert metrics["test/rmse"] < 0.1
    assert metrics["test/coverage_95"] == pytest.approx(0.95, abs=0.04)
    assert 0.45 < metrics["test/coverage_50"] < 0.8


# ---- settings --------------------------------------------------------------


@pytest.mark.parametrize(
    "settings,match",
    [
        ({"guide": "vi"}, "guide must be one of"),
        ({"guide": "mc_dropout"}, "MC dropout needs dropout > 0"),
        ({"guide": "bbb", "dropout": 0.5}, "other guides take dropout = 0"),
        ({"guide": "map", "local_reparameterization": True}, "needs guide=bbb"),
        ({"prior": "laplace"}, "prior must be one of"),
        ({"prior": "scale_mixture", "mixture_pi": 1.5}, "mixture_pi"),
        ({"activation": "gelu"}, "activation"),
    ],
)
def test_bad_settings_say_what_is_valid(settings, match):
    with pytest.raises(ValueError, match=match):
        BNN.build(toy(), **settings)


# ---- the command line ---------------------------------------------------------------------


FAST = [
    "model=bnn",
    "trainer.epochs=2",
    "trainer.progress=false",
    "model.evaluation.num_samples=20",
    "model.hidden_dims=[16]",
]


def test_the_toy_regression_runs_from_the_command_line(tmp_path):
    result = zoo(*FAST, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "bnn on toy_regression" in result.stdout and "test/coverage_95" in result.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["epochs"] == 2 and os.path.getsize(summary["figures"]["bands"]) > 1000
    assert set(os.listdir(tmp_path)) == {"run"}


def test_a_classifier_and_a_baseline_run_from_the_command_line(tmp_path):
    result = zoo(
        *FAST,
        "data=digits",
        "model.guide=mc_dropout",
        "model.dropout=0.5",
        "model.evaluation.ood_size=100",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "bnn on digits" in result.stdout and "test/ece" in result.stdout
    assert "figure reliability" in result.stdout


def test_resume_continues_a_bnn_run(tmp_path):
    """A fresh process builds the model under the same unique name, so the guide's
    parameters (named after the model's sites) load from the checkpoint."""
    run_dir = tmp_path / "run"
    assert zoo(*FAST, f"hydra.run.dir={run_dir}", cwd=tmp_path).returncode == 0
    result = zoo(*FAST, f"hydra.run.dir={run_dir}", "resume=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "after epoch 2" in result.stderr


def test_a_bad_model_setting_is_one_paragraph(tmp_path):
    result = zoo(*FAST, "model.guide=mc_dropout", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode != 0
    assert "model.dropout = 0.0 is not valid: guide=mc_dropout needs dropout > 0" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("guide,dropout", [("bbb", 0.0), ("map", 0.0), ("mc_dropout", 0.2)])
def test_site_names_are_process_independent_and_state_loads_into_a_second_model(guide, dropout):
    """Two BNNs in one process: deterministic site names, separate parameters, and the
    state of one loads into the other and gives the same predictions."""
    settings = dict(hidden_dims=[8], guide=guide, dropout=dropout)
    first, second = BNN(3, 2, **settings), BNN(3, 2, **settings)
    x = torch.randn(5, 3)
    trace = poutine.trace(first.guide).get_trace(x)
    assert "layers.0.weight" in trace.nodes
    assert not set(dict(first.named_parameters()).values()) & set(
        dict(second.named_parameters()).values()
    )
    second.load_state_dict(first.state_dict())
    pyro.set_rng_seed(3)
    a = poutine.trace(first.guide).get_trace(x).nodes["layers.0.weight"]["value"]
    pyro.set_rng_seed(3)
    b = poutine.trace(second.guide).get_trace(x).nodes["layers.0.weight"]["value"]
    assert torch.equal(a, b)


def test_local_reparameterization_does_not_change_the_initial_parameters():
    """Same seed, same start: tracing the model to set the guide up drew extra numbers (one
    per pre-activation) when local reparameterization was on."""
    states = []
    for local in (False, True):
        pyro.set_rng_seed(11)
        bnn = BNN(3, 2, hidden_dims=[8], local_reparameterization=local)
        states.append(bnn.approximation.state_dict())
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


@pytest.mark.parametrize(
    "guide, dropout, expected", [("bbb", 0.0, True), ("map", 0.0, False), ("mc_dropout", 0.5, False)]
)
def test_local_reparameterization_is_on_by_default_for_bayes_by_backprop_only(
    guide, dropout, expected
):
    bnn = BNN(3, 2, hidden_dims=[4], guide=guide, dropout=dropout)
    assert (bnn._local_reparameterization is not None) is expected
    settings = BNN.Settings(guide=guide, dropout=dropout)
    assert settings.local_reparameterization is None  # null in the config: the guide decides

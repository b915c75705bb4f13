"""The zoo's guides on Pyro models that are not the zoo's (``external_models.py``): each
trains, predicts, is saved, loaded (once per guide class in a fresh process that has the
models but not this file) and gives the same predictions after loading."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import external_models as em
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, JitTrace_ELBO, Predictive, Trace_ELBO, TraceMeanField_ELBO
from pyro.infer.autoguide import AutoGuideList, AutoNormal

from zoo.guides import AmortizedNormal, BayesByBackprop, MeanField, load_guide, save_guide


def train(model, guide, *args, steps=300, lr=0.05, elbo=None, decay=1.0):
    """SVI with Adam, its learning rate multiplied by ``decay`` at each step."""
    optim = pyro.optim.ClippedAdam({"lr": lr, "lrd": decay})
    svi = SVI(model, guide, optim, elbo or TraceMeanField_ELBO())
    losses = [svi.step(*args) for _ in range(steps)]
    return losses


def predict(model, guide, *args, num_samples=50, seed=1, sites=("y",)):
    pyro.set_rng_seed(seed)
    draws = Predictive(model, guide=guide, num_samples=num_samples, return_sites=sites)(*args)
    return {k: v.detach() for k, v in draws.items()}


def assert_same(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-6), name


# ---- conjugate linear regression: the mean-field optimum in closed form ------------------


def regression_data(n=40, d=3):
    torch.manual_seed(0)
    x = torch.randn(n, d)
    x[:, 1] = 0.8 * x[:, 0] + 0.6 * x[:, 1]  # correlated features: q differs from p's marginals
    y = x @ torch.tensor([1.0, -0.5, 0.3]) + em.NOISE * torch.randn(n)
    return x, y


def meanfield_optimum(x, y):
    """For the fully factorized Gaussian family, the coordinate-ascent fixed point is
    q(w_j) = N(m_j, 1 / Lambda_jj) with m = Lambda^{-1} b: the exact posterior mean, and
    scales from the diagonal of the posterior precision Lambda = X'X / s^2 + I / t^2
    (smaller than the posterior marginal scales sqrt(diag(Lambda^{-1})))."""
    precision = x.T @ x / em.NOISE**2 + torch.eye(x.shape[1]) / em.PRIOR_SCALE**2
    mean = torch.linalg.solve(precision, x.T @ y / em.NOISE**2)
    return mean, precision.diagonal().rsqrt(), torch.linalg.inv(precision).diagonal().sqrt()


@pytest.mark.parametrize("guide_class", ["MeanField", "BayesByBackprop"])
def test_linear_regression_reaches_the_meanfield_optimum(guide_class, tmp_path):
    x, y = regression_data()
    mean, scale, marginal_scale = meanfield_optimum(x, y)
    assert (marginal_scale > 1.2 * scale).any()  # the test tells the two apart
    if guide_class == "MeanField":
        model = em.linear_regression
        guide = MeanField(model)
    else:
        model = em.LinearRegressionNet(3)
        guide = BayesByBackprop(model)
    # a decaying step size: the fit settles at the optimum instead of jittering around it
    train(model, guide, x, y, steps=600, lr=0.05, decay=0.993)
    if guide_class == "MeanField":
        fitted = guide.median()["w"]
        fitted_scale = guide.distribution("w").base_dist.scale.detach()
    else:
        fitted = guide.median()["linear.weight"][0]
        fitted_scale = guide.distribution("linear.weight").base_dist.scale.detach()[0]
    assert torch.allclose(fitted, mean, atol=0.03)
    assert torch.allclose(fitted_scale, scale, rtol=0.2)

    before = predict(model, guide, x)
    save_guide(guide, tmp_path / "guide.pt", x[:2], y[:2])
    loaded = load_guide(tmp_path / "guide.pt", model)
    assert type(loaded) is type(guide) and loaded is not guide
    assert_same(predict(model, loaded, x), before)
    assert_same(loaded.median(), guide.median())


# ---- eight schools, non-centred --------------------------------------------------------


@pytest.mark.parametrize("elbo", [Trace_ELBO, TraceMeanField_ELBO])
def test_eight_schools(elbo, tmp_path):
    model, args = em.eight_schools, (em.SCHOOLS_SIGMA, em.SCHOOLS_Y)
    guide = MeanField(model)
    losses = train(model, guide, *args, steps=300, lr=0.05, elbo=elbo(num_particles=2))
    assert guide.family == {"mu": "normal", "tau": "lognormal", "eta": "normal"}
    assert sum(losses[-50:]) / 50 < sum(losses[:50]) / 50
    median = guide.median()
    assert 0 < median["mu"] < 9  # the posterior mean of mu is about 4.4
    assert median["tau"] > 0 and median["eta"].shape == (8,)
    quantiles = guide.quantiles([0.05, 0.95])
    assert (quantiles["mu"][0] < median["mu"]) and (median["mu"] < quantiles["mu"][1])

    before = predict(model, guide, em.SCHOOLS_SIGMA, sites=("y", "mu"))
    save_guide(guide, tmp_path / "schools.pt", *args)
    loaded = load_guide(tmp_path / "schools.pt", model)
    assert_same(predict(model, loaded, em.SCHOOLS_SIGMA, sites=("y", "mu")), before)


# ---- logistic regression ---------------------------------------------------------------


def classification_data(n=200):
    torch.manual_seed(1)
    x = torch.randn(n, 2)
    y = (x @ torch.tensor([3.0, -2.0]) + 0.5 + 0.5 * torch.randn(n) > 0).float()
    return x, y


@pytest.mark.parametrize("guide_class", [MeanField, BayesByBackprop])
def test_logistic_regression_classifies_and_predicts(guide_class, tmp_path):
    x, y = classification_data()
    model = em.LogisticRegression(2)
    guide = guide_class(model)
    train(model, guide, x[:150], y[:150], steps=300, lr=0.1, decay=0.995)
    draws = predict(model, guide, x[150:], num_samples=100)["y"]  # (100, 50)
    assert draws.shape == (100, 50)
    accuracy = ((draws.mean(0) > 0.5).float() == y[150:]).float().mean()
    assert accuracy >= 0.85  # 45 of 50 for the rule that made the labels

    save_guide(guide, tmp_path / "logistic.pt", x[:2], y[:2])
    loaded = load_guide(tmp_path / "logistic.pt", model)
    assert_same(predict(model, loaded, x[150:], num_samples=100), {"y": draws})


# ---- a Bayesian MLP written with plain PyroModule ------------------------------------


@pytest.mark.parametrize("guide_class", [BayesByBackprop, MeanField])
def test_bayesian_mlp(guide_class, tmp_path):
    torch.manual_seed(2)
    x = torch.linspace(-2, 2, 64).unsqueeze(-1)
    y = torch.sin(1.5 * x).squeeze(-1) + 0.1 * torch.randn(64)
    model = em.BayesianMLP()
    guide = guide_class(model) if guide_class is BayesByBackprop else guide_class(model)
    train(model, guide, x, y, steps=400, lr=0.03)
    f = predict(model, guide, x, num_samples=30, sites=("f",))["f"].mean(0)  # (64,)
    rmse = (f - y).pow(2).mean().sqrt()
    assert rmse < 0.6 * y.std()  # well below predicting the mean

    save_guide(guide, tmp_path / "mlp.pt", x[:2], y[:2])
    loaded = load_guide(tmp_path / "mlp.pt", model)
    assert_same(
        predict(model, loaded, x, num_samples=30, sites=("f",)),
        predict(model, guide, x, num_samples=30, sites=("f",)),
    )


# ---- a VAE-style model, amortized local latents beside a global one -------------------


def vae_data(n=128):
    torch.manual_seed(3)
    w = torch.randn(em.OBSERVED, em.LATENT)
    return torch.randn(n, em.LATENT) @ w.T + 0.1 * torch.randn(n, em.OBSERVED)


def vae_guide(model, encoder=None):
    guide = AutoGuideList(model, create_plates=lambda x: pyro.plate("data", x.shape[0]))
    guide.append(AutoNormal(poutine.block(model, expose=["w"])))
    guide.append(AmortizedNormal(model, encoder or em.Encoder(), site="z"))
    return guide


def test_vae_style_model_with_autoguidelist():
    x = vae_data()
    guide = vae_guide(em.linear_vae)
    losses = train(em.linear_vae, guide, x, steps=400, lr=0.02, elbo=Trace_ELBO())
    assert sum(losses[-50:]) < 0.5 * sum(losses[:50])
    median = guide.median(x)
    assert median["w"].shape == (em.OBSERVED, em.LATENT) and median["z"].shape == (128, 2)
    quantiles = guide.quantiles([0.1, 0.9], x)
    assert quantiles["z"].shape == (2, 128, 2) and (quantiles["z"][0] < quantiles["z"][1]).all()
    reconstruction = median["z"] @ median["w"].T
    assert (reconstruction - x).pow(2).mean() < 0.5 * x.var()
    draws = predict(em.linear_vae, guide, x, num_samples=5, sites=("z",))["z"]
    assert draws.shape == (5, 128, 2)


def test_amortized_guide_follows_a_randomly_subsampled_plate():
    """With ``subsample_size`` in the model and no ``create_plates``, the guide draws the
    subsample, the model replays it, and the encoder sees those rows of x."""
    x = vae_data(64)

    def model(x):
        w = pyro.sample("w", dist.Normal(torch.zeros(em.OBSERVED, em.LATENT), 1.0).to_event(2))
        with pyro.plate("data", x.shape[0], subsample_size=16) as rows:
            z = pyro.sample("z", dist.Normal(torch.zeros(16, em.LATENT), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ w.transpose(-1, -2), 0.1).to_event(1), obs=x[rows])

    local = AmortizedNormal(model, em.Encoder(), site="z")
    guide_trace = poutine.trace(local).get_trace(x)
    rows = guide_trace.nodes["data"]["value"]
    assert rows.shape == (16,) and guide_trace.nodes["z"]["value"].shape == (16, 2)
    expected = local.encoder(x[rows])[0]
    assert torch.allclose(guide_trace.nodes["z"]["fn"].base_dist.loc, expected)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    assert torch.equal(model_trace.nodes["data"]["value"], rows)
    guide = AutoGuideList(model)
    guide.append(MeanField(poutine.block(model, expose=["w"])))
    guide.append(AmortizedNormal(model, em.Encoder(), site="z"))
    for elbo in (Trace_ELBO(), TraceMeanField_ELBO(), JitTrace_ELBO()):
        train(model, guide, x, steps=3, elbo=elbo)


@pytest.mark.parametrize("elbo", [JitTrace_ELBO, TraceMeanField_ELBO])
def test_each_guide_trains_under_more_elbos(elbo):
    x, y = regression_data()
    for model, guide in [
        (em.linear_regression, MeanField(em.linear_regression)),
        (em.LinearRegressionNet(3), None),
    ]:
        guide = guide or BayesByBackprop(model)
        losses = train(model, guide, x, y, steps=60, lr=0.05, elbo=elbo())
        assert losses[-1] < losses[0]
    xv = vae_data(32)
    guide = AmortizedNormal(em.linear_vae, em.Encoder(), site="z")
    vae = poutine.condition(em.linear_vae, data={"w": torch.randn(em.OBSERVED, em.LATENT)})
    losses = train(vae, guide, xv, steps=60, lr=0.02, elbo=elbo())
    assert losses[-1] < losses[0]


# ---- one fresh process loads a guide of each class -----------------------------------

CHILD = """
import json, sys
import pyro, torch
from pyro.infer import Predictive
import external_models as em
from zoo.guides import load_guide

out = {}
x, xv = torch.load(sys.argv[1] + "/data.pt", weights_only=True)
mf = load_guide(sys.argv[1] + "/mf.pt", em.eight_schools)
pyro.set_rng_seed(1)
out["mf"] = Predictive(em.eight_schools, guide=mf, num_samples=20)(em.SCHOOLS_SIGMA)["y"].tolist()
net = em.LogisticRegression(2)
bbb = load_guide(sys.argv[1] + "/bbb.pt", net)
pyro.set_rng_seed(1)
out["bbb"] = Predictive(net, guide=bbb, num_samples=20)(x)["y"].tolist()
amortized = load_guide(sys.argv[1] + "/amortized.pt", em.linear_vae, encoder=em.Encoder())
out["amortized"] = amortized.median(xv)["z"].tolist()
print(json.dumps(out))
"""


def test_a_fresh_process_loads_each_guide_class_and_predicts_the_same(tmp_path):
    x, _ = classification_data(20)
    xv = vae_data(16)
    torch.save((x, xv), tmp_path / "data.pt")

    mf = MeanField(em.eight_schools)
    train(em.eight_schools, mf, em.SCHOOLS_SIGMA, em.SCHOOLS_Y, steps=50)
    save_guide(mf, tmp_path / "mf.pt", em.SCHOOLS_SIGMA, em.SCHOOLS_Y)
    net = em.LogisticRegression(2)
    bbb = BayesByBackprop(net)
    train(net, bbb, x, torch.ones(20), steps=50)
    save_guide(bbb, tmp_path / "bbb.pt", x[:2], torch.ones(2))
    amortized = vae_guide(em.linear_vae)
    train(em.linear_vae, amortized, xv, steps=50, elbo=Trace_ELBO())
    save_guide(amortized[1], tmp_path / "amortized.pt", xv[:2])

    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    env = {"PYTHONPATH": str(Path(__file__).parent), "OMP_NUM_THREADS": "1", "PATH": ""}
    import os

    env["PYTHONPATH"] += os.pathsep + os.environ.get("PYTHONPATH", "")
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    pyro.set_rng_seed(1)
    mf_y = Predictive(em.eight_schools, guide=mf, num_samples=20)(em.SCHOOLS_SIGMA)["y"]
    pyro.set_rng_seed(1)
    bbb_y = Predictive(net, guide=bbb, num_samples=20)(x)["y"]
    assert torch.allclose(torch.tensor(out["mf"]), mf_y, atol=1e-5)
    assert torch.equal(torch.tensor(out["bbb"]), bbb_y)
    assert torch.allclose(torch.tensor(out["amortized"]), amortized.median(xv)["z"], atol=1e-6)

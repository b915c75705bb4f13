"""Pyro models written without the zoo, as someone else's project would write them.

Only models and networks live here (no training code), so that a fresh process can import
them and load a saved guide: ``test_external_models.py`` trains, saves and loads.
"""

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule, PyroSample
from torch import nn

NOISE = 0.5  # the known observation noise of the linear regression
PRIOR_SCALE = 1.0


def linear_regression(x, y=None):
    """w ~ N(0, PRIOR_SCALE^2 I),  y_i ~ N(x_i . w, NOISE^2): conjugate."""
    w = pyro.sample("w", dist.Normal(torch.zeros(x.shape[-1]), PRIOR_SCALE).to_event(1))
    with pyro.plate("data", x.shape[0]):
        return pyro.sample("y", dist.Normal(x @ w, NOISE), obs=y)


class LinearRegressionNet(PyroModule):
    """The same regression as a PyroModule, as Bayes by Backprop expects a network."""

    def __init__(self, num_features):
        super().__init__()
        self.linear = PyroModule[nn.Linear](num_features, 1, bias=False)
        self.linear.weight = PyroSample(
            dist.Normal(0.0, PRIOR_SCALE).expand([1, num_features]).to_event(2)
        )

    def forward(self, x, y=None):
        loc = self.linear(x).squeeze(-1)  # (N,)
        with pyro.plate("data", x.shape[0]):
            return pyro.sample("y", dist.Normal(loc, NOISE), obs=y)


# eight schools (Rubin 1981): estimated effects and their standard errors
SCHOOLS_Y = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SCHOOLS_SIGMA = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def eight_schools(sigma, y=None):
    """Non-centred: theta_j = mu + tau * eta_j with eta_j ~ N(0, 1)."""
    mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = pyro.sample("tau", dist.HalfCauchy(5.0))
    with pyro.plate("schools", len(sigma)):
        eta = pyro.sample("eta", dist.Normal(0.0, 1.0))
        return pyro.sample("y", dist.Normal(mu + tau * eta, sigma), obs=y)


class LogisticRegression(PyroModule):
    """p(y_i = 1) = sigmoid(x_i . w + b), with N(0, 1) priors on w and b."""

    def __init__(self, num_features):
        super().__init__()
        self.linear = PyroModule[nn.Linear](num_features, 1)
        self.linear.weight = PyroSample(dist.Normal(0.0, 1.0).expand([1, num_features]).to_event(2))
        self.linear.bias = PyroSample(dist.Normal(0.0, 1.0).expand([1]).to_event(1))

    def forward(self, x, y=None):
        logits = self.linear(x).squeeze(-1)  # (N,)
        with pyro.plate("data", x.shape[0]):
            return pyro.sample("y", dist.Bernoulli(logits=logits), obs=y)


class BayesianMLP(PyroModule):
    """A one-hidden-layer regression network with N(0, 1) weights, written with plain
    PyroModule and PyroSample."""

    def __init__(self, hidden=8, noise=0.1):
        super().__init__()
        self.noise = noise
        self.fc1 = PyroModule[nn.Linear](1, hidden)
        self.fc1.weight = PyroSample(dist.Normal(0.0, 1.0).expand([hidden, 1]).to_event(2))
        self.fc1.bias = PyroSample(dist.Normal(0.0, 1.0).expand([hidden]).to_event(1))
        self.fc2 = PyroModule[nn.Linear](hidden, 1)
        self.fc2.weight = PyroSample(dist.Normal(0.0, 1.0).expand([1, hidden]).to_event(2))
        self.fc2.bias = PyroSample(dist.Normal(0.0, 1.0).expand([1]).to_event(1))

    def forward(self, x, y=None):
        f = self.fc2(torch.tanh(self.fc1(x))).squeeze(-1)  # (N, 1) -> (N,)
        pyro.deterministic("f", f)
        with pyro.plate("data", x.shape[0]):
            return pyro.sample("y", dist.Normal(f, self.noise), obs=y)


LATENT, OBSERVED = 2, 5


def linear_vae(x):
    """A VAE-style model with a linear decoder whose weights are latent too:
    W ~ N(0, I) (global), z_i ~ N(0, I) (local), x_i ~ N(z_i W^T, 0.1^2)."""
    w = pyro.sample("w", dist.Normal(torch.zeros(OBSERVED, LATENT), 1.0).to_event(2))
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(torch.zeros(x.shape[0], LATENT), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z @ w.transpose(-1, -2), 0.1).to_event(1), obs=x)


class Encoder(nn.Module):
    """x (N, OBSERVED) -> (loc, log scale), each (N, LATENT)."""

    def __init__(self, hidden=16):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(OBSERVED, hidden), nn.Tanh(), nn.Linear(hidden, 2 * LATENT)
        )

    def forward(self, x):
        loc, log_scale = self.net(x).chunk(2, dim=-1)
        return loc, log_scale

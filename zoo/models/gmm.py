"""Bayesian Gaussian mixture with diagonal or full covariances and a mean-field guide.

Model:  weights ~ Dirichlet(alpha, ..., alpha)                        (K,)
        locs_k ~ Normal(center, spread),  scales_k ~ LogNormal(log s0, sigma0)   (K, D) each
        x_i ~ sum_k weights_k Normal(locs_k, diag(scales_k^2))        in a data plate
With ``covariance="full"`` each component also has the Cholesky factor of its correlation
matrix, ``corr_cholesky_k ~ LKJCholesky(D, eta)`` (K, D, D), and
        x_i ~ sum_k weights_k MultivariateNormal(locs_k, S_k C_k S_k),   S_k = diag(scales_k),
so the scales keep their meaning (each feature's standard deviation within a component) and
the LKJ prior (Lewandowski, Kurowicka & Joe 2009; eta = 1 is uniform over correlation
matrices) holds only the correlations, the factorization Stan's manual recommends.
The assignments are summed out by ``MixtureSameFamily`` (``form="mixture"``, any ELBO), or
sampled explicitly and enumerated in parallel (``form="enumerated"``, ``trainer.elbo=traceenum``):
the two give the same log-likelihood. The priors are scaled to the data: center and spread
from the data's mean and standard deviation, s0 a fraction of the standard deviation.

Guide: :class:`zoo.guides.MeanField`: Dirichlet(weights), Normal(locs), LogNormal(scales),
so ``TraceMeanField_ELBO`` has every KL in closed form; a full covariance's correlation factor
gets the guide's family for its support (a Normal on the unconstrained D(D-1)/2 numbers pushed
through ``CorrCholeskyTransform``), whose KL to the LKJ prior is estimated by Monte Carlo.

Initialization (:meth:`GMM.build`): on a random subset of at most ``init_points`` training
rows, each of ``restarts`` candidates seeds the means by k-means++ (Arthur & Vassilvitskii
2007), moves them by ``init_iterations`` Lloyd (k-means) iterations, takes scales and
weights from the points nearest each mean, and refines them by ``init_em_steps`` iterations of
expectation-maximization (soft assignments; the model's covariance type), as scikit-learn
starts its own EM from k-means; the guide starts there, with each factor as wide
as a posterior of that many points would be (a mean's sd is its component's scale over the
square root of the component's share of the N training rows). The candidates then compete
by successive halving (Jamieson & Talwalkar 2016): every round each survivor trains
``restart_steps`` SVI steps on the subset, is scored by its ELBO there (``restart_particles``
particles), and the better half goes on, until one is left; the main training continues from
it. So a clearly worse start costs one round, not a whole budget, and with
``restart_steps = 0`` the starts are ranked by their ELBO as they are. Mixtures started at one
point or with one broad component tend to stay collapsed; k-means++ seeds start them apart.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Literal

import pyro
import pyro.distributions as dist
import torch
from pyro.infer import SVI, Trace_ELBO, TraceEnum_ELBO
from pyro.nn import pyro_method

from zoo import plots
from zoo.guides import MeanField
from zoo.metrics import adjusted_rand_index
from zoo.models.base import ModelSettings, ZooModel, data_plate
from zoo.optim import Adam
from zoo.schema import Settings, setting

FORMS = ("mixture", "enumerated")
COVARIANCES = ("diagonal", "full")
MAX_EXHAUSTIVE_MATCH = 8  # K! permutations: 40320 at K = 8; greedy matching beyond


POSITIVE = "a finite number > 0"


class GMMEvaluation(Settings):
    mc_samples: int = setting(
        100, "an integer >= 0 (guide draws of the Monte Carlo log predictive; 0: none)", ge=0
    )
    batch_size: int = setting(100_000, "an integer >= 1 (test rows per pass)", ge=1)
    max_points: int | None = setting(None, "an integer >= 1, or null for all test rows", ge=1)


class GMMSettings(ModelSettings):
    name: Literal["gmm"] = "gmm"
    #: K, the number of mixture components
    components: int = setting(2, "an integer >= 1", ge=1)
    form: Literal["mixture", "enumerated"] = setting(
        "mixture", "mixture (assignments summed out) or enumerated (needs trainer.elbo=traceenum)"
    )
    covariance: Literal["diagonal", "full"] = setting(
        "diagonal", "diagonal or full (an LKJ prior on each component's correlations)"
    )
    correlation_concentration: float = setting(
        1.0, f"{POSITIVE} (eta of the LKJ prior; 1: uniform over correlation matrices)", gt=0.0
    )
    weight_concentration: float = setting(1.0, POSITIVE, gt=0.0)
    loc_spread: float = setting(2.0, f"{POSITIVE} (data standard deviations)", gt=0.0)
    scale_fraction: float = setting(0.5, f"{POSITIVE} (data standard deviations)", gt=0.0)
    scale_log_sd: float = setting(1.0, POSITIVE, gt=0.0)
    init_scale: float = setting(0.05, POSITIVE, gt=0.0)
    restarts: int = setting(4, "an integer >= 1", ge=1)
    init_iterations: int = setting(10, "an integer >= 0 (Lloyd iterations per start)", ge=0)
    init_em_steps: int = setting(
        20, "an integer >= 0 (EM iterations per start, after the Lloyd iterations)", ge=0
    )
    restart_steps: int = setting(
        0, "an integer >= 0 (SVI steps per candidate and round of successive halving)", ge=0
    )
    #: the minibatch of the SVI steps that rank the starts
    restart_batch_size: int = setting(256, "an integer >= 1", ge=1)
    #: the Adam learning rate of the SVI steps that rank the starts
    restart_lr: float = setting(0.05, POSITIVE, gt=0.0)
    restart_particles: int = setting(2, "an integer >= 1", ge=1)
    init_points: int = setting(10_000, "an integer >= model.components", ge=1)
    evaluation: GMMEvaluation = setting(GMMEvaluation(), "the evaluation settings", trains=False)

    def trainer_problem(self, trainer) -> str | None:
        if self.form == "enumerated" and trainer.elbo != "traceenum":
            return (
                f"model.form = 'enumerated' is not valid with trainer.elbo = {trainer.elbo!r}: "
                "explicit assignments must be summed out by trainer.elbo=traceenum; or use "
                "model.form=mixture, which trains under any ELBO"
            )
        return None

    def data_problem(self, data) -> str | None:
        if data.kind == "image" or data.kind == "regression":
            return (
                f"model=gmm clusters tabular rows and data={data.name} is {data.kind} data; "
                "use data=old_faithful or synthetic_gmm"
            )
        if self.init_points < self.components:
            return (
                f"model.init_points = {self.init_points} is below model.components = "
                f"{self.components}: k-means++ needs a row per component"
            )
        if self.covariance == "full" and data.num_features < 2:
            return (
                f"model.covariance = 'full' needs at least 2 features and data={data.name} has "
                f"{data.num_features}; use model.covariance=diagonal"
            )
        if len(data.train_x) < self.components:
            return f"data={data.name} has {len(data.train_x)} training rows, fewer than the {self.components} components"
        constant = (data.train_x.std(0) == 0).nonzero().flatten().tolist()
        if constant:
            names = data.feature_names or [f"x{i}" for i in range(data.num_features)]
            shown = ", ".join(names[i] for i in constant[:5]) + (
                ", ..." if len(constant) > 5 else ""
            )
            return (
                f"data={data.name} has {len(constant)} feature(s) with the same value in every "
                f"training row ({shown}); the GMM's priors are scaled by each feature's standard "
                "deviation, so remove constant features first"
            )
        return None


def kmeans_plus_plus(x: torch.Tensor, k: int) -> torch.Tensor:
    """k-means++ seeds (Arthur & Vassilvitskii 2007): k rows of ``x`` (N, D), each drawn with
    probability proportional to its squared distance to the nearest seed so far; (k, D)."""
    seeds = [x[torch.randint(len(x), ())]]
    d2 = ((x - seeds[0]) ** 2).sum(-1)
    for _ in range(1, k):
        weights = d2 if d2.sum() > 0 else torch.ones_like(d2)
        seeds.append(x[torch.multinomial(weights, 1)[0]])
        d2 = torch.minimum(d2, ((x - seeds[-1]) ** 2).sum(-1))
    return torch.stack(seeds)


def lloyd(x: torch.Tensor, locs: torch.Tensor, iterations: int) -> torch.Tensor:
    """``iterations`` of Lloyd's k-means on ``x`` (N, D) from the means ``locs`` (K, D): each
    mean moves to the centroid of the rows nearest it; a mean no row is nearest stays."""
    for _ in range(iterations):
        nearest = torch.cdist(x, locs).argmin(-1)
        counts = torch.bincount(nearest, minlength=len(locs)).to(x.dtype)
        sums = torch.zeros_like(locs).index_add_(0, nearest, x)
        locs = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], locs)
    return locs


def initial_components(
    x: torch.Tensor, k: int, min_scale: float = 0.05, iterations: int = 0
) -> dict:
    """A starting point from the data: k-means++ seeds moved by ``iterations`` Lloyd
    iterations as the means, and the weights and per-dimension standard deviations of the
    points nearest each mean (at least ``min_scale`` times the data's; the data's for a mean
    with fewer than two points)."""
    locs = lloyd(x, kmeans_plus_plus(x, k), iterations)
    nearest = torch.cdist(x, locs).argmin(-1)
    spread = x.std(0)
    counts = torch.bincount(nearest, minlength=k).to(x.dtype)
    scales = spread.expand(k, -1).clone()
    d = x.shape[1]
    corr_cholesky = torch.eye(d, dtype=x.dtype, device=x.device).expand(k, d, d).clone()
    for j in range(k):
        if counts[j] >= 2:
            scales[j] = x[nearest == j].std(0).clamp_min(min_scale * spread.min())
        if counts[j] > d and d >= 2:
            corr_cholesky[j] = correlation_cholesky(x[nearest == j])
    weights = (counts + 1) / (counts.sum() + k)
    return {"weights": weights, "locs": locs, "scales": scales, "corr_cholesky": corr_cholesky}


def em_refined(
    x: torch.Tensor, start: dict, steps: int, *, full: bool, min_scale: float = 0.05
) -> dict:
    """``steps`` iterations of expectation-maximization for a Gaussian mixture on ``x`` from
    ``start`` (soft assignments, then the weights, means and covariances they imply; diagonal
    unless ``full``): the maximum-likelihood neighbourhood that SVI would otherwise reach
    one small step at a time. Each scale stays at least ``min_scale`` times the data's."""
    spread = x.std(0)
    floor = min_scale * spread.min()
    k, d = start["locs"].shape
    params = {name: value.clone() for name, value in start.items()}
    if not full:
        params["corr_cholesky"] = torch.eye(d, dtype=x.dtype, device=x.device).expand(k, d, d)
    for _ in range(steps):
        shown = {n: v.unsqueeze(0) for n, v in params.items() if full or n != "corr_cholesky"}
        resp = GMM._component_log_probs(x, shown)[0].softmax(-1)  # (N, K)
        counts = resp.sum(0).clamp_min(1e-8)  # (K,)
        locs = (resp.T @ x) / counts[:, None]
        centred = x.unsqueeze(1) - locs  # (N, K, D)
        weighted = resp.unsqueeze(-1) * centred
        if full:
            cov = torch.einsum("nki,nkj->kij", weighted, centred) / counts[:, None, None]
            scales = cov.diagonal(dim1=-2, dim2=-1).sqrt().clamp_min(floor)
            corr = cov / (scales.unsqueeze(-1) * scales.unsqueeze(-2))
            params["corr_cholesky"] = shrunk_cholesky(corr)
        else:
            scales = ((weighted * centred).sum(0) / counts[:, None]).sqrt().clamp_min(floor)
        params.update(weights=counts / counts.sum(), locs=locs, scales=scales)
    if not full:
        params["corr_cholesky"] = start["corr_cholesky"]
    return params


def correlation_cholesky(rows: torch.Tensor, shrink: float = 1e-3) -> torch.Tensor:
    """The Cholesky factor of the rows' correlation matrix (D, D), shrunk as
    :func:`shrunk_cholesky` shrinks it."""
    return shrunk_cholesky(torch.corrcoef(rows.T), shrink)


def shrunk_cholesky(corr: torch.Tensor, shrink: float = 1e-3) -> torch.Tensor:
    """The Cholesky factor of correlation matrices ``corr`` (..., D, D) shrunk by ``shrink``
    towards the identity, so that it exists for nearly collinear data."""
    eye = torch.eye(corr.shape[-1], dtype=corr.dtype, device=corr.device)
    return torch.linalg.cholesky((1 - shrink) * corr + shrink * eye)


def best_permutation(fitted: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """The order of the fitted components that best matches the true ones: ``perm`` such
    that ``fitted[perm]`` minimizes the summed squared distance to ``truth`` (K, D).

    Exhaustive over the K! permutations for K <= 8; greedy (closest pair first) beyond,
    which is not guaranteed optimal.
    """
    cost = torch.cdist(truth.double(), fitted.double()) ** 2  # cost[true j, fitted i]
    k = len(truth)
    if k <= MAX_EXHAUSTIVE_MATCH:
        perms = torch.tensor(list(itertools.permutations(range(k))))
        totals = cost[torch.arange(k), perms].sum(-1)
        return perms[totals.argmin()]
    perm = torch.full((k,), -1, dtype=torch.long)
    cost = cost.clone()
    for _ in range(k):
        j, i = divmod(int(cost.argmin()), k)
        perm[j] = i
        cost[j, :] = cost[:, i] = math.inf
    return perm


def fitted_component_metrics(fitted: dict[str, torch.Tensor], data) -> dict[str, float]:
    """``fit/*`` metrics of a fitted mixture given in the data's original units (weights (K,),
    locs and scales (K, D), and for a full covariance ``corr_cholesky`` (K, D, D)): each
    component's weight, means, scales and correlations, and the
    largest error against the truth where the data set has one. Components are matched to
    the truth (label switching) where it is known, else ordered by the first feature's mean.
    Any fitter can report through it: the zoo's GMM and the scikit-learn baselines do."""
    k, num_features = fitted["locs"].shape
    known = data.truth is not None and len(data.truth["locs"]) == k
    order = (
        best_permutation(fitted["locs"], data.truth["locs"])
        if known
        else fitted["locs"][:, 0].argsort()
    )
    names = data.feature_names or tuple(f"x{i}" for i in range(num_features))
    metrics = {}
    for position, j in enumerate(order.tolist()):
        metrics[f"fit/weight_{position}"] = float(fitted["weights"][j])
        for d, feature in enumerate(names):
            metrics[f"fit/mean_{position}_{feature}"] = float(fitted["locs"][j, d])
            metrics[f"fit/scale_{position}_{feature}"] = float(fitted["scales"][j, d])
        if "corr_cholesky" in fitted:  # a full covariance: its correlations, pair by pair
            tril = fitted["corr_cholesky"][j]
            corr = tril @ tril.T
            for a, b in itertools.combinations(range(num_features), 2):
                metrics[f"fit/corr_{position}_{names[a]}_{names[b]}"] = float(corr[a, b])
    if known:
        for name in ("weights", "locs", "scales"):
            error = (fitted[name][order] - data.truth[name]).abs().max()
            metrics[f"fit/max_error_{name}"] = float(error)
    return metrics


class GMM(ZooModel):
    """A K-component Gaussian mixture in D dimensions with a mean-field guide.

    :param int num_features: D.
    :param int components: K.
    :param str form: ``mixture`` (assignments summed out by ``MixtureSameFamily``) or
        ``enumerated`` (explicit assignments, for ``TraceEnum_ELBO``).
    :param str covariance: ``diagonal`` or ``full`` (an LKJ prior on the correlations).
    :param float correlation_concentration: eta of the LKJ prior.
    :param float weight_concentration: alpha of the symmetric Dirichlet prior on the weights.
    :param loc_center: prior mean of every component mean, (D,).
    :param loc_spread: prior standard deviation of the means, (D,).
    :param scale_median: prior median of the scales, (D,).
    :param float scale_log_sd: prior standard deviation of log(scale).
    :param float init_scale: the guide's initial scale (unconstrained).

    Use :meth:`build` to get priors scaled to a data set and a k-means++ start with restarts.
    """

    Settings = GMMSettings
    replayable = True  # tests/test_replay.py trains it both ways, bit for bit

    def __init__(
        self,
        num_features: int,
        components: int = 2,
        *,
        form: str = "mixture",
        covariance: str = "diagonal",
        correlation_concentration: float = 1.0,
        weight_concentration: float = 1.0,
        loc_center: torch.Tensor | None = None,
        loc_spread: torch.Tensor | float = 1.0,
        scale_median: torch.Tensor | float = 0.5,
        scale_log_sd: float = 1.0,
        init_scale: float = 0.05,
    ) -> None:
        super().__init__()
        if form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {form!r}")
        if covariance not in COVARIANCES:
            raise ValueError(f"covariance must be one of {COVARIANCES}, got {covariance!r}")
        if covariance == "full" and num_features < 2:
            raise ValueError(f"covariance='full' needs num_features >= 2, got {num_features}")
        if not (isinstance(components, int) and components >= 1):
            raise ValueError(f"components must be an integer >= 1, got {components!r}")
        for key, value in {
            "weight_concentration": weight_concentration,
            "scale_log_sd": scale_log_sd,
            "correlation_concentration": correlation_concentration,
        }.items():
            if not value > 0:
                raise ValueError(f"{key} must be > 0, got {value!r}")
        self.num_features, self.components, self.form = num_features, components, form
        self.covariance = covariance
        d = num_features

        def vector(value) -> torch.Tensor:
            return torch.as_tensor(value, dtype=torch.get_default_dtype()).expand(d).clone()

        self.register_buffer(
            "weight_concentration", torch.full((components,), weight_concentration)
        )
        self.register_buffer("loc_center", vector(0.0 if loc_center is None else loc_center))
        self.register_buffer("loc_spread", vector(loc_spread))
        self.register_buffer("scale_log_median", vector(scale_median).log())
        self.register_buffer("scale_log_sd", torch.tensor(float(scale_log_sd)))
        self.register_buffer(
            "correlation_concentration", torch.tensor(float(correlation_concentration))
        )
        self.posterior = MeanField(self.model, init_scale=init_scale)
        self.posterior.setup(
            torch.zeros(1, d)
        )  # creates the parameters: checkpoints load into them
        self.restart_elbos: list[float] = []
        self.restart_index: int | None = None

    @classmethod
    def build(
        cls,
        data,
        *,
        components: int = 2,
        form: str = "mixture",
        covariance: str = "diagonal",
        correlation_concentration: float = 1.0,
        weight_concentration: float = 1.0,
        loc_spread: float = 2.0,
        scale_fraction: float = 0.5,
        scale_log_sd: float = 1.0,
        init_scale: float = 0.05,
        restarts: int = 4,
        init_iterations: int = 10,
        init_em_steps: int = 20,
        restart_steps: int = 0,
        restart_batch_size: int = 256,
        restart_lr: float = 0.05,
        restart_particles: int = 2,
        init_points: int = 10_000,
    ) -> GMM:
        """A GMM with priors scaled to ``data.train_x`` and the best of ``restarts`` k-means++
        starts (see the module docstring). Reads at most ``init_points`` rows, so its cost does
        not grow with N.

        :param float loc_spread: prior sd of the means, in data standard deviations.
        :param float scale_fraction: prior median of the scales, in data standard deviations.
        """
        if not (isinstance(restarts, int) and restarts >= 1):
            raise ValueError(f"restarts must be an integer >= 1, got {restarts!r}")
        x = data.train_x
        if len(x) > init_points:
            x = x[torch.randint(len(x), (init_points,), device=x.device)]
        center, spread = x.mean(0), x.std(0)
        model = cls(
            x.shape[1],
            components,
            form=form,
            covariance=covariance,
            correlation_concentration=correlation_concentration,
            weight_concentration=weight_concentration,
            loc_center=center,
            loc_spread=loc_spread * spread,
            scale_median=scale_fraction * spread,
            scale_log_sd=scale_log_sd,
            init_scale=init_scale,
        ).to(x.device)
        starts = [
            em_refined(
                x,
                initial_components(x, components, iterations=init_iterations),
                init_em_steps,
                full=covariance == "full",
            )
            for _ in range(restarts)
        ]
        model.restart(
            x,
            starts,
            steps=restart_steps,
            batch_size=min(restart_batch_size, len(x)),
            lr=restart_lr,
            particles=restart_particles,
        )
        if len(data.train_x) > len(x):  # the restarts saw a subset: widths for all N rows
            model.start_at(model.posterior_mean(), num_points=len(data.train_x))
        return model

    # ---- model and guide ---------------------------------------------------------------

    def elbo(self, num_particles: int = 1) -> pyro.infer.ELBO:
        """An ELBO that fits this model's form (enumeration needs ``TraceEnum_ELBO``)."""
        if self.form == "enumerated":
            return TraceEnum_ELBO(num_particles=num_particles, max_plate_nesting=1)
        return Trace_ELBO(num_particles=num_particles)

    @staticmethod
    def mixture(weights, locs, scales, corr_cholesky=None) -> dist.MixtureSameFamily:
        """p(x | weights (..., K), locs and scales (..., K, D)), and with ``corr_cholesky``
        (..., K, D, D) the full covariances ``S_k C_k S_k``."""
        return dist.MixtureSameFamily(
            dist.Categorical(probs=weights), GMM.component(locs, scales, corr_cholesky)
        )

    @staticmethod
    def component(locs, scales, corr_cholesky=None) -> dist.Distribution:
        """The components' densities, batch (..., K), event (D,): independent Normals, or a
        MultivariateNormal whose Cholesky factor is ``diag(scales) corr_cholesky``."""
        if corr_cholesky is None:
            return dist.Normal(locs, scales).to_event(1)
        return dist.MultivariateNormal(locs, scale_tril=scales.unsqueeze(-1) * corr_cholesky)

    @pyro_method
    def model(self, x: torch.Tensor, y: torch.Tensor | None = None, size: int | None = None):
        """Weights ~ Dirichlet, means ~ Normal, scales ~ LogNormal (and an LKJ prior on each
        component's correlations with full covariances), then ``x`` in the data plate: through
        ``MixtureSameFamily``, or with enumerated assignments under ``form='enumerated'``."""
        # y, the true components of synthetic data, is for evaluation only: the model ignores it
        k, d = self.components, self.num_features
        weights = pyro.sample("weights", dist.Dirichlet(self.weight_concentration))  # (K,)
        with pyro.plate("components", k, dim=-1):
            locs = pyro.sample(
                "locs", dist.Normal(self.loc_center, self.loc_spread).expand([k, d]).to_event(1)
            )  # (K, D)
            scales = pyro.sample(
                "scales",
                dist.LogNormal(self.scale_log_median, self.scale_log_sd).expand([k, d]).to_event(1),
            )  # (K, D)
            corr = None
            if self.covariance == "full":
                corr = pyro.sample(
                    "corr_cholesky",
                    dist.LKJCholesky(d, self.correlation_concentration).expand([k]),
                )  # (K, D, D)
        with data_plate(x, size):
            if self.form == "mixture":
                pyro.sample("x", self.mixture(weights, locs, scales, corr), obs=x)
            else:
                z = pyro.sample(
                    "assignment", dist.Categorical(weights), infer={"enumerate": "parallel"}
                )  # (B,), or (K, 1) when enumerated
                chosen = None if corr is None else corr[z]
                pyro.sample("x", self.component(locs[z], scales[z], chosen), obs=x)

    @pyro_method
    def guide(self, x: torch.Tensor, y: torch.Tensor | None = None, size: int | None = None):
        """The mean-field posterior (:class:`zoo.guides.MeanField`) over the model's global
        sites."""
        return self.posterior(x, y, size)

    # ---- initialization ----------------------------------------------------------------

    def start_at(self, start: dict, num_points: int | None = None) -> None:
        """Centres the guide on ``{"weights", "locs", "scales"}`` (and a full covariance's
        ``corr_cholesky``, the identity where the start has none). With ``num_points``, each
        factor is as wide as a posterior of that many points: the weights' Dirichlet has their
        posterior's total concentration (``num_points + sum(alpha)``, whatever the
        assignments), component k's means an sd of ``scales_k / sqrt(n_k)`` and its log-scales
        ``1 / sqrt(2 n_k)``, where ``n_k = weights_k num_points`` (at least 1): the Gaussian
        posterior widths of a mean and a log-sd from ``n_k`` points (and ``1 / sqrt(n_k)`` for
        each unconstrained correlation number, about the sd of atanh of a correlation).
        Without it the means and scales take the guide's ``init_scale`` and the weights the
        prior's width."""
        full = self.covariance == "full"
        corr = start.get("corr_cholesky") if full else None
        if full and corr is None:  # a start without correlations: none
            d = self.num_features
            eye = torch.eye(d, dtype=start["locs"].dtype, device=start["locs"].device)
            corr = eye.expand(self.components, d, d)
        if num_points is None:
            for name in ("locs", "scales"):
                self.posterior.initialize(name, start[name])
            if full:
                self.posterior.initialize("corr_cholesky", corr)
            self.posterior.initialize("weights", start["weights"])
            return
        share = (start["weights"] * num_points).clamp_min(1.0).unsqueeze(-1)  # (K, 1)
        self.posterior.initialize("locs", start["locs"], start["scales"] / share.sqrt())
        self.posterior.initialize(
            "scales", start["scales"], (2 * share).rsqrt().expand_as(start["scales"])
        )
        if full:  # the D(D-1)/2 unconstrained numbers of the correlation factor
            pairs = self.num_features * (self.num_features - 1) // 2
            self.posterior.initialize("corr_cholesky", corr, share.rsqrt().expand(-1, pairs))
        total = num_points + self.weight_concentration.sum()
        self.posterior.initialize("weights", start["weights"], total_concentration=total)

    def restart(
        self,
        x: torch.Tensor,
        starts: list[dict],
        *,
        steps: int,
        batch_size: int,
        lr: float,
        particles: int = 8,
    ) -> list[float]:
        """Successive halving over ``starts`` on ``x``: every round each surviving start trains
        ``steps`` more SVI steps (minibatches of ``batch_size``, a fresh Adam of ``lr`` per
        round) and is scored by its ELBO per point on all of ``x`` (``particles`` particles);
        the better half (rounded up) goes on, until one is left, whose guide is kept. A start
        whose score is not finite drops out at once.

        :returns: each start's last score, also kept in ``restart_elbos``; the kept start's
            position is ``restart_index``.
        :raises ValueError: if every start ends with a non-finite ELBO.
        """
        states, elbos = {}, [math.nan] * len(starts)
        for index, start in enumerate(starts):
            self.start_at(start, num_points=len(x))
            states[index] = self._guide_state()
        alive = list(states)
        while True:
            # a lone start is only scored: the main training trains it
            steps_now = steps if len(alive) > 1 else 0
            for index in alive:
                self.posterior.load_state_dict(states[index])
                elbos[index] = self._train_and_score(x, steps_now, batch_size, lr, particles)
                states[index] = self._guide_state()
            alive = sorted((i for i in alive if math.isfinite(elbos[i])), key=lambda i: -elbos[i])
            if not alive:
                raise ValueError("every restart ended with a non-finite ELBO; lower restart_lr")
            if len(alive) == 1:
                break
            alive = alive[: (len(alive) + 1) // 2]
            if len(alive) == 1 or steps == 0:  # without steps, another round changes nothing
                alive = alive[:1]
                break
        self.posterior.load_state_dict(states[alive[0]])
        self.restart_elbos, self.restart_index = elbos, alive[0]
        return elbos

    def _guide_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.posterior.state_dict().items()}

    def _train_and_score(
        self, x: torch.Tensor, steps: int, batch_size: int, lr: float, particles: int
    ) -> float:
        """``steps`` SVI steps from the guide as it stands, then its ELBO per point on ``x``."""
        if steps:
            svi = SVI(self.model, self.guide, Adam({"lr": lr}), self.elbo())
            for _ in range(steps):
                svi.step(x[torch.randint(len(x), (batch_size,), device=x.device)], size=len(x))
        with torch.no_grad():
            loss = self.elbo(particles).loss(self.model, self.guide, x, size=len(x))
        return -loss / len(x)

    # ---- the fitted mixture ------------------------------------------------------------

    @property
    def parameter_sites(self) -> tuple[str, ...]:
        """The latent sites of the mixture's parameters."""
        full = ("corr_cholesky",) if self.covariance == "full" else ()
        return ("weights", "locs", "scales", *full)

    def posterior_mean(self) -> dict[str, torch.Tensor]:
        """E_q of weights (K,), locs (K, D) and scales (K, D); for a full covariance also the
        correlations' Cholesky factor (K, D, D) at the guide's median (the transform of its
        unconstrained mean): an average of Cholesky factors is not one of a correlation."""
        params = self.posterior.mean()
        if self.covariance == "full":
            params["corr_cholesky"] = self.posterior.median()["corr_cholesky"]
        return params

    @torch.no_grad()
    def assignment_probs(self, x: torch.Tensor, num_samples: int = 0) -> torch.Tensor:
        """p(component k | x_i) for each row of ``x``, (N, K): at the posterior mean of the
        parameters, or averaged over ``num_samples`` draws from the guide."""
        if num_samples == 0:
            params = {k: v.unsqueeze(0) for k, v in self.posterior_mean().items()}
        else:
            params = self._draws(num_samples)
        log_joint = self._component_log_probs(x, params)  # (S, N, K)
        return log_joint.softmax(-1).mean(0)

    def _draws(self, num_samples: int) -> dict[str, torch.Tensor]:
        return {
            name: self.posterior.distribution(name).sample((num_samples,)).detach()
            for name in self.parameter_sites
        }

    @staticmethod
    def _component_log_probs(x: torch.Tensor, params: dict) -> torch.Tensor:
        """log w_k + log N(x_i | locs_k, covariance_k) for S parameter draws: (S, N, K); the
        covariance is diagonal, or ``S_k C_k S_k`` where ``params`` has ``corr_cholesky``.

        The squared distances are expanded into matrix products, (N, D) @ (D, S K): the same
        numbers as ``Normal(locs, scales).log_prob(x)`` summed over D, without an (S, N, K, D)
        temporary, several times faster on large test sets. The expansion cancels terms of the
        size of ``x**2 / scale**2``, so both ``x`` and the locs are first shifted by the locs'
        mean: the rounding error then depends on the distances between points and components,
        not on how far the data lie from the origin (without it, float32 was 0.076 nats off at
        an offset of 100 and 9.8 at 1000)."""
        center = params["locs"].mean((0, 1))  # (D,)
        x = x - center
        locs, scales = params["locs"] - center, params["scales"]  # (S, K, D)
        s, k, d = locs.shape
        if "corr_cholesky" not in params:
            precision = scales.pow(-2)
            quadratic = (
                x.pow(2) @ precision.reshape(s * k, d).T
                - 2 * x @ (locs * precision).reshape(s * k, d).T
                + (locs.pow(2) * precision).sum(-1).reshape(s * k)
            )  # (N, S K): sum_d (x_d - loc_d)^2 / scale_d^2
            log_det = scales.log().sum(-1)
        else:  # the same expansion with the precision matrix P = (L L^T)^-1, L = S_k C_k
            tril = scales.unsqueeze(-1) * params["corr_cholesky"]  # (S, K, D, D)
            eye = torch.eye(d, dtype=x.dtype, device=x.device)
            inverse = torch.linalg.solve_triangular(tril, eye.expand_as(tril), upper=False)
            precision = inverse.transpose(-1, -2) @ inverse  # (S, K, D, D)
            p_locs = (precision @ locs.unsqueeze(-1)).squeeze(-1)  # (S, K, D)
            quadratic = (
                (x.unsqueeze(-1) * x.unsqueeze(-2)).reshape(len(x), d * d)
                @ precision.reshape(s * k, d * d).T
                - 2 * x @ p_locs.reshape(s * k, d).T
                + (locs * p_locs).sum(-1).reshape(s * k)
            )  # (N, S K): (x - loc)^T P (x - loc)
            log_det = tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        log_norm = log_det.reshape(s * k) + 0.5 * d * math.log(2 * math.pi)
        log_normal = (-0.5 * quadratic.clamp_min(0) - log_norm).reshape(len(x), s, k)
        return params["weights"].log().unsqueeze(1) + log_normal.transpose(0, 1)

    @torch.no_grad()
    def log_predictive(
        self, x: torch.Tensor, num_samples: int = 0, batch_size: int = 10_000
    ) -> torch.Tensor:
        """log p(x_i | training data) for each row of ``x``, (N,): the plug-in density at the
        posterior mean (``num_samples=0``) or ``log (1/S) sum_s p(x_i | theta_s)`` with S =
        ``num_samples`` draws theta_s from the guide, the same draws for every row."""
        if num_samples == 0:
            params = {k: v.unsqueeze(0) for k, v in self.posterior_mean().items()}
        else:
            params = self._draws(num_samples)
        s = len(params["weights"])
        chunk = max(1, batch_size // s)
        # written in place: many small result tensors between the large temporaries of each
        # chunk fragment the allocator's heap (1 GB more resident memory at 1e6 rows)
        out = x.new_empty(len(x))
        for start in range(0, len(x), chunk):
            log_mix = self._component_log_probs(x[start : start + chunk], params).logsumexp(-1)
            torch.logsumexp(log_mix, 0, out=out[start : start + chunk])  # (S, n) -> (n,)
        return out - math.log(s)

    def components_in_original_units(self, data) -> dict[str, torch.Tensor]:
        """The posterior mean's weights, locs and scales in the data's original units (and
        the correlations' Cholesky factor, which a change of units leaves as it is)."""
        params = self.posterior_mean()
        locs, scales = params["locs"], params["scales"]
        if data.mean is not None:
            locs, scales = locs * data.std + data.mean, scales * data.std
        return {**params, "locs": locs, "scales": scales}

    @torch.no_grad()
    def evaluate(
        self,
        data,
        *,
        mc_samples: int = 100,
        batch_size: int = 100_000,
        max_points: int | None = None,
        progress: bool = False,  # no bar: seconds, even on 2e6 held-out rows
    ) -> dict[str, float]:
        """Held-out log predictive density per point in the data's original units (Monte
        Carlo over ``mc_samples`` guide draws, and plug-in at the posterior mean), the
        adjusted Rand index of the most probable components against the true labels where
        there are any, and the fitted components in original units, matched to the truth by
        the best permutation where it is known. ``max_points`` evaluates on the first test
        rows only (cheap per-epoch checks at large N)."""
        x = data.test_x if max_points is None else data.test_x[:max_points]
        # the density of standardized data, back in original units: divide by prod(std)
        log_jacobian = 0.0 if data.std is None else data.std.log().sum().item()
        metrics = {
            "test/log_pred_plugin": self.log_predictive(x, 0, batch_size).mean().item()
            - log_jacobian
        }
        if mc_samples > 0:
            metrics["test/log_pred_mc"] = (
                self.log_predictive(x, mc_samples, batch_size).mean().item() - log_jacobian
            )
        if data.test_y is not None:
            labels = torch.cat(
                [
                    self.assignment_probs(rows).argmax(-1)
                    for rows in x.split(max(1, batch_size // self.components))
                ]
            )
            metrics["test/ari"] = adjusted_rand_index(data.test_y[: len(x)], labels)
        metrics.update(fitted_component_metrics(self.components_in_original_units(data), data))
        return metrics

    @torch.no_grad()
    def figures(self, data, history: list[dict], out_dir: Path) -> dict[str, str]:
        out_dir = Path(out_dir)
        x = data.train_x[:5000]  # rows are in random order: a random sample to draw
        fitted = self.components_in_original_units(data)
        written = {"elbo_curve": plots.elbo_curve(history, out_dir / "elbo_curve.png")}
        if self.num_features >= 2:
            written["components"] = plots.mixture_ellipses(
                data.original_units(x),
                self.assignment_probs(x).argmax(-1),
                fitted["weights"],
                fitted["locs"],
                fitted["scales"],
                out_dir / "components.png",
                corr_cholesky=fitted.get("corr_cholesky"),
                feature_names=data.feature_names,
                title=f"{data.name}: {self.components} components, 1 and 2 sigma (posterior mean)",
            )
        return {name: str(path) for name, path in written.items()}

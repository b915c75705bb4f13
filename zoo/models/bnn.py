"""Bayesian neural network trained by Bayes by Backprop (Blundell et al. 2015).

Model:  every weight and bias w ~ prior (Normal(0, sigma^2), or the scale mixture
        pi N(0, sigma1^2) + (1 - pi) N(0, sigma2^2));
        f = MLP_w(x);  y_i ~ Categorical(logits = f(x_i))  or  Normal(f(x_i), sigma_y),
        with sigma_y fixed or log sigma_y ~ Normal(log noise, 1).
Guide:  ``guide=bbb``: q(w) = prod Normal(mu, softplus(rho)) (:class:`zoo.guides.BayesByBackprop`),
        optionally with local reparameterization (:mod:`zoo.handlers.local_reparameterization`);
        ``guide=map``: a Delta at each weight (MAP: weight decay under the Gaussian prior);
        ``guide=mc_dropout``: the same Delta guide with dropout after every hidden layer,
        kept on at prediction (Gal & Ghahramani 2016).

The three guides share the model, the trainer and the evaluation, so the baselines differ
from Bayes by Backprop only in the guide. Predictions average the network's output over
draws of the weights from the guide (one draw serves a whole test set, evaluated in batches).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path
from typing import Annotated, Literal

import pyro
import pyro.distributions as dist
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator
from pyro import poutine
from pyro.distributions import constraints
from pyro.infer.autoguide import AutoDelta
from pyro.nn import PyroModule, PyroParam, PyroSample, pyro_method

from zoo import plots
from zoo.data import DATASETS, load_dataset
from zoo.distributions import ScaleMixtureNormal
from zoo.guides import BayesByBackprop, init_to_fan_in_uniform
from zoo.handlers import FlipoutMessenger, LocalReparameterizationMessenger, conv2d, linear
from zoo.models.base import ModelSettings, ZooModel, data_plate
from zoo.progress import progress_bar
from zoo.schema import SettingError, Settings, setting

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "tanh": torch.tanh,
    "softplus": F.softplus,
    "elu": F.elu,
}
GUIDES = ("bbb", "map", "mc_dropout", "ensemble")
ARCHITECTURES = ("mlp", "lenet5")
LENET5_CHANNELS = (6, 16, 120)  # 5x5 convolutions; a 2x2 max-pool after the first two
LENET5_KERNEL = 5
DEFAULT_ENSEMBLE_SIZE = 5
PRIORS = ("gaussian", "scale_mixture")
PRIOR_SCALES = ("fixed", "fan_in", "learned")
OOD_SEED = 20150521  # the noise images are the same in every run

# -log sigma of a scale-mixture component: sigma = exp(-value) from about 2e-9 to 5e8
NEG_LOG_SIGMA = "a finite number from -20 to 20 (sigma = exp(-value))"


class BNNEvaluation(Settings):
    num_samples: int = setting(100, "an integer >= 1 (weight draws of the predictive)", ge=1)
    batch_size: int = setting(1000, "an integer >= 1 (test rows per pass)", ge=1)
    calibration_bins: int = setting(15, "an integer >= 1 (ECE bins)", ge=1)
    ood: list[str] = setting(
        ["noise"],
        "a list of out-of-distribution sets: noise, or names of data sets with as many features "
        "or images of another size (resized), e.g. [noise, digits]; [] or null for none; the "
        "training data set is skipped",
    )
    #: the number of uniform-noise images of the noise out-of-distribution set
    ood_size: int = setting(2000, "an integer >= 1", ge=1)

    @field_validator("ood", mode="before")
    @classmethod
    def _as_list(cls, ood):
        if ood is None:
            return []
        return [ood] if isinstance(ood, str) else ood

    @field_validator("ood")
    @classmethod
    def _known_ood(cls, ood: list[str]) -> list[str]:
        for name in ood:
            if name != "noise" and name not in DATASETS:
                raise ValueError(
                    f"{name!r} is not an out-of-distribution set: each must be noise or one of "
                    f"the data sets {', '.join(sorted(DATASETS))}"
                )
        if len(set(ood)) != len(ood):
            raise ValueError(f"it names a set twice: {ood}")
        return ood


class BNNSettings(ModelSettings):
    name: Literal["bnn"] = "bnn"
    architecture: Literal["mlp", "lenet5"] = setting(
        "mlp", "mlp or lenet5 (three 5x5 convolutions of 6, 16, 120 channels, then hidden_dims)"
    )
    #: the sizes of the hidden dense layers (after the convolutions for lenet5)
    hidden_dims: list[Annotated[int, Field(ge=1)]] = setting(
        [400, 400], "a list of integers >= 1, e.g. [100, 100] or [] for none"
    )
    activation: Literal["relu", "tanh", "softplus", "elu"] = setting(
        "relu", "relu, tanh, softplus or elu"
    )
    prior: Literal["gaussian", "scale_mixture"] = setting("gaussian", "gaussian or scale_mixture")
    prior_sigma: float = setting(1.0, "a finite number > 0", gt=0.0)
    prior_scale: Literal["fixed", "fan_in", "learned"] = setting(
        "fixed",
        "fixed (sigma = prior_sigma), fan_in (sigma = prior_sigma * sqrt(2 / fan-in)) or "
        "learned (one sigma per layer trained with the guide, empirical Bayes; started as fan_in; "
        "guide=bbb and prior=gaussian only)",
    )
    mixture_pi: float = setting(0.5, "a number in [0, 1]", ge=0.0, le=1.0)
    neg_log_sigma1: float = setting(0.0, NEG_LOG_SIGMA, ge=-20.0, le=20.0)
    neg_log_sigma2: float = setting(6.0, NEG_LOG_SIGMA, ge=-20.0, le=20.0)
    noise: float = setting(0.1, "a finite number > 0", gt=0.0)
    learn_noise: bool = setting(False, "true or false")
    guide: Literal["bbb", "map", "mc_dropout", "ensemble"] = setting(
        "bbb", "bbb, map, mc_dropout or ensemble"
    )
    ensemble_size: int | None = setting(
        None, f"an integer >= 2, or null ({DEFAULT_ENSEMBLE_SIZE} for guide=ensemble)", ge=2
    )
    init_rho: list[float] = setting(
        [-5.0, -4.0], "two numbers [low, high] with low <= high, e.g. [-5, -4]",
        min_length=2, max_length=2,
    )
    local_reparameterization: bool | None = setting(
        None, "true, false or null (null: true for guide=bbb, false otherwise)"
    )
    flipout: bool | None = setting(
        None, "true, false or null (null: true for guide=bbb with architecture=lenet5)"
    )
    dropout: float = setting(0.0, "a number in [0, 1)", ge=0.0, lt=1.0)
    plot_range: list[float] | None = setting(
        None, "two numbers [low, high] with low < high, or null", trains=False,
        min_length=2, max_length=2,
    )
    evaluation: BNNEvaluation = setting(BNNEvaluation(), "the evaluation settings", trains=False)

    @model_validator(mode="after")
    def _consistent(self) -> BNNSettings:
        low, high = self.init_rho
        if low > high:
            raise SettingError("init_rho", self.init_rho, "it must be [low, high] with low <= high")
        if self.plot_range is not None and not self.plot_range[0] < self.plot_range[1]:
            raise SettingError("plot_range", self.plot_range, "it must be [low, high] with low < high")
        if (self.guide == "mc_dropout") != (self.dropout > 0):
            raise SettingError(
                "dropout", self.dropout,
                f"guide={self.guide} needs {'dropout > 0' if self.guide == 'mc_dropout' else 'dropout = 0'} "
                "(MC dropout is dropout kept on at prediction; the other guides take none)",
            )
        for key in ("local_reparameterization", "flipout"):
            if getattr(self, key) is True and self.guide != "bbb":
                raise SettingError(key, True, f"it needs guide=bbb (Normal weights), not {self.guide}")
        if self.flipout is True and self.architecture != "lenet5":
            raise SettingError("flipout", True, "it needs architecture=lenet5 (convolutions)")
        if self.ensemble_size is not None and self.guide != "ensemble":
            raise SettingError(
                "ensemble_size", self.ensemble_size, f"it needs guide=ensemble, not {self.guide}"
            )
        if self.prior_scale == "learned" and self.guide != "bbb":
            raise SettingError(
                "prior_scale", "learned",
                f"it needs guide=bbb, not {self.guide}: with point estimates of the weights, "
                "the likelihood of the prior scale grows without bound as the weights and the "
                "scale shrink together",
            )
        if self.prior_scale == "learned" and self.prior != "gaussian":
            raise SettingError(
                "prior_scale", "learned",
                f"it needs prior=gaussian, not {self.prior} (the scale mixture's two sigmas "
                "come from neg_log_sigma1 and neg_log_sigma2)",
            )
        return self

    def data_problem(self, data) -> str | None:
        if data.num_classes is None and data.kind != "regression":
            return f"model=bnn needs labels or regression targets, and data={data.name} has neither"
        if self.architecture == "lenet5" and not _is_image(data.shape):
            return (
                f"model.architecture=lenet5 needs images (data.shape (height, width)), and "
                f"data={data.name} has items of shape {tuple(data.shape)}; use architecture=mlp"
            )
        periodic = BNNEvaluation._as_list(self.periodic_evaluation.get("ood", self.evaluation.ood))
        for key, names in [("evaluation.ood", self.evaluation.ood), ("periodic_evaluation.ood", periodic)]:
            if data.num_classes is None:
                break
            for name in names:
                if name == "noise":
                    continue
                ood = load_dataset(name)  # loaded now: a missing file fails early
                if not _fits(ood, data):
                    return (
                        f"model.{key} = {name!r} is not valid with data={data.name}: its items have "
                        f"shape {tuple(ood.shape)} and the model's {tuple(data.shape)}; use noise, "
                        "a data set with as many features, or images (resized to the model's)"
                    )
        return None


def _is_image(shape: Sequence[int]) -> bool:
    return len(shape) == 2


def _fits(ood, data) -> bool:
    """Whether ``ood``'s items can be shown to a model of ``data``: as many features, or both
    sets images (which are resized)."""
    return ood.num_features == data.num_features or (_is_image(ood.shape) and _is_image(data.shape))


# prior(zero, shape, fan_in, learned=None): ``learned`` is the layer's own sigma where the
# prior learns it (prior_scale=learned), else None
Prior = Callable[..., dist.Distribution]


def make_prior(
    name: str,
    *,
    sigma: float = 1.0,
    scale: str = "fixed",
    mixture_pi: float = 0.5,
    neg_log_sigma1: float = 0.0,
    neg_log_sigma2: float = 6.0,
) -> Prior:
    """``prior(zero, shape, fan_in)``: the prior of one weight tensor of ``shape`` in a layer
    with ``fan_in`` inputs per output, on ``zero``'s device.

    :param str name: ``gaussian`` (Normal(0, s^2)) or ``scale_mixture`` (weight
        ``mixture_pi`` on N(0, sigma1^2), the rest on N(0, sigma2^2), with
        ``sigma_k = exp(-neg_log_sigma_k)`` as Blundell et al. write them).
    :param str scale: the rule for the Gaussian's s: ``fixed`` (s = ``sigma`` in every
        layer), ``fan_in`` (s = ``sigma * sqrt(2 / fan_in)``, He et al.'s initial scale
        for ReLU networks: a draw from the prior keeps the pre-activations' variance from
        layer to layer, where N(0, 1) on a 784-input layer multiplies it by 784) or
        ``learned``: s is the layer's own parameter (``prior(zero, shape, fan_in, s)``), a
        parameter of the model that SVI trains with the guide (empirical Bayes, type-II
        maximum likelihood of the ELBO, as uncertainty-baselines' LeNet-5 does); the layers
        start it at the ``fan_in`` value (:func:`initial_prior_sigma`).
    """
    if name == "gaussian":
        if not sigma > 0:
            raise ValueError(f"prior_sigma must be > 0, got {sigma}")
        if scale not in PRIOR_SCALES:
            raise ValueError(f"prior_scale must be one of {PRIOR_SCALES}, got {scale!r}")

        def gaussian(zero, shape, fan_in, learned=None):
            if scale == "learned":
                s = learned
            else:
                s = sigma * math.sqrt(2.0 / fan_in) if scale == "fan_in" else sigma
            return dist.Normal(zero, s).expand(shape).to_event(len(shape))

        gaussian.learns_sigma = scale == "learned"
        return gaussian
    if name == "scale_mixture":
        if scale == "learned":
            raise ValueError(
                "prior_scale=learned needs prior=gaussian (the scale mixture has its two "
                "sigmas from neg_log_sigma1 and neg_log_sigma2)"
            )
        if not 0 <= mixture_pi <= 1:
            raise ValueError(f"mixture_pi must be in [0, 1], got {mixture_pi}")
        sigma1, sigma2 = math.exp(-neg_log_sigma1), math.exp(-neg_log_sigma2)
        return lambda zero, shape, fan_in, learned=None: (
            ScaleMixtureNormal(zero, sigma1, sigma2, mixture_pi).expand(shape).to_event(len(shape))
        )
    raise ValueError(f"prior must be one of {PRIORS}, got {name!r}")


def initial_prior_sigma(sigma: float, fan_in: int) -> float:
    """Where ``prior_scale=learned`` starts a layer's sigma: the ``fan_in`` rule's value."""
    return sigma * math.sqrt(2.0 / fan_in)


def _learned_sigma(layer: PyroModule, prior: Prior, sigma: float) -> None:
    """Gives ``layer`` its prior sigma as a positive parameter when ``prior`` learns it."""
    if getattr(prior, "learns_sigma", False):
        start = torch.tensor(initial_prior_sigma(sigma, layer.in_features))
        layer.prior_sigma = PyroParam(start, constraint=constraints.positive)


def _layer_prior(layer: PyroModule, shape: tuple[int, ...]) -> dist.Distribution:
    """The prior of one of ``layer``'s weight tensors, with its learned sigma if it has one."""
    learned = layer.prior_sigma if getattr(layer.prior, "learns_sigma", False) else None
    return layer.prior(layer.zero, shape, layer.in_features, learned)


class BayesianLinear(PyroModule):
    """``x W^T + b`` with ``W`` (out, in) and ``b`` (out,) drawn from ``prior`` at each call.

    Calls :func:`zoo.handlers.linear`, so local reparameterization can replace the weight
    draw by a draw of the output.
    """

    def __init__(
        self, in_features: int, out_features: int, prior: Prior, sigma: float = 1.0
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.prior = prior
        # the priors are built on this buffer's device, so .to(device) moves them too
        self.register_buffer("zero", torch.zeros(()), persistent=False)
        _learned_sigma(self, prior, sigma)
        self.weight = PyroSample(lambda layer: _layer_prior(layer, (out_features, in_features)))
        self.bias = PyroSample(lambda layer: _layer_prior(layer, (out_features,)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)  # (B, in) -> (B, out)


class BayesianConv2d(PyroModule):
    """A 5x5 (``kernel``) convolution with "same" padding, weights ``(out, in, k, k)`` and
    bias ``(out,)`` drawn from ``prior`` at each call, then an optional 2x2 max-pool.

    Calls :func:`zoo.handlers.conv2d`, so flipout can replace the shared weight draw by
    per-example perturbations.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        prior: Prior,
        *,
        kernel: int,
        pool: bool,
        sigma: float = 1.0,
    ) -> None:
        super().__init__()
        self.in_features = in_channels * kernel * kernel  # the fan-in of one output
        self.kernel, self.pool = kernel, pool
        self.prior = prior
        self.register_buffer("zero", torch.zeros(()), persistent=False)
        _learned_sigma(self, prior, sigma)
        shape = (out_channels, in_channels, kernel, kernel)
        self.weight = PyroSample(lambda layer: _layer_prior(layer, shape))
        self.bias = PyroSample(lambda layer: _layer_prior(layer, (out_channels,)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv2d(x, self.weight, self.bias, padding=self.kernel // 2)  # (B, C, H, W)


def network_layers(
    architecture: str, num_features: int, image_shape: Sequence[int] | None,
    hidden_dims: Sequence[int], num_outputs: int, prior: Prior, sigma: float = 1.0,
) -> list[PyroModule]:
    """The Bayesian layers of one network: ``mlp`` (dense layers ``hidden_dims``) or
    ``lenet5`` (LeNet-5 as in uncertainty-baselines: 5x5 "same" convolutions of 6, 16 and 120
    channels, 2x2 max-pools after the first two, then dense ``hidden_dims``, e.g. [84])."""
    layers: list[PyroModule] = []
    if architecture == "lenet5":
        height, width = image_shape
        channels = [1, *LENET5_CHANNELS]
        for i, (c_in, c_out) in enumerate(zip(channels, channels[1:])):
            pool = i < 2
            layers.append(
                BayesianConv2d(c_in, c_out, prior, kernel=LENET5_KERNEL, pool=pool, sigma=sigma)
            )
            if pool:  # "same" pooling: ceil, 28 -> 14 -> 7
                height, width = -(-height // 2), -(-width // 2)
        num_features = channels[-1] * height * width
    sizes = [num_features, *hidden_dims, num_outputs]
    layers += [
        BayesianLinear(n_in, n_out, prior, sigma) for n_in, n_out in zip(sizes, sizes[1:])
    ]
    return layers


def init_to_layer_fan_in(fan_ins: dict[str, int]) -> Callable[[dict], torch.Tensor]:
    """``init_loc_fn`` of the guides: a weight of a layer with ``fan_ins[site name]`` inputs
    per output starts at ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (torch's default for dense
    and convolutional layers alike); other sites as :func:`zoo.guides.init_to_fan_in_uniform`.
    A convolution's fan-in is ``in_channels * k * k``, not the last dimension of its weight."""

    def init(site: dict) -> torch.Tensor:
        shape = site["fn"].shape()
        if site["name"] in fan_ins and len(shape) >= 2:
            bound = 1.0 / math.sqrt(fan_ins[site["name"]])
            return torch.empty(shape).uniform_(-bound, bound)
        return init_to_fan_in_uniform(site)

    return init


class BNN(ZooModel):
    """An MLP whose weights are latent, for classification or regression.

    :param int num_features: input size D.
    :param int num_outputs: classes C, or 1 for regression.
    :param str architecture: ``mlp`` or ``lenet5`` (see :func:`network_layers`).
    :param image_shape: ``(height, width)`` of the images, for ``lenet5``.
    :param str likelihood: ``categorical`` or ``normal``.
    :param hidden_dims: sizes of the hidden layers.
    :param str activation: ``relu``, ``tanh``, ``softplus`` or ``elu``.
    :param str prior: ``gaussian`` or ``scale_mixture``; see :func:`make_prior` for
        ``prior_sigma``, ``mixture_pi``, ``neg_log_sigma1``, ``neg_log_sigma2``.
    :param float noise: the observation noise sigma_y (regression); the prior median of
        sigma_y when ``learn_noise``.
    :param bool learn_noise: put a prior on log sigma_y and infer it with the weights.
    :param str guide: ``bbb``, ``map``, ``mc_dropout`` or ``ensemble`` (``ensemble_size`` MAP
        networks trained side by side from their own random initial weights, on the same
        minibatches; the predictive averages their softmaxes: Lakshminarayanan et al. 2017).
    :param ensemble_size: the number of networks of ``guide=ensemble``; ``None``: 5.
    :param init_rho: ``(low, high)`` of the initial rho of Bayes by Backprop.
    :param prior_scale: ``fixed``, ``fan_in`` or ``learned``: see :func:`make_prior`.
    :param local_reparameterization: sample pre-activations instead of weights
        (``guide=bbb`` only); ``None``: on for ``guide=bbb``.
    :param flipout: flipout for the convolutions (``guide=bbb`` and ``lenet5`` only);
        ``None``: on for both.
    :param float dropout: dropout rate after each hidden layer (``guide=mc_dropout`` only).
    :param plot_range: ``(low, high)`` of the 1-D regression figure; by default the training
        inputs' range widened by half its width on each side.
    """

    Settings = BNNSettings
    replayable = True  # tests/test_replay.py trains it both ways, bit for bit

    def __init__(
        self,
        num_features: int,
        num_outputs: int,
        *,
        likelihood: str = "categorical",
        architecture: str = "mlp",
        image_shape: Sequence[int] | None = None,
        hidden_dims: Sequence[int] = (400, 400),
        activation: str = "relu",
        prior: str = "gaussian",
        prior_sigma: float = 1.0,
        prior_scale: str = "fixed",
        mixture_pi: float = 0.5,
        neg_log_sigma1: float = 0.0,
        neg_log_sigma2: float = 6.0,
        noise: float = 0.1,
        learn_noise: bool = False,
        guide: str = "bbb",
        ensemble_size: int | None = None,
        init_rho: Sequence[float] = (-5.0, -4.0),
        local_reparameterization: bool | None = None,
        flipout: bool | None = None,
        dropout: float = 0.0,
        plot_range: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if likelihood not in ("categorical", "normal"):
            raise ValueError(f"likelihood must be categorical or normal, got {likelihood!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if guide not in GUIDES:
            raise ValueError(f"guide must be one of {GUIDES}, got {guide!r}")
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
        if architecture == "lenet5" and (image_shape is None or len(image_shape) != 2):
            raise ValueError(f"architecture=lenet5 needs image_shape (height, width), got {image_shape}")
        if ensemble_size is not None and guide != "ensemble":
            raise ValueError(f"ensemble_size needs guide=ensemble, got guide={guide!r}")
        if flipout is None:
            flipout = guide == "bbb" and architecture == "lenet5"
        if flipout and (guide != "bbb" or architecture != "lenet5"):
            raise ValueError("flipout needs guide=bbb (Normal weights) and architecture=lenet5")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if (guide == "mc_dropout") != (dropout > 0):
            raise ValueError(
                f"guide={guide} with dropout={dropout}: MC dropout needs dropout > 0, and the "
                "other guides take dropout = 0 (dropout kept on at prediction is MC dropout)"
            )
        if local_reparameterization is None:
            local_reparameterization = guide == "bbb"
        if local_reparameterization and guide != "bbb":
            raise ValueError("local_reparameterization needs guide=bbb (Normal weights)")
        if not noise > 0:
            raise ValueError(f"noise must be > 0, got {noise}")
        self.likelihood = likelihood
        self.num_features, self.num_outputs = num_features, num_outputs
        self.activation = ACTIVATIONS[activation]
        self.dropout = dropout
        self.guide_name = guide
        self.architecture = architecture
        self.image_shape = tuple(image_shape) if image_shape is not None else None
        self.ensemble_size = (ensemble_size or DEFAULT_ENSEMBLE_SIZE) if guide == "ensemble" else 1
        self.log_noise_prior = math.log(noise)
        self.learn_noise = learn_noise and likelihood == "normal"
        self.plot_range = tuple(plot_range) if plot_range is not None else None

        weight_prior = make_prior(
            prior,
            sigma=prior_sigma,
            scale=prior_scale,
            mixture_pi=mixture_pi,
            neg_log_sigma1=neg_log_sigma1,
            neg_log_sigma2=neg_log_sigma2,
        )
        def layers():
            return PyroModule[torch.nn.ModuleList](
                network_layers(architecture, num_features, self.image_shape, hidden_dims,
                               num_outputs, weight_prior, prior_sigma)
            )

        # add_module prefixed the layers with this object's unique name; the sample sites
        # are named "layers.0.weight" (an ensemble's "members.2.0.weight") instead, so that a
        # guide or checkpoint made in one process fits a BNN of the same shape in another
        if guide == "ensemble":
            self.members = PyroModule[torch.nn.ModuleList](
                [layers() for _ in range(self.ensemble_size)]
            )
            self.members._pyro_set_supermodule("members", self._pyro_context)
            networks = {f"members.{m}": member for m, member in enumerate(self.members)}
        else:
            self.layers = layers()
            self.layers._pyro_set_supermodule("layers", self._pyro_context)
            networks = {"layers": self.layers}
        fan_ins = {
            f"{prefix}.{i}.weight": layer.in_features
            for prefix, network in networks.items()
            for i, layer in enumerate(network)
        }
        handlers = []
        if local_reparameterization:
            handlers.append(LocalReparameterizationMessenger())
        if flipout:
            handlers.append(FlipoutMessenger())
        self._handlers = handlers
        init = init_to_layer_fan_in(fan_ins)
        if guide == "bbb":
            self.approximation = BayesByBackprop(self.model, init_loc_fn=init, init_rho=tuple(init_rho))
        else:
            self.approximation = AutoDelta(self.model, init_loc_fn=init)
        # the first call traces the model and creates the guide's parameters: now, so that
        # .to(device), state_dict and load_state_dict see them
        x0 = torch.zeros(1, num_features)
        with poutine.block(), torch.no_grad():
            self.approximation(x0, self._dummy_targets(x0))
        self._last_evaluation: dict = {}

    @classmethod
    def build(cls, data, **settings) -> BNN:
        """A classifier for a labelled data set, a regression for ``kind="regression"``."""
        image_shape = tuple(data.shape) if _is_image(data.shape) else None
        if data.num_classes is not None:
            return cls(data.num_features, data.num_classes, likelihood="categorical",
                       image_shape=image_shape, **settings)
        if data.kind == "regression":
            return cls(data.num_features, 1, likelihood="normal", image_shape=image_shape,
                       **settings)
        raise ValueError(f"data set {data.name!r} has neither classes nor regression targets")

    def _dummy_targets(self, x: torch.Tensor) -> torch.Tensor:
        if self.likelihood == "categorical":
            return torch.zeros(len(x), dtype=torch.long, device=x.device)
        return x.new_zeros(len(x))

    @property
    def _local_reparameterization(self) -> LocalReparameterizationMessenger | None:
        return next((h for h in self._handlers if isinstance(h, LocalReparameterizationMessenger)), None)

    @contextmanager
    def _reparameterization(self):
        with ExitStack() as stack:
            for handler in self._handlers:
                stack.enter_context(handler)
            yield

    def network(self, x: torch.Tensor) -> torch.Tensor:
        """The network with the weights of the current draw: (B, D) -> (B, num_outputs), or
        (M, B, num_outputs) for an ensemble of M."""
        if self.guide_name == "ensemble":
            return torch.stack([self._forward(member, x) for member in self.members])
        return self._forward(self.layers, x)

    def _forward(self, layers, x: torch.Tensor) -> torch.Tensor:
        h = x if self.architecture == "mlp" else x.view(len(x), 1, *self.image_shape)
        pool = False
        for i, layer in enumerate(layers):
            if i > 0:
                h = self.activation(h)
                if pool:
                    h = F.max_pool2d(h, 2, ceil_mode=True)
                if self.dropout > 0:
                    h = F.dropout(h, self.dropout, training=True)  # on at prediction too
                if isinstance(layer, BayesianLinear) and h.dim() > 2:
                    h = h.flatten(1)
            h = layer(h)
            pool = getattr(layer, "pool", False)
        return h

    def _observation_noise(self, x: torch.Tensor) -> torch.Tensor:
        loc = x.new_tensor(self.log_noise_prior)
        if self.learn_noise:
            return pyro.sample("log_noise", dist.Normal(loc, 1.0)).exp()
        return loc.exp()

    @pyro_method
    def model(self, x: torch.Tensor, y: torch.Tensor | None = None, size: int | None = None):
        """The network with weights drawn from their prior, then the likelihood of ``y`` given
        ``x`` in the data plate: Categorical for labelled data, Normal for regression."""
        with self._reparameterization():
            out = self.network(x)  # (B, C); outside the data plate: one draw for the batch
        if self.likelihood == "categorical":
            with self._members_plate(), data_plate(x, size):
                return pyro.sample("y", dist.Categorical(logits=out), obs=y)
        noise = self._observation_noise(x)
        with self._members_plate(), data_plate(x, size):
            y = y.reshape(-1) if y is not None else None  # (B,) or (B, 1) -> (B,)
            return pyro.sample("y", dist.Normal(out.squeeze(-1), noise), obs=y)

    def _members_plate(self):
        """An ensemble's networks explain the data side by side: the likelihood is the sum
        of each member's, so each is trained as if alone (on the same minibatches)."""
        if self.guide_name != "ensemble":
            return nullcontext()
        return pyro.plate("members", self.ensemble_size, dim=-2)

    @pyro_method
    def guide(self, x: torch.Tensor, y: torch.Tensor | None = None, size: int | None = None):
        """The approximation that ``model.guide`` picks (Bayes by Backprop, MAP, MC dropout or
        the ensemble), under the same reparameterization handlers as the model."""
        with self._reparameterization():
            return self.approximation(x, y, size)

    # ---- prediction ----------------------------------------------------------------------

    @pyro_method
    def _outputs(self, x: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        # one pyro_method call: the weights are drawn once and serve every batch
        out = torch.cat([self.network(batch) for batch in x.split(batch_size)], dim=-2)
        noise = self._observation_noise(x) if self.likelihood == "normal" else x.new_zeros(())
        return out, noise

    def draws(self, num_samples: int) -> int:
        """How many networks a predictive of ``num_samples`` averages: the MAP guide has one
        point, so one draw; an ensemble its M members."""
        return {"map": 1, "ensemble": self.ensemble_size}.get(self.guide_name, num_samples)

    @torch.no_grad()
    def predictive_draws(
        self, x: torch.Tensor, num_samples: int, batch_size: int = 1000
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yields ``(outputs (N, num_outputs), sigma_y)`` for ``num_samples`` draws of the
        weights from the guide; the MAP guide without dropout has one draw only, an ensemble
        one output per member."""
        if self.guide_name == "ensemble":  # one point of the guide holds every member
            outputs, noise = self._outputs_at_one_draw(x, batch_size)
            yield from ((member, noise) for member in outputs)
            return
        for _ in range(self.draws(num_samples)):
            yield self._outputs_at_one_draw(x, batch_size)

    def _outputs_at_one_draw(self, x: torch.Tensor, batch_size: int):
        """:meth:`_outputs` at one draw of the weights from the guide."""
        x0 = x[:1]
        guide_trace = poutine.trace(self.approximation).get_trace(x0, self._dummy_targets(x0))
        return poutine.replay(self._outputs, trace=guide_trace)(x, batch_size)

    def _shown_draws(self, x, num_samples, batch_size, progress):
        """:meth:`predictive_draws` with a bar over the draws (on a terminal, if ``progress``)."""
        return progress_bar(
            self.predictive_draws(x, num_samples, batch_size),
            desc="test draws",
            total=self.draws(num_samples),
            enabled=progress,
        )

    @torch.no_grad()
    def evaluate(
        self,
        data,
        *,
        num_samples: int = 100,
        batch_size: int = 1000,
        calibration_bins: int = 15,
        ood: Sequence[str] | str | None = ("noise",),
        ood_size: int = 2000,
        progress: bool = False,
    ) -> dict[str, float]:
        """Test metrics of the posterior predictive, by Monte Carlo over ``num_samples``
        draws of the weights.

        Classification: error, NLL, Brier score (sum over classes), expected calibration
        error over ``calibration_bins`` equal-width bins, the mean predictive entropy and
        mutual information (between the label and the weights: the epistemic part of the
        entropy) of the test set; for each out-of-distribution set in ``ood`` (``noise``:
        ``ood_size`` uniform-noise images; or the name of a data set with the same number of
        features, or of images, resized to the model's), its mean entropy and mutual
        information and the AUROC of telling it from the test set by each
        (``test/ood/<set>/auroc_entropy``, ``.../auroc_mi``). Regression: RMSE of the predictive mean, the test
        log-likelihood per point, and the coverage of the central 50% and 95% intervals of
        the predictive mixture (from its CDF: :func:`mixture_coverage`).
        """
        self._last_evaluation = {"num_samples": num_samples, "batch_size": batch_size}
        ood = BNNEvaluation._as_list(ood)
        if self.likelihood == "normal":
            return self._evaluate_regression(data, num_samples, batch_size, progress)
        return self._evaluate_classification(
            data, num_samples, batch_size, calibration_bins, ood, ood_size, progress
        )

    def _ood_inputs(self, name: str, like: torch.Tensor, size: int) -> torch.Tensor:
        """``size`` inputs of the out-of-distribution set ``name``, in the model's shape."""
        if name == "noise":
            generator = torch.Generator().manual_seed(OOD_SEED)
            return torch.rand(size, like.shape[1], generator=generator).to(like)
        ood = load_dataset(name)
        x = ood.test_x[:size].to(like)
        if x.shape[1] == like.shape[1]:
            return x
        if self.image_shape is not None and _is_image(ood.shape):
            return resize_images(x, ood.shape, self.image_shape)
        raise ValueError(
            f"ood data set {name!r} has {x.shape[1]} features, the model {like.shape[1]}"
        )

    def _evaluate_classification(
        self, data, num_samples, batch_size, bins, ood, ood_size, progress=False
    ):
        x, y = data.test_x, data.test_y
        n = len(x)
        # the training data set itself is no out-of-distribution set (the default list names
        # the digits, which a model of the digits has seen)
        parts = {name: self._ood_inputs(name, x, ood_size) for name in ood if name != data.name}
        x = torch.cat([x, *parts.values()])
        log_mean = None  # log of the running sum of the class probabilities, (N, C)
        draw_entropy = torch.zeros(len(x), device=x.device)  # sum over draws of H[p(y|x, w)]
        draws = 0
        for out, _ in self._shown_draws(x, num_samples, batch_size, progress):
            log_p = F.log_softmax(out, dim=-1)
            log_mean = log_p if log_mean is None else torch.logaddexp(log_mean, log_p)
            draw_entropy -= (log_p.exp() * log_p).sum(-1)
            draws += 1
        log_mean = log_mean - math.log(draws)
        probs = log_mean.exp()
        entropy = -(probs * log_mean).sum(-1)  # (N,)
        # I(y; w | x) = H[mean_w p] - mean_w H[p]: 0 for one draw; clamped against rounding
        information = (entropy - draw_entropy / draws).clamp_min(0.0)
        p_test, log_test = probs[:n], log_mean[:n]
        confidence, predicted = p_test.max(-1)
        correct = (predicted == y).float()
        one_hot = F.one_hot(y, p_test.shape[-1]).to(p_test)
        reliability = calibration_table(confidence, correct, bins)
        self._last_evaluation["reliability"] = reliability
        metrics = {
            "test/error": 1.0 - correct.mean().item(),
            "test/nll": -log_test.gather(-1, y[:, None]).mean().item(),
            "test/brier": ((p_test - one_hot) ** 2).sum(-1).mean().item(),
            "test/ece": expected_calibration_error(reliability),
            "test/entropy": entropy[:n].mean().item(),
            "test/mutual_information": information[:n].mean().item(),
        }
        entropies = {"test": entropy[:n]}
        start = n
        for name, part in parts.items():
            span = slice(start, start + len(part))
            start += len(part)
            entropies[name] = entropy[span]
            metrics[f"test/ood/{name}/entropy"] = entropy[span].mean().item()
            metrics[f"test/ood/{name}/mutual_information"] = information[span].mean().item()
            metrics[f"test/ood/{name}/auroc_entropy"] = auroc(entropy[:n], entropy[span])
            metrics[f"test/ood/{name}/auroc_mi"] = auroc(information[:n], information[span])
        self._last_evaluation["entropies"] = entropies
        return metrics

    def _regression_draws(
        self, x, num_samples, batch_size, progress=False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        means, noises = zip(*self._shown_draws(x, num_samples, batch_size, progress))
        return torch.stack(means).squeeze(-1), torch.stack(noises)  # (S, N), (S,)

    def _evaluate_regression(self, data, num_samples, batch_size, progress=False):
        y = data.test_y.reshape(-1)
        means, noises = self._regression_draws(data.test_x, num_samples, batch_size, progress)
        s = len(means)
        log_lik = dist.Normal(means, noises[:, None]).log_prob(y)  # (S, N)
        metrics = {
            "test/rmse": (means.mean(0) - y).pow(2).mean().sqrt().item(),
            "test/log_likelihood": (torch.logsumexp(log_lik, 0) - math.log(s)).mean().item(),
        }
        for level in (0.5, 0.95):
            metrics[f"test/coverage_{round(level * 100)}"] = mixture_coverage(
                means, noises, y, level
            )
        metrics["test/noise"] = noises.mean().item()
        return metrics

    @torch.no_grad()
    def figures(self, data, history: list[dict], out_dir: Path) -> dict[str, str]:
        out_dir = Path(out_dir)
        written = {"elbo_curve": plots.elbo_curve(history, out_dir / "elbo_curve.png")}
        if self.likelihood == "normal" and self.num_features == 1:
            num_samples = self._last_evaluation.get("num_samples", 200)
            low, high = self.plot_range or _widened(data.train_x)
            grid = torch.linspace(low, high, 400, device=data.train_x.device)[:, None]
            means, noises = self._regression_draws(grid, num_samples, 1000)
            predictions = means + noises[:, None] * torch.randn_like(means)
            written["bands"] = plots.regression_bands(
                grid.squeeze(-1),
                predictions,
                {level: central_interval(predictions, level) for level in (0.5, 0.95)},
                data.train_x.squeeze(-1),
                data.train_y.reshape(-1),
                out_dir / "bands.png",
                title=f"{self.guide_name}: predictive mean, 50% and 95% intervals",
            )
        if len(self._last_evaluation.get("entropies", {})) > 1:
            written["entropy"] = plots.entropy_histograms(
                self._last_evaluation["entropies"],
                out_dir / "entropy.png",
                title=f"{self.guide_name} on {data.name}: predictive entropy",
            )
        if "reliability" in self._last_evaluation:
            written["reliability"] = plots.reliability_diagram(
                *self._last_evaluation["reliability"],
                out_dir / "reliability.png",
                title=f"{self.guide_name} on {data.name}",
            )
        return {name: str(path) for name, path in written.items()}


def resize_images(
    x: torch.Tensor, shape: Sequence[int], to: Sequence[int]
) -> torch.Tensor:
    """Flat images ``(N, H*W)`` of ``shape`` (H, W), resized to ``to`` by bilinear
    interpolation (the shipped 8x8 digits as 28x28 out-of-distribution inputs)."""
    images = x.view(len(x), 1, *shape)
    resized = F.interpolate(images, size=tuple(to), mode="bilinear", align_corners=False)
    return resized.clamp(0.0, 1.0).flatten(1)


def _widened(x: torch.Tensor) -> tuple[float, float]:
    low, high = x.min().item(), x.max().item()
    return low - (high - low) / 2, high + (high - low) / 2


def central_interval(draws: torch.Tensor, level: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The empirical central ``level`` interval of ``draws`` (S, N) along dim 0."""
    levels = torch.tensor(
        [(1 - level) / 2, (1 + level) / 2], dtype=draws.dtype, device=draws.device
    )
    low, high = torch.quantile(draws, levels, dim=0)
    return low, high


def mixture_coverage(
    means: torch.Tensor, noises: torch.Tensor, y: torch.Tensor, level: float
) -> float:
    """The share of ``y`` (N,) inside the central ``level`` interval of the predictive mixture
    ``p(y_i) = mean_s Normal(y_i | means[s, i], noises[s])``.

    ``y_i`` is covered when its predictive CDF ``F(y_i) = mean_s Phi((y_i - mu_si) / sigma_s)``
    lies in ``[(1 - level) / 2, (1 + level) / 2]``. The CDF is exact for the S draws of the
    weights; empirical quantiles of S noisy draws would make the interval too narrow for
    small S (95% coverage 0.87 at S = 20 on a calibrated predictive, 0 for one draw).

    :param means: (S, N) predictive means, one row per draw of the weights.
    :param noises: (S,) observation noise sigma_y of each draw.
    """
    cdf = dist.Normal(means, noises[:, None]).cdf(y).mean(0)  # (N,)
    covered = (cdf >= (1 - level) / 2) & (cdf <= (1 + level) / 2)
    return covered.float().mean().item()


def calibration_table(
    confidence: torch.Tensor, correct: torch.Tensor, bins: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per equal-width confidence bin over (0, 1]: mean confidence, accuracy and count."""
    index = (confidence * bins).ceil().long().clamp(1, bins) - 1  # bin b holds (b/B, (b+1)/B]
    counts = torch.zeros(bins, device=confidence.device).index_add_(
        0, index, torch.ones_like(confidence)
    )
    conf_sum = torch.zeros(bins, device=confidence.device).index_add_(0, index, confidence)
    acc_sum = torch.zeros(bins, device=confidence.device).index_add_(0, index, correct)
    safe = counts.clamp_min(1)
    return conf_sum / safe, acc_sum / safe, counts


def expected_calibration_error(table: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> float:
    """ECE = sum_b (n_b / n) |accuracy_b - confidence_b| (Guo et al. 2017)."""
    confidence, accuracy, counts = table
    return ((counts / counts.sum()) * (accuracy - confidence).abs()).sum().item()


def auroc(negatives: torch.Tensor, positives: torch.Tensor) -> float:
    """The probability that a positive scores above a negative (ties count one half)."""
    scores = torch.cat([negatives, positives])
    ranks = _average_ranks(scores)
    n_neg, n_pos = len(negatives), len(positives)
    return ((ranks[n_neg:].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)).item()


def _average_ranks(scores: torch.Tensor) -> torch.Tensor:
    """1-based ranks of ``scores``, tied values sharing their mean rank."""
    values, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    mean_rank = ends - (counts.double() - 1) / 2
    return mean_rank[inverse]

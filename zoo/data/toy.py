"""The toy regression curve of Blundell et al. (2015), generated from a fixed seed.

    y = x + 0.3 sin(2 pi (x + eps)) + 0.3 sin(4 pi (x + eps)) + eps,   eps ~ N(0, noise^2)

with x uniform on ``[x_min, x_max]`` (``[0, 0.5]`` in the paper, whose figure then shows the
fit over ``[-0.2, 1.2]``). The test points come from the same distribution as the training
points, from the same seed, so test numbers measure the fit where there is data; how the
uncertainty grows away from the data is what the model's figure shows.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import model_validator

from zoo.data.base import DataError, Dataset, DataSettings, register_dataset
from zoo.schema import SettingError, setting


def blundell_curve(x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The curve of Blundell et al. (2015) with noise ``eps`` inside and outside the sines."""
    return (
        x
        + 0.3 * torch.sin(2 * math.pi * (x + eps))
        + 0.3 * torch.sin(4 * math.pi * (x + eps))
        + eps
    )


class ToyRegressionSettings(DataSettings):
    name: Literal["toy_regression"] = "toy_regression"
    n_train: int = setting(256, "an integer >= 1", ge=1)
    n_test: int = setting(256, "an integer >= 1", ge=1)
    noise: float = setting(0.02, "a finite number >= 0", ge=0.0)
    x_min: float = setting(0.0, "a finite number below x_max")
    x_max: float = setting(0.5, "a finite number above x_min")
    seed: int = setting(20150520, "an integer from 0 to 2**63 - 1", ge=0, le=2**63 - 1)

    @model_validator(mode="after")
    def _range_not_empty(self) -> ToyRegressionSettings:
        if not self.x_min < self.x_max:
            raise SettingError("x_max", self.x_max, f"it must be above x_min = {self.x_min}")
        return self


@register_dataset("toy_regression", ToyRegressionSettings)
def load_toy_regression(
    *,
    n_train: int = 256,
    n_test: int = 256,
    noise: float = 0.02,
    x_min: float = 0.0,
    x_max: float = 0.5,
    seed: int = 20150520,
) -> Dataset:
    """Generate the toy regression data: inputs ``(N, 1)``, float targets ``(N,)``.

    :param n_train: number of training points.
    :param n_test: number of test points, from the same distribution.
    :param noise: the standard deviation of eps.
    :param x_min: lower end of the input range.
    :param x_max: upper end of the input range.
    :param seed: the seed of the generator; the same seed gives the same data.

    Example::

        >>> ds = load_toy_regression(n_train=8, n_test=4)
        >>> ds.train_x.shape, ds.train_y.shape, ds.kind
        (torch.Size([8, 1]), torch.Size([8]), 'regression')
    """
    if n_train < 1 or n_test < 1:
        raise DataError(f"n_train and n_test must be >= 1, got {n_train} and {n_test}.")
    if not (noise >= 0 and x_min < x_max):
        raise DataError(
            f"need noise >= 0 and x_min < x_max, got noise={noise}, x_min={x_min}, x_max={x_max}."
        )
    generator = torch.Generator().manual_seed(seed)
    n = n_train + n_test
    x = x_min + (x_max - x_min) * torch.rand(n, 1, generator=generator)
    eps = noise * torch.randn(n, 1, generator=generator)
    y = blundell_curve(x, eps).squeeze(-1)
    return Dataset(
        name="toy_regression",
        kind="regression",
        train_x=x[:n_train],
        train_y=y[:n_train],
        test_x=x[n_train:],
        test_y=y[n_train:],
        shape=(1,),
        num_classes=None,
        source=f"generated (Blundell et al. 2015 curve, seed {seed})",
    )

"""The statistics of benchmarks/gradient_variance.py: a group of parameters that is a view of
a larger one (the encoder's scale head, rows [L:] of its last layer) reads its own elements of
the gradient draws, and the SNR |E g| / sqrt(tr Cov g) is estimated without the bias of the
squared sample mean."""

import importlib.util
from pathlib import Path

import torch

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "gradient_variance.py"
spec = importlib.util.spec_from_file_location("gradient_variance", PATH)
gradient_variance = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gradient_variance)


def test_a_view_of_a_parameter_reads_its_own_elements_of_the_draws():
    weight = torch.nn.Parameter(torch.zeros(4, 3))
    bias = torch.nn.Parameter(torch.zeros(4))
    params = [weight, bias]
    # draw k: weight element (i, j) = k * (10 i + j), bias element i = k * 100 i; so the mean
    # over draws k = 0, 1, 2 of each element is its (10 i + j) or 100 i
    draws = [
        torch.cat(
            [
                (k * (10 * torch.arange(4)[:, None] + torch.arange(3))).flatten(),
                k * 100 * torch.arange(4),
            ]
        ).float()
        for k in range(3)
    ]
    groups = {"rows 2 and 3": lambda: [weight[2:], bias[2:]], "all": lambda: params}
    stats = gradient_variance.group_statistics(groups, params, draws)
    # the rows' elements: weight rows 2, 3 -> 20, 21, 22, 30, 31, 32; bias 200, 300; each times
    # k, whose variance over 0, 1, 2 is 1
    values = torch.tensor([20.0, 21, 22, 30, 31, 32, 200, 300])
    assert abs(stats["rows 2 and 3"]["variance_mean"] - values.square().mean().item()) < 1e-6
    everything = torch.stack(draws).double()
    assert abs(stats["all"]["variance_mean"] - everything.var(0).mean().item()) < 1e-6


def test_the_snr_of_noisy_draws_recovers_the_true_signal_to_noise_ratio():
    torch.manual_seed(0)
    d, n = 200, 50
    mean = torch.full((d,), 0.1)
    draws = list(mean + torch.randn(n, d))  # sd 1
    param = torch.nn.Parameter(torch.zeros(d))
    stats = gradient_variance.group_statistics({"g": lambda: [param]}, [param], draws)
    true_snr = mean.norm().item() / d**0.5  # sqrt(2 / 200) = 0.1
    assert abs(stats["g"]["snr"] - true_snr) < 0.03
    # the squared sample mean alone adds tr(Cov) / n = 4 to |E g|^2 = 2: about 0.17
    biased = (torch.stack(draws).mean(0).norm() / d**0.5).item()
    assert biased - true_snr > 0.05


def test_pure_noise_has_an_snr_near_zero_not_the_floor_of_the_sample_mean():
    torch.manual_seed(1)
    param = torch.nn.Parameter(torch.zeros(20))
    draws = list(torch.randn(64, 20))
    stats = gradient_variance.group_statistics({"g": lambda: [param]}, [param], draws)
    assert stats["g"]["snr"] < 0.06  # the uncorrected ratio would be about 1/sqrt(64) = 0.125

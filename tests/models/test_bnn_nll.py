"""The BNN's test NLL is the NLL of the posterior predictive: of the class probabilities
averaged over the draws of the weights, not the mean of each draw's NLL (which is larger by
Jensen's inequality, and was once caught only by ``nll > 0``).

The draws are fixed here (two of them, by hand), so the expected numbers are plain arithmetic.
"""

import math

import pytest
import torch

from zoo.models import BNN

# two draws of the network's output for two test rows of three classes
LOGITS = [
    torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]]),
    torch.tensor([[-1.0, 0.0, 3.0], [0.0, 0.0, 0.0]]),
]
LABELS = torch.tensor([0, 1])


class HeldOut:
    name = "two rows"

    def __init__(self, y: torch.Tensor) -> None:
        self.test_x = torch.zeros(len(y), 4)
        self.test_y = y


def softmax(row):
    total = sum(math.exp(v) for v in row)
    return [math.exp(v) / total for v in row]


def with_fixed_draws(bnn: BNN, draws) -> BNN:
    """The BNN's predictive yields ``draws`` instead of drawing weights from the guide."""
    bnn.predictive_draws = lambda x, num_samples, batch_size=1000: iter(draws)
    return bnn


def test_classification_nll_is_that_of_the_averaged_probabilities():
    zero = torch.zeros(())
    bnn = with_fixed_draws(BNN(4, 3, hidden_dims=[5]), [(out, zero) for out in LOGITS])

    metrics = bnn.evaluate(HeldOut(LABELS), num_samples=2, ood=None)

    first = [softmax(row) for row in LOGITS[0].tolist()]
    second = [softmax(row) for row in LOGITS[1].tolist()]
    averaged = [[(a + b) / 2 for a, b in zip(r1, r2)] for r1, r2 in zip(first, second)]
    nll = -(math.log(averaged[0][0]) + math.log(averaged[1][1])) / 2
    mean_per_draw_nll = (
        -sum(math.log(draw[0][0]) + math.log(draw[1][1]) for draw in (first, second)) / 4
    )
    assert mean_per_draw_nll - nll > 0.1  # the example tells the two apart
    assert metrics["test/nll"] == pytest.approx(nll, rel=1e-6)
    # the same averaged probabilities give the error and the Brier score
    predicted = [max(range(3), key=row.__getitem__) for row in averaged]
    assert metrics["test/error"] == pytest.approx(
        sum(p != y for p, y in zip(predicted, [0, 1])) / 2
    )
    brier = (
        sum(sum((p - (c == y)) ** 2 for c, p in enumerate(row)) for row, y in zip(averaged, [0, 1]))
        / 2
    )
    assert metrics["test/brier"] == pytest.approx(brier, rel=1e-6)


def test_regression_log_likelihood_is_that_of_the_averaged_densities():
    means = [torch.tensor([[0.0], [1.0]]), torch.tensor([[2.0], [1.5]])]
    noises = [torch.tensor(0.5), torch.tensor(1.0)]
    y = torch.tensor([0.4, 1.2])
    bnn = with_fixed_draws(
        BNN(4, 1, likelihood="normal", hidden_dims=[5]), list(zip(means, noises))
    )

    metrics = bnn.evaluate(HeldOut(y), num_samples=2)

    def density(v, mu, sigma):
        return math.exp(-((v - mu) ** 2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))

    per_row = [
        math.log(
            (density(v, means[0][i, 0].item(), 0.5) + density(v, means[1][i, 0].item(), 1.0)) / 2
        )
        for i, v in enumerate(y.tolist())
    ]
    assert metrics["test/log_likelihood"] == pytest.approx(sum(per_row) / 2, rel=1e-6)
    # the RMSE of the predictive mean: (1.0, 1.25) against (0.4, 1.2)
    assert metrics["test/rmse"] == pytest.approx(math.sqrt((0.6**2 + 0.05**2) / 2), rel=1e-6)

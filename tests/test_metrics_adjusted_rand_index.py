"""The adjusted Rand index at its edges: labels it must refuse, partitions that are trivial,
a contingency table whose last cell is empty, and a large N computed exactly by hand.

The GMM scores synthetic mixtures of up to 1e7 points, where the number of pairs
N (N - 1) / 2 is far beyond what a float32 holds exactly.
"""

import math
from collections import Counter
from fractions import Fraction

import pytest
import torch

from zoo.metrics import adjusted_rand_index


def exact_adjusted_rand_index(u: list[int], v: list[int]) -> Fraction:
    """Hubert and Arabie's formula in exact rational arithmetic."""
    index = sum(math.comb(c, 2) for c in Counter(zip(u, v)).values())
    rows = sum(math.comb(c, 2) for c in Counter(u).values())
    columns = sum(math.comb(c, 2) for c in Counter(v).values())
    expected = Fraction(rows * columns, math.comb(len(u), 2))
    maximum = Fraction(rows + columns, 2)
    return (index - expected) / (maximum - expected)


@pytest.mark.parametrize(
    "labels_true, labels_pred",
    [
        (torch.tensor([0, 1, 2]), torch.tensor([0, 1])),  # two lengths
        (torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long)),  # 2-d
    ],
    ids=["lengths", "2-d"],
)
def test_labels_of_other_lengths_or_dimensions_are_refused_naming_their_shapes(
    labels_true, labels_pred
):
    with pytest.raises(ValueError, match="1-d label tensors of one length") as refused:
        adjusted_rand_index(labels_true, labels_pred)
    assert str(tuple(labels_true.shape)) in str(refused.value)
    assert str(tuple(labels_pred.shape)) in str(refused.value)


@pytest.mark.parametrize(
    "labels",
    [torch.zeros(5, dtype=torch.long), torch.arange(5)],
    ids=["one cluster", "all singletons"],
)
def test_two_identical_trivial_partitions_agree_perfectly(labels):
    # the formula is 0 / 0 there; the same partition is agreement 1
    assert adjusted_rand_index(labels, labels.clone()) == 1.0


def test_a_swap_of_two_labels_is_the_same_partition():
    # the contingency table's last cell (label 1 with label 1) is empty
    assert adjusted_rand_index(torch.tensor([0, 0, 1, 1]), torch.tensor([1, 1, 0, 0])) == 1.0
    assert adjusted_rand_index(
        torch.tensor([0, 0, 0, 1, 1, 2]), torch.tensor([2, 2, 2, 0, 0, 1])
    ) == pytest.approx(1.0, abs=1e-15)


def test_a_hundred_thousand_points_match_the_exact_rational_value():
    generator = torch.Generator().manual_seed(3)
    u = torch.randint(4, (100_000,), generator=generator)
    noise = torch.randint(4, (100_000,), generator=generator)
    v = torch.where(torch.rand(100_000, generator=generator) < 0.1, u, noise)
    exact = exact_adjusted_rand_index(u.tolist(), v.tolist())
    assert 0.005 < exact < 0.02  # weakly related labels, where E[index] almost cancels index
    assert adjusted_rand_index(u, v) == pytest.approx(float(exact), rel=1e-12)

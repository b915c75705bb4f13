"""ScaleMixtureNormal honours ``validate_args`` and its batch shape, through ``expand`` too
(mutation testing found these untested: a dropped argument passed every test)."""

import pytest
import torch

from zoo.distributions import ScaleMixtureNormal


def test_the_batch_shape_is_that_of_the_broadcast_parameters():
    d = ScaleMixtureNormal(torch.zeros(3), 1.0, torch.full((2, 1), 0.1), 0.5)
    assert d.batch_shape == (2, 3)
    assert d.sample().shape == (2, 3) and d.sample((4,)).shape == (4, 2, 3)


def test_validate_args_false_is_kept_even_when_validation_is_on_globally():
    # the conftest turns validation on: an explicit False must still win, also after expand
    d = ScaleMixtureNormal(0.0, -1.0, 1.0, 0.5, validate_args=False)
    d.expand((2,))
    with pytest.raises(ValueError, match="scale1"):
        ScaleMixtureNormal(0.0, -1.0, 1.0, 0.5)
    with pytest.raises(ValueError, match="scale1"):
        ScaleMixtureNormal(0.0, -1.0, 1.0, 0.5, validate_args=True)


def test_an_expanded_distribution_validates_its_values_as_the_original_does():
    value = torch.tensor([float("nan"), 0.0])
    checked = ScaleMixtureNormal(0.0, 1.0, 0.1, 0.5, validate_args=True).expand((2,))
    with pytest.raises(ValueError, match="value"):
        checked.log_prob(value)
    unchecked = ScaleMixtureNormal(0.0, 1.0, 0.1, 0.5, validate_args=False).expand((2,))
    assert unchecked.log_prob(value).isnan()[0]

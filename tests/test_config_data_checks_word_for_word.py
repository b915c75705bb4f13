"""zoo.config.check_against_data word for word, on stand-ins for a loaded data set.

The checks need only the data set's name, kind and row counts, so a namespace with empty
tensors stands in for it: no file is read and no model is built.
"""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra import compose, initialize_config_dir

from zoo.__main__ import config_dir
from zoo.config import check_against_data, validate
from zoo.errors import ConfigError


def spec_of(*overrides):
    with initialize_config_dir(config_dir=str(Path(config_dir())), version_base="1.3"):
        return validate(compose(config_name="config", overrides=list(overrides)))


def images(train_rows, test_rows, name="digits"):
    return SimpleNamespace(
        name=name, kind="image", train_x=torch.zeros(train_rows, 4), test_x=torch.zeros(test_rows, 4)
    )


def test_no_test_rows_is_refused_naming_every_option_of_the_data_set():
    spec = spec_of("data=digits")
    with pytest.raises(ConfigError) as error:
        check_against_data(spec, images(200, 0))
    assert str(error.value) == (
        "data=digits has no test rows with data.root = None: the evaluation needs at least "
        "one; hold out a larger part (data.test_fraction, data.folds)."
    )


def test_the_options_are_listed_in_order_and_without_the_name():
    spec = spec_of("data=old_faithful")
    with pytest.raises(ConfigError) as error:
        check_against_data(spec, images(200, 0, name="old_faithful"))
    assert str(error.value).startswith(
        "data=old_faithful has no test rows with data.root = None, data.test_fraction = 0.2, "
        "data.folds = None, data.fold = 0: "
    )


def test_one_test_row_is_enough():
    spec = spec_of("data=digits", "trainer.batch_size=10")
    check_against_data(spec, images(10, 1))  # no error: one row can be evaluated


def test_a_batch_of_every_training_row_is_allowed_and_one_more_is_not():
    check_against_data(spec_of("data=digits", "trainer.batch_size=10"), images(10, 5))
    with pytest.raises(ConfigError) as error:
        check_against_data(spec_of("data=digits", "trainer.batch_size=11"), images(10, 5))
    assert str(error.value) == (
        "trainer.batch_size = 11 is not valid: it exceeds the 10 training rows of "
        "data=digits; it must be an integer from 1 to 10."
    )


def test_the_models_own_data_check_ends_with_a_full_stop():
    spec = spec_of("data=digits", "trainer.batch_size=10")
    tabular = SimpleNamespace(
        name="old_faithful", kind="tabular", train_x=torch.zeros(10, 2), test_x=torch.zeros(5, 2)
    )
    with pytest.raises(ConfigError) as error:
        check_against_data(spec, tabular)
    assert str(error.value) == (
        "model=vae models images (a Bernoulli likelihood of pixel intensities in [0, 1]), and "
        "data=old_faithful is tabular data; use data=digits, fashion_mnist or mnist."
    )

"""Every test starts clean: an empty param store, validation on, fixed seeds."""

import pyro
import pytest


@pytest.fixture(autouse=True)
def clean_pyro():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    with pyro.validation_enabled(True):
        yield
    pyro.clear_param_store()

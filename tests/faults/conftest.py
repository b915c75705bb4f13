"""Fault tests: each fault is caused for real (subprocesses, signals, files) on every model
in ``faultkit.MODELS_UNDER_TEST``, with tiny settings so that the default suite stays fast."""

import pyro
import pytest
from faultkit import MODELS_UNDER_TEST, TINY, compose_config, model_id

from zoo.app import run


@pytest.fixture(scope="session", params=MODELS_UNDER_TEST, ids=model_id)
def model_args(request):
    return list(request.param)


@pytest.fixture(scope="session")
def finished_run(model_args, tmp_path_factory):
    """The folder of a complete in-process run of the tiny config; copy it before changing it."""
    out = tmp_path_factory.mktemp("finished") / "run"
    with pyro.validation_enabled(True):
        run(compose_config([*model_args, *TINY]), out)
    pyro.clear_param_store()
    return out

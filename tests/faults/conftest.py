"""Fault tests: each fault is caused for real (subprocesses, signals, files) on every model
in ``faultkit.MODELS_UNDER_TEST``, with tiny settings so that the default suite stays fast."""

import pytest
from faultkit import MODELS_UNDER_TEST, model_id


@pytest.fixture(scope="module", params=MODELS_UNDER_TEST, ids=model_id)
def model_args(request):
    return list(request.param)

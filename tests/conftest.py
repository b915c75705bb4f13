"""Every test starts clean: an empty param store, validation on, fixed seeds.

Property tests (hypothesis) keep no example database and write their failure patches under
the system's temporary folder (by default both go to ./.hypothesis), and have no per-example
deadline (a first torch call on a busy machine can take a
second); each test sets its own small ``max_examples``. ``ZOO_HYPOTHESIS_PROFILE=derandomized``
draws the same examples on every run (benchmarks/mutation/run.py sets it).
"""

import os
import tempfile

import pyro
import pytest
from hypothesis import settings

os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(), "zoo-hypothesis")
)

settings.register_profile("zoo", database=None, deadline=None, print_blob=True)
# the same examples on every run: for mutation testing, which compares runs
settings.register_profile("derandomized", settings.get_profile("zoo"), derandomize=True)
settings.load_profile(os.environ.get("ZOO_HYPOTHESIS_PROFILE", "zoo"))


@pytest.fixture(autouse=True)
def clean_pyro():
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    with pyro.validation_enabled(True):
        yield
    pyro.clear_param_store()

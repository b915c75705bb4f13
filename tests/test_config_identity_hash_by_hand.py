"""The identity hash of a run, recomputed by hand.

It is stored in every checkpoint and compared on resume, so its text is a file format:
a change to a key, the order of the keys or the length would make every checkpoint written
before it fail to resume, though the same code would still agree with itself.
"""

import hashlib
import json
from pathlib import Path

from hydra import compose, initialize_config_dir

from zoo.__main__ import config_dir
from zoo.config import validate


def spec_of(*overrides):
    with initialize_config_dir(config_dir=str(Path(config_dir())), version_base="1.3"):
        return validate(compose(config_name="config", overrides=list(overrides)))


def test_the_training_values_use_the_config_names_of_the_settings():
    spec = spec_of()
    assert spec.training_values()["optim"]["_target_"] == "zoo.optim.Adam"
    assert "target" not in spec.training_values()["optim"]
    assert spec.values()["optim"]["_target_"] == "zoo.optim.Adam"
    assert spec.values()["optim"]["_convert_"] == "all"


def test_the_hash_is_the_first_12_hex_digits_of_the_sorted_json_with_the_device():
    spec = spec_of()
    values = dict(spec.training_values())
    values["device"] = "cpu"
    text = json.dumps(values, sort_keys=True)  # keys sorted at every depth
    assert text.index('"anneal"') < text.index('"device"') < text.index('"model"')
    expected = hashlib.sha256(text.encode()).hexdigest()[:12]
    assert spec.identity_hash("cpu") == expected
    assert len(expected) == 12

"""zoo.config.validate on a config whose values cannot be resolved: a missing mandatory value
(``???``) or an interpolation with nothing behind it is one paragraph naming the key, never a
value passed on as text or an OmegaConf traceback."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from zoo.__main__ import config_dir
from zoo.config import validate
from zoo.errors import ConfigError

ADVICE = (
    "Give {key} a plain value, or define what it refers to (an interpolation such as "
    "${{oc.env:NAME}} needs that variable set)."
)


def refusal(key, value):
    with initialize_config_dir(config_dir=str(Path(config_dir())), version_base="1.3"):
        cfg = compose(config_name="config")
    section, _, leaf = key.rpartition(".")
    (cfg[section] if section else cfg)[leaf] = value
    with pytest.raises(ConfigError) as error:
        validate(cfg)
    return str(error.value)


def test_a_missing_mandatory_value_is_refused_not_passed_on_as_text():
    assert refusal("seed", "???") == (
        "seed cannot be resolved: Missing mandatory value: seed. " + ADVICE.format(key="seed")
    )


def test_an_interpolation_of_no_key_names_the_full_key_and_the_reason():
    assert refusal("trainer.epochs", "${no.such.key}") == (
        "trainer.epochs cannot be resolved: Interpolation key 'no.such.key' not found. "
        + ADVICE.format(key="trainer.epochs")
    )


def test_an_unset_environment_variable_is_named():
    message = refusal("seed", "${oc.env:ZOO_TEST_VARIABLE_THAT_IS_NEVER_SET}")
    assert message.startswith("seed cannot be resolved: ")
    assert "ZOO_TEST_VARIABLE_THAT_IS_NEVER_SET" in message
    assert message.endswith(ADVICE.format(key="seed"))

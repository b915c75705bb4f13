"""zoo.config.validate on configs given as plain dicts (as compare_runs reads a run folder's
config.yaml): a group missing, a group that is not a mapping, a class name that no component
has, Hydra's own node, and the periodic evaluation's key prefix, word for word."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from zoo.__main__ import config_dir
from zoo.config import validate
from zoo.errors import ConfigError


def plain_config(*overrides):
    with initialize_config_dir(config_dir=str(Path(config_dir())), version_base="1.3"):
        return OmegaConf.to_container(compose(config_name="config", overrides=list(overrides)))


def refusal(values):
    with pytest.raises(ConfigError) as error:
        validate(values)
    return str(error.value)


def test_every_missing_group_is_named_in_one_paragraph():
    values = plain_config()
    del values["trainer"], values["anneal"]
    assert refusal(values) == (
        "the config has no trainer group: it needs one (trainer=...). "
        "the config has no anneal group: it needs one (anneal=...)."
    )


def test_an_unknown_model_lists_the_models_in_order():
    values = plain_config()
    values["model"]["name"] = "vea"
    assert refusal(values) == "model.name = 'vea' is not valid: it must be one of bnn, gmm, vae."


def test_a_group_that_is_not_a_mapping_is_refused_as_having_no_name():
    values = plain_config()
    values["model"] = "vae"  # as if model: vae had been written where model=vae was meant
    assert refusal(values) == "model.name = None is not valid: it must be one of bnn, gmm, vae."


def test_hydras_node_in_a_plain_config_is_hydras_to_check():
    values = plain_config("seed=4")
    values["hydra"] = {"run": {"dir": "anywhere"}}
    assert validate(values).run.seed == 4


def test_a_bad_periodic_evaluation_is_named_under_its_own_key():
    message = refusal(plain_config("model.periodic_evaluation.iw_samples=-1"))
    assert message.startswith("model.periodic_evaluation.iw_samples = -1 is not valid: it must be ")

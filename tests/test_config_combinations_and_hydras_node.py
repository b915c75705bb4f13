"""zoo.config.validate: settings of two groups that cannot go together, word for word, and a
config that still holds Hydra's own node (as a Hydra callback sees it)."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from zoo.__main__ import config_dir
from zoo.config import validate
from zoo.errors import ConfigError


def compose_config(*overrides, hydra_node=False):
    with initialize_config_dir(config_dir=str(Path(config_dir())), version_base="1.3"):
        return compose(
            config_name="config", overrides=list(overrides), return_hydra_config=hydra_node
        )


def test_jit_with_a_schedule_is_refused_word_for_word():
    with pytest.raises(ConfigError) as error:
        validate(compose_config("trainer.elbo=jit", "anneal=linear", "anneal.warmup_epochs=2"))
    assert str(error.value) == (
        "trainer.elbo = 'jit' is not valid with anneal=linear: JitTrace_ELBO compiles beta "
        "into its graph at the first step, so a schedule would be frozen at its first value. "
        "Use trainer.elbo=trace or meanfield with annealing, or anneal=none with jit."
    )


@pytest.mark.parametrize("anneal", ["none", "tempered"])  # tempered: a constant beta
def test_jit_without_a_schedule_is_valid(anneal):
    assert validate(compose_config("trainer.elbo=jit", f"anneal={anneal}")).trainer.elbo == "jit"


def test_a_models_own_trainer_check_is_one_sentence_with_its_full_stop():
    with pytest.raises(ConfigError) as error:
        validate(compose_config("model=gmm", "model.form=enumerated", "trainer.elbo=trace"))
    assert str(error.value) == (
        "model.form = 'enumerated' is not valid with trainer.elbo = 'trace': explicit "
        "assignments must be summed out by trainer.elbo=traceenum; or use model.form=mixture, "
        "which trains under any ELBO."
    )


def test_hydras_own_node_is_left_out_though_it_cannot_be_resolved_here():
    cfg = compose_config("seed=5", hydra_node=True)
    with pytest.raises(Exception):  # noqa: B017 - the premise: Hydra's node alone fails
        OmegaConf.to_container(cfg.hydra, resolve=True, throw_on_missing=True)
    assert validate(cfg).run.seed == 5

"""The valid keys ``python -m zoo`` names after Hydra refuses an unknown one."""

import pytest

from zoo.__main__ import config_dir
from zoo.hints import unknown_key_hints


def hints(*overrides):
    return unknown_key_hints(list(overrides), config_dir())


def test_a_misspelt_key_gets_its_closest_match_and_its_siblings():
    (hint,) = hints("trainer.epoch=3")
    assert hint.startswith("unknown key 'trainer.epoch' (did you mean 'trainer.epochs'?)")
    assert "batch_size" in hint and "validate" in hint


def test_the_siblings_follow_the_chosen_model_and_the_experiment():
    (gmm,) = hints("model=gmm", "model.latent_dim=3")
    assert "components" in gmm and "latent_dim" not in gmm.split("are:")[1]
    (vae,) = hints("experiment=vae_fashion_mnist", "seed=0,1", "model.latnt_dim=3")
    assert "(did you mean 'model.latent_dim'?)" in vae


def test_a_missing_parent_is_named_at_the_level_where_the_path_breaks():
    (hint,) = hints("modle.latent_dim=3")
    assert "(did you mean 'model'?)" in hint and "the top-level keys are:" in hint


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.latent_dim=3", "seed=0,1,2", "trainer.epochs=2"],  # every key exists
        ["model=vea", "model.latnt_dim=3"],  # a bad group: Hydra lists the options itself
        ["+model.extra=1", "~seed", "hydra.run.dir=x"],  # adds, deletes and Hydra's own keys
        ["model.latent_dim=[1,"],  # malformed: Hydra's parse error says what is wrong
    ],
)
def test_nothing_is_added_where_hydra_has_said_it_all(overrides):
    assert hints(*overrides) == []

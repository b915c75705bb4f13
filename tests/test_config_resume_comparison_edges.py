"""zoo.config.compare_runs and check_resume at their edges: another optimizer, a folder with
no usable config.yaml, a saved config that no longer validates or cannot be resolved, and
the refusal word for word. Nothing is trained: the folder holds only a config.yaml."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from zoo.__main__ import config_dir
from zoo.config import SAVED_CONFIG_NAME, RunComparison, check_resume, compare_runs
from zoo.errors import ConfigError


def compose_config(*overrides):
    with initialize_config_dir(config_dir=str(Path(config_dir())), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def saved(*overrides):
    """A config as a run folder's config.yaml holds it: resolved plain values."""
    return OmegaConf.to_container(compose_config(*overrides), resolve=True)


def test_another_optimizer_blocks_by_its_target_alone_under_its_config_name():
    comparison = compare_runs(saved(), compose_config("optim=clipped_adam"))
    # "_target_" as a config writes it (the settings' alias), not the field's name "target";
    # the two optimizers' own settings are not listed one by one
    assert comparison.blocking == {"optim._target_": ("zoo.optim.Adam", "pyro.optim.ClippedAdam")}


def test_a_saved_config_that_no_longer_validates_is_compared_key_by_key(tmp_path):
    old = saved("trainer.epochs=3", "seed=7")
    old["trainer"]["gone"] = 1  # a setting of an older zoo: the config no longer validates
    del old["trainer"]["progress"]  # a display setting that zoo did not have
    comparison = compare_runs(old, compose_config())
    assert comparison.blocking["trainer.epochs"] == (3, 200)
    assert comparison.blocking["seed"] == (7, 0)  # a top-level key, by its bare name
    assert comparison.blocking["trainer.gone"] == (1, None)  # a key only the old config has
    assert comparison.allowed["trainer.progress"] == (None, True)  # one only the new has


def test_a_folder_without_a_config_leaves_the_checkpoint_to_decide(tmp_path):
    assert check_resume(compose_config("resume=true"), tmp_path) == RunComparison({}, {})


def test_a_config_file_that_is_not_a_mapping_leaves_the_checkpoint_to_decide(tmp_path):
    (tmp_path / SAVED_CONFIG_NAME).write_text("- just\n- a list\n")
    assert check_resume(compose_config("resume=true"), tmp_path) == RunComparison({}, {})


def write_saved(folder, values):
    OmegaConf.save(OmegaConf.create(values), folder / SAVED_CONFIG_NAME)


def test_the_saved_config_is_read_as_written_and_never_resolved_again(tmp_path):
    # resolving it now would fail (no such key) and skip the comparison: the literal text is
    # not the seed the run was made with, so the resume is refused
    old = saved()
    old["seed"] = "${no_such_key}"
    write_saved(tmp_path, old)
    with pytest.raises(ConfigError, match=r"seed: '\$\{no_such_key\}' -> 0"):
        check_resume(compose_config("resume=true"), tmp_path)


def test_a_resume_that_changes_the_training_is_refused_word_for_word(tmp_path):
    write_saved(tmp_path, saved())
    with pytest.raises(ConfigError) as error:
        check_resume(compose_config("resume=true", "seed=2", "trainer.epochs=7"), tmp_path)
    assert str(error.value) == (
        f"resume = true is not valid here: the run in {tmp_path} was made with other settings "
        "that change the trained parameters (seed: 0 -> 2; trainer.epochs: 200 -> 7). Resume "
        "with the settings it was made with (its config.yaml), or start a fresh run in another "
        "folder (hydra.run.dir=...). Evaluation, figure and display settings may change on "
        "resume."
    )


def test_a_resume_that_changes_only_display_settings_returns_them(tmp_path):
    write_saved(tmp_path, saved())
    comparison = check_resume(compose_config("resume=true", "trainer.progress=false"), tmp_path)
    assert comparison == RunComparison({}, {"trainer.progress": (True, False)})

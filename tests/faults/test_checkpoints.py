"""Checkpoints: rotation, a damaged latest one replaced by the previous with a warning (or a
refusal naming both files), another run's checkpoint refused, no arbitrary unpickling."""

import logging
import shutil

import pytest
import torch
from faultkit import MODELS_UNDER_TEST, TINY, compose_config, numbers

from zoo.app import run
from zoo.checkpoint import (
    load_checkpoint,
    load_latest_checkpoint,
    previous_path,
    remove_stale_temps,
    save_checkpoint,
)
from zoo.errors import CheckpointError, ConfigError


def test_each_save_keeps_the_one_before(tmp_path):
    path = tmp_path / "checkpoint.pt"
    for epoch in (1, 2, 3):
        save_checkpoint({"epoch": epoch, "w": torch.full((3,), float(epoch))}, path)
    assert load_checkpoint(path)["epoch"] == 3
    assert previous_path(path).name == "checkpoint.prev.pt"
    assert load_checkpoint(previous_path(path))["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.prev.pt", "checkpoint.pt"]


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "missing"])
def test_a_damaged_latest_checkpoint_gives_way_to_the_previous_with_a_warning(
    tmp_path, caplog, damage
):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"epoch": 1}, path)
    save_checkpoint({"epoch": 2, "w": torch.zeros(1000)}, path)
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:500])
    elif damage == "garbage":
        path.write_bytes(b"not a checkpoint" * 100)
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.unlink()
    with caplog.at_level(logging.WARNING, logger="zoo.checkpoint"):
        state, source = load_latest_checkpoint(path)
    assert (state["epoch"], source) == (1, previous_path(path))
    assert str(path) in caplog.text and str(previous_path(path)) in caplog.text


def test_both_checkpoints_damaged_is_refused_naming_both(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"epoch": 1}, path)
    save_checkpoint({"epoch": 2}, path)
    for p in (path, previous_path(path)):
        p.write_bytes(p.read_bytes()[:100])
    with pytest.raises(CheckpointError) as error:
        load_latest_checkpoint(path)
    assert str(path) in str(error.value) and str(previous_path(path)) in str(error.value)
    assert "without resume=true" in str(error.value)


class Payload:
    """Unpickling this would create a file: weights_only loading must never do it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_loading_never_unpickles_arbitrary_objects(tmp_path):
    marker = tmp_path / "unpickled"
    torch.save({"format": 1, "epoch": 1, "evil": Payload(str(marker))}, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match=str(tmp_path / "c.pt")):
        load_checkpoint(tmp_path / "c.pt")
    assert not marker.exists()


def test_temporary_files_of_a_killed_save_are_removed(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"epoch": 1}, path)
    stale = [tmp_path / ".checkpoint.999.tmp.pt", tmp_path / ".checkpoint.prev.999.tmp.pt"]
    for p in stale:
        p.write_bytes(b"half")
    assert sorted(remove_stale_temps(path)) == sorted(stale)
    # the folder's lock file stays: it is how a live writer is told from a dead one
    assert sorted(p.name for p in tmp_path.iterdir()) == [".zoo.lock", "checkpoint.pt"]


def test_resume_from_a_truncated_checkpoint_uses_the_previous_and_ends_identical(
    model_args, finished_run, tmp_path, caplog
):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    latest = run_dir / "checkpoint.pt"
    latest.write_bytes(latest.read_bytes()[:1000])
    with caplog.at_level(logging.WARNING):
        run(compose_config([*model_args, *TINY, "resume=true"]), run_dir)
    assert f"checkpoint {latest} cannot be read" in caplog.text
    assert "resuming from the previous checkpoint" in caplog.text
    assert numbers(run_dir) == numbers(finished_run)  # the last epoch was trained again


def test_a_checkpoint_of_another_model_or_config_is_refused(model_args, finished_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    others = [m for m in MODELS_UNDER_TEST if m != model_args] or [[*model_args, "seed=1"]]
    for other in others:
        # refused from the folder's config.yaml, before any data is read
        with pytest.raises(ConfigError, match="change the trained parameters") as error:
            run(compose_config([*other, *TINY, "resume=true"]), run_dir)
        changed = "model.name" if other[0] != model_args[0] else "seed: 0 -> 1"
        assert changed in str(error.value) and "model.latent_dim" not in str(error.value)
    # and without a config.yaml, the checkpoint's identity refuses it
    (run_dir / "config.yaml").unlink()
    with pytest.raises(CheckpointError, match="belongs to another run") as error:
        run(compose_config([*others[0], *TINY, "resume=true"]), run_dir)
    assert str(run_dir / "checkpoint.pt") in str(error.value)
    assert numbers(run_dir) == numbers(finished_run)  # and nothing was touched

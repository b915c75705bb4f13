"""What the checkpoint functions hand on and say: the previous file given to ``use`` under its
own name, the exact warning and refusals, a save that fails before its temporary file exists,
and the test hook that pauses a save between its write and its rename (the kill tests rely on
it)."""

import logging
import os
import threading
import time

import pytest
import torch

from zoo.checkpoint import (
    PAUSE_ENV,
    UnusableCheckpoint,
    load_checkpoint,
    load_latest_checkpoint,
    previous_path,
    save_checkpoint,
)
from zoo.errors import CheckpointError
from zoo.files import temp_path


@pytest.fixture
def two_checkpoints(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"epoch": 1}, path)
    save_checkpoint({"epoch": 2}, path)
    return path


def test_the_previous_checkpoint_is_used_under_its_own_name_with_a_warning(two_checkpoints, caplog):
    path, calls = two_checkpoints, []

    def use(state, source):
        calls.append((state["epoch"], source))
        if state["epoch"] == 2:
            raise UnusableCheckpoint(f"checkpoint {source} does not fit this run")

    with caplog.at_level(logging.WARNING, logger="zoo.checkpoint"):
        state, source = load_latest_checkpoint(path, use)
    prev = previous_path(path)
    assert (state["epoch"], source) == (1, prev)
    assert calls == [(2, path), (1, prev)]  # the trainer's messages name the file it was given
    assert caplog.messages == [
        f"checkpoint {path} does not fit this run; resuming from the previous checkpoint "
        f"{prev} instead"
    ]


def test_neither_checkpoint_usable_is_one_refusal_that_says_what_to_do(two_checkpoints):
    path = two_checkpoints

    def use(state, source):
        raise UnusableCheckpoint(f"{source} is of epoch {state['epoch']}")

    with pytest.raises(CheckpointError) as refused:
        load_latest_checkpoint(path, use)
    assert str(refused.value) == (
        f"{path} is of epoch 2; the previous checkpoint cannot be used either: "
        f"{previous_path(path)} is of epoch 1. Start the run again without resume=true."
    )


def test_a_save_into_a_missing_folder_is_a_checkpoint_error_naming_the_file(tmp_path):
    # the temporary file is never created: removing it must not raise FileNotFoundError instead
    path = tmp_path / "gone" / "checkpoint.pt"
    with pytest.raises(CheckpointError) as refused:
        save_checkpoint({"epoch": 1}, path)
    assert str(refused.value) == (
        f"could not write checkpoint {path}: No such file or directory. The previous "
        "checkpoint, if any, is kept; free some space or choose another output folder, "
        "then resume."
    )
    assert isinstance(refused.value.__cause__, FileNotFoundError)


def test_the_pause_hook_holds_a_save_between_its_write_and_its_rename(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"epoch": 1}, path)
    monkeypatch.setenv(PAUSE_ENV, "0.5")
    errors = []

    def save():
        try:
            save_checkpoint({"epoch": 2, "w": torch.zeros(10)}, path)
        except Exception as e:  # a thread cannot raise into the test: kept for its asserts
            errors.append(e)

    saver = threading.Thread(target=save)
    start = time.monotonic()
    saver.start()
    tmp = temp_path(path)  # this process's temporary name
    while not tmp.exists() and saver.is_alive():
        time.sleep(0.01)
    assert tmp.exists(), errors  # written, not yet renamed
    assert load_checkpoint(path)["epoch"] == 1
    saver.join(timeout=10)
    assert not errors, errors
    assert time.monotonic() - start >= 0.5
    assert load_checkpoint(path)["epoch"] == 2 and not tmp.exists()
    assert os.path.exists(previous_path(path))

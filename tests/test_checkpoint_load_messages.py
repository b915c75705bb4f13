"""What ``load_checkpoint`` says about a file it will not trust: another format version (and
the one the file says), a missing digest (a warning: an older zoo wrote it), a digest that does
not match. The resume messages quote these sentences, so each is checked word for word."""

import logging

import pytest
import torch

from zoo.checkpoint import (
    DIGEST_KEY,
    FORMAT_VERSION,
    UnusableCheckpoint,
    load_checkpoint,
    save_checkpoint,
)


def test_another_format_is_refused_naming_the_file_and_both_versions(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": FORMAT_VERSION + 6, "epoch": 1}, path)
    with pytest.raises(UnusableCheckpoint) as refused:
        load_checkpoint(path)
    assert str(refused.value) == (
        f"{path} is not a zoo checkpoint of format {FORMAT_VERSION} "
        f"(it says {FORMAT_VERSION + 6!r})"
    )


def test_a_checkpoint_without_a_digest_warns_that_it_is_used_unverified(tmp_path, caplog):
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": FORMAT_VERSION, "epoch": 3}, path)
    with caplog.at_level(logging.WARNING, logger="zoo.checkpoint"):
        state = load_checkpoint(path)
    assert state == {"format": FORMAT_VERSION, "epoch": 3}
    assert caplog.messages == [
        f"checkpoint {path} has no digest (written by an older zoo): it is used unverified"
    ]


def test_a_digest_that_does_not_match_is_refused_as_corrupted(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"epoch": 2}, path)
    state = torch.load(path, weights_only=True)
    state["epoch"] = 5  # the digest stored with it is still that of epoch 2
    assert DIGEST_KEY in state
    torch.save(state, path)
    with pytest.raises(UnusableCheckpoint) as refused:
        load_checkpoint(path)
    assert str(refused.value) == (
        f"checkpoint {path} is corrupted: its content does not match the SHA-256 digest "
        "stored with it (a bit changed on disk or in a copy)"
    )

"""Checkpoints: written atomically, the previous one kept, read without unpickling objects.

A checkpoint is a dict of tensors and plain Python values, saved with ``torch.save`` to a
temporary file in the same folder and flushed to disk. Then the current ``checkpoint.pt``
is hard-linked as ``checkpoint.prev.pt`` and the temporary file renamed over
``checkpoint.pt``. A kill at any moment leaves ``checkpoint.pt`` whole (old or new), and a
latest checkpoint that is nevertheless unreadable (a disk that lied, a bad copy) is
replaced on load by the previous one, with a warning that names both files. Loading uses
``torch.load(weights_only=True)``: no arbitrary objects are unpickled.

``ZOO_TEST_CHECKPOINT_PAUSE_S`` (a test hook, seconds) makes every save sleep between
writing the temporary file and renaming it, so that a test can kill a run mid-write.
"""

from __future__ import annotations

import io
import logging
import os
import time
from pathlib import Path

import torch

from zoo.errors import CheckpointError
from zoo.files import fsync_dir, read_plain_state, temp_path

FORMAT_VERSION = 1
PAUSE_ENV = "ZOO_TEST_CHECKPOINT_PAUSE_S"
log = logging.getLogger(__name__)


def previous_path(path: str | os.PathLike) -> Path:
    """Where the checkpoint before ``path`` is kept: ``checkpoint.pt`` -> ``checkpoint.prev.pt``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    """Writes ``state`` to ``path`` atomically and keeps the file it replaces as
    :func:`previous_path`; on failure both files are untouched."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        # serialized in memory first: torch's writer turns a full disk into a RuntimeError
        # with no errno, a plain write gives the OSError that says what happened
        buffer = io.BytesIO()
        torch.save({"format": FORMAT_VERSION, **state}, buffer)
        with open(tmp, "wb") as f:
            f.write(buffer.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        if pause := float(os.environ.get(PAUSE_ENV, 0)):
            time.sleep(pause)
        if path.exists():
            # a link, not a copy: no extra space, and checkpoint.pt never goes missing
            prev_tmp = temp_path(previous_path(path))
            prev_tmp.unlink(missing_ok=True)
            os.link(path, prev_tmp)
            os.replace(prev_tmp, previous_path(path))
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(
            f"could not write checkpoint {path}: {e.strerror or e}. The previous checkpoint, "
            "if any, is kept; free some space or choose another output folder, then resume."
        ) from e
    fsync_dir(path.parent)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Reads a checkpoint written by :func:`save_checkpoint`.

    :raises CheckpointError: naming the file, if it is missing, truncated, corrupted, holds
        objects other than tensors and plain values, or has another format version.
    """
    path = Path(path)
    state = read_plain_state(path, CheckpointError, "checkpoint")
    if state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is not a zoo checkpoint of format {FORMAT_VERSION}")
    return state


def load_latest_checkpoint(path: str | os.PathLike) -> tuple[dict, Path]:
    """Reads ``path``, or, if it is unreadable or missing, the previous checkpoint beside it
    with a warning naming the file that failed.

    :returns: the state and the file it came from.
    :raises CheckpointError: naming both files if neither can be read.
    """
    path = Path(path)
    try:
        return load_checkpoint(path), path
    except CheckpointError as latest:
        prev = previous_path(path)
        if not prev.is_file():
            raise
        try:
            state = load_checkpoint(prev)
        except CheckpointError as e:
            raise CheckpointError(
                f"{latest}; the previous checkpoint cannot be used either: {e}. "
                "Start the run again without resume=true."
            ) from e
        log.warning("%s; resuming from the previous checkpoint %s instead", latest, prev)
        return state, prev


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Deletes temporary files that a killed save of ``path`` left beside it."""
    path = Path(path)
    stale = []
    for target in (path, previous_path(path)):
        for tmp in path.parent.glob(f".{target.stem}.*.tmp{target.suffix}"):
            tmp.unlink(missing_ok=True)
            stale.append(tmp)
    return stale

"""Checkpoints: written atomically, the previous one kept, verified and read without
unpickling objects.

A checkpoint is a dict of tensors and plain Python values, saved with ``torch.save`` to a
temporary file in the same folder and flushed to disk. Then the current ``checkpoint.pt``
is hard-linked as ``checkpoint.prev.pt`` and the temporary file renamed over
``checkpoint.pt``. A kill at any moment leaves ``checkpoint.pt`` whole (old or new), and a
latest checkpoint that is nevertheless unusable (a disk that lied, a bad copy, flipped bits)
is replaced on load by the previous one, with a warning that names both files. Loading uses
``torch.load(weights_only=True)``: no arbitrary objects are unpickled.

Each checkpoint carries a SHA-256 digest (key ``sha256``) of its content: every key, every
plain value and every tensor's dtype, shape and bytes, in order (:func:`state_digest`). It is
taken over the content rather than over the serialized file because torch's zip writer does
not promise the same bytes for the same state, so the digest could not be checked by
serializing again; the content is what the trainer uses, so a flipped bit anywhere that
matters (a weight, an RNG state, a shape, a key) fails the check, and one in the zip's
structure fails the read. A checkpoint written before digests existed (the same format,
without the key) is still read, with a warning that it cannot be verified.

``ZOO_TEST_CHECKPOINT_PAUSE_S`` (a test hook, seconds) makes every save sleep between
writing the temporary file and renaming it, so that a test can kill a run mid-write.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from zoo.errors import CheckpointError
from zoo.files import fsync_dir, read_plain_state, temp_path
from zoo.rundir import held_if_free

FORMAT_VERSION = 1
DIGEST_KEY = "sha256"
PAUSE_ENV = "ZOO_TEST_CHECKPOINT_PAUSE_S"
log = logging.getLogger(__name__)


class UnusableCheckpoint(CheckpointError):
    """A checkpoint file that cannot be read or does not fit the run: damaged, not a zoo
    checkpoint, or of another shape. :func:`load_latest_checkpoint` then tries the previous
    one; a checkpoint that is whole but belongs to another run is a plain CheckpointError."""


def state_digest(state: Mapping) -> str:
    """The SHA-256 (hex) of a checkpoint's content: each key and plain value by its type and
    ``repr``, each tensor by its dtype, shape and bytes, walked in order; the ``sha256`` key
    itself is left out.

    Example::

        >>> state_digest({"w": torch.zeros(2)}) == state_digest({"w": torch.zeros(2)})
        True
        >>> state_digest({"w": torch.zeros(2)}) == state_digest({"w": torch.ones(2)})
        False
    """
    digest = hashlib.sha256()
    _feed(digest, {k: v for k, v in state.items() if k != DIGEST_KEY})
    return digest.hexdigest()


def _feed(digest, value: Any) -> None:
    """Adds ``value`` to ``digest``; every part is tagged and length-prefixed, so that two
    different states never feed the same bytes."""

    def part(tag: str, payload: bytes | memoryview) -> None:
        digest.update(f"{tag}:{len(payload)}:".encode())
        digest.update(payload)

    if isinstance(value, torch.Tensor):
        flat = value.detach().to("cpu").reshape(-1)
        # a fresh tensor: a view (an expanded one has stride 0) cannot be seen as bytes
        flat = flat.new_empty(flat.shape).copy_(flat)
        part("tensor", f"{value.dtype}{tuple(value.shape)}".encode())
        part("bytes", memoryview(flat.view(torch.uint8).numpy()))
    elif isinstance(value, Mapping):
        part("map", str(len(value)).encode())
        for key, item in value.items():
            _feed(digest, key)
            _feed(digest, item)
    elif isinstance(value, (list, tuple)):  # torch.Size is a tuple
        part("seq", str(len(value)).encode())
        for item in value:
            _feed(digest, item)
    else:  # int, float (repr is exact), str, bool, None, torch.dtype, ...
        part(type(value).__name__, repr(value).encode())


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
        state = {"format": FORMAT_VERSION, **state}
        state[DIGEST_KEY] = state_digest(state)
        buffer = io.BytesIO()
        torch.save(state, buffer)
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
    """Reads a checkpoint written by :func:`save_checkpoint` and checks its digest.

    :returns: the state, without its ``sha256`` key.
    :raises UnusableCheckpoint: naming the file, if it is missing, truncated, corrupted (its
        digest does not match), holds objects other than tensors and plain values, or has
        another format version.
    """
    path = Path(path)
    state = read_plain_state(path, UnusableCheckpoint, "checkpoint")
    if state.get("format") != FORMAT_VERSION:
        raise UnusableCheckpoint(
            f"{path} is not a zoo checkpoint of format {FORMAT_VERSION} (it says "
            f"{state.get('format')!r})"
        )
    stored = state.pop(DIGEST_KEY, None)
    if stored is None:
        log.warning(
            "checkpoint %s has no digest (written by an older zoo): it is used unverified", path
        )
    elif stored != state_digest(state):
        raise UnusableCheckpoint(
            f"checkpoint {path} is corrupted: its content does not match the SHA-256 digest "
            "stored with it (a bit changed on disk or in a copy)"
        )
    return state


def load_latest_checkpoint(
    path: str | os.PathLike, use: Callable[[dict, Path], None] | None = None
) -> tuple[dict, Path]:
    """Reads ``path`` and hands it to ``use``; if the file is missing or unusable (it cannot
    be read, fails its digest, or ``use`` raises :class:`UnusableCheckpoint`), the previous
    checkpoint beside it is read and used instead, with a warning naming the file that failed.

    :param use: called with the state and its file; raises :class:`UnusableCheckpoint` when
        the state does not fit (missing keys, shapes of another model). A plain
        :class:`~zoo.errors.CheckpointError` (another run's checkpoint) is not retried.
    :returns: the state and the file it came from.
    :raises CheckpointError: naming both files if neither can be used.
    """
    path = Path(path)
    use = use or (lambda state, source: None)
    try:
        state = load_checkpoint(path)
        use(state, path)
        return state, path
    except UnusableCheckpoint as latest:
        prev = previous_path(path)
        if not prev.exists():
            raise
        try:
            state = load_checkpoint(prev)
            use(state, prev)
        except CheckpointError as e:
            raise CheckpointError(
                f"{latest}; the previous checkpoint cannot be used either: {e}. "
                "Start the run again without resume=true."
            ) from e
        log.warning("%s; resuming from the previous checkpoint %s instead", latest, prev)
        return state, prev


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Deletes temporary files that a killed save of ``path`` left beside it, only while this
    process holds the run folder (:mod:`zoo.rundir`): one written by a live run in the same
    folder is that run's save in progress, and is left alone.

    :returns: the files deleted.
    """
    path = Path(path)
    stale = []
    with held_if_free(path.parent) as ours:
        if not ours:
            return stale
        for target in (path, previous_path(path)):
            for tmp in path.parent.glob(f".{target.stem}.*.tmp{target.suffix}"):
                tmp.unlink(missing_ok=True)
                stale.append(tmp)
    return stale

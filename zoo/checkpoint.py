"""Checkpoints: written atomically, read without unpickling arbitrary objects.

A checkpoint is a dict of tensors and plain Python values, saved with ``torch.save`` to a
temporary file in the same folder, flushed to disk, then renamed over the old one, so a
crash at any point leaves either the old or the new checkpoint, never a torn one. Loading
uses ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from zoo.errors import CheckpointError

FORMAT_VERSION = 1


def save_checkpoint(state: dict, path: str | os.PathLike) -> Path:
    """Writes ``state`` to ``path`` atomically; on failure the previous file is untouched."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save({"format": FORMAT_VERSION, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(
            f"could not write checkpoint {path}: {e.strerror or e}. The previous checkpoint, if any, is kept."
        ) from e
    return path


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Reads a checkpoint written by :func:`save_checkpoint`.

    :raises CheckpointError: naming the file, if it is missing, truncated, corrupted, holds
        objects other than tensors and plain values, or has another format version.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise CheckpointError(
            f"checkpoint {path} cannot be read (truncated or corrupted?): {e}"
        ) from e
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is not a zoo checkpoint of format {FORMAT_VERSION}")
    return state

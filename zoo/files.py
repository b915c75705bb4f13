"""Writing a run's files so that a crash or a full disk never leaves a torn one.

Every result file (``summary.json``, ``metrics.jsonl``, ``config.yaml``, figures) is written
to a temporary file in the same folder, flushed to disk, then renamed over the old one: a
reader sees the old file or the new one, never half of one. When the write fails (disk
full, read-only folder) the temporary file is removed, the old file is left as it was, and
an :class:`~zoo.errors.OutputError` names the file.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

from zoo.errors import OutputError


def temp_path(path: Path) -> Path:
    """A hidden sibling of ``path``, unique to this process; the suffix is kept so that
    writers that infer a format from the name (matplotlib) still do."""
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def fsync_dir(folder: Path) -> None:
    """Makes a rename in ``folder`` durable; a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], None], what: str) -> Path:
    """Calls ``write(f)`` on a temporary file, then renames it onto ``path``.

    :param what: what the file is, for the error message (``"summary"``, ``"checkpoint"``).
    :raises OutputError: naming ``path`` if it cannot be written; the old file is kept.
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        kept = "the previous file is kept" if path.exists() else "there is no previous file"
        raise OutputError(
            f"could not write the {what} {path}: {e.strerror or e}; {kept}. "
            "Free some space or choose another output folder (hydra.run.dir=...)."
        ) from e
    fsync_dir(path.parent)
    return path


def write_text_atomic(path: str | os.PathLike, text: str, what: str) -> Path:
    """:func:`write_atomic` for text (UTF-8)."""
    return write_atomic(path, lambda f: f.write(text.encode()), what)


def strict_json(value: Any, **options: Any) -> str:
    """``json.dumps(value)`` with every NaN or infinite float written as ``null``.

    Python's ``json`` writes them as bare ``NaN`` and ``Infinity``, which are not JSON: strict
    readers (``jq``, JavaScript, pandas with ``engine="pyarrow"``) refuse the whole file.

    :param options: passed on to ``json.dumps`` (``indent=2``, ...).

    Example::

        >>> strict_json({"train/loss": float("nan"), "beta": 1.0})
        '{"train/loss": null, "beta": 1.0}'
    """
    return json.dumps(_finite_or_none(value), allow_nan=False, **options)


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


# torch's refusal of an object ends with advice to load the file with weights_only=False,
# which would run the object's code: the zoo names the object and keeps the advice out
_FORBIDDEN_GLOBAL = re.compile(
    r"GLOBAL (\S+) was not an allowed global|whose module (\S+) is blocked"
)


def _first_sentence(error: Exception) -> str:
    """torch's own reason, without its paragraphs of advice."""
    text = " ".join(str(error).split())
    return text.split(". ")[0].rstrip(".")


def read_plain_state(path: str | os.PathLike, error: type[Exception], kind: str) -> dict:
    """A dict written by ``torch.save``, read with ``weights_only=True``: tensors and plain
    values only, no object is ever unpickled.

    :param error: the exception type to raise, naming the file.
    :param kind: what the file should be, for the message (``"checkpoint"``).
    :raises error: if the file is missing, cannot be read, is truncated or corrupted, holds an
        object other than tensors and plain values, or holds something else than a dict.
    """
    path = Path(path)
    if not path.exists():
        raise error(f"no {kind} at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as e:  # a folder where the file should be, a file we may not read
        raise error(f"{kind} {path} cannot be read: {e.strerror or e}") from e
    except pickle.UnpicklingError as e:
        forbidden = _FORBIDDEN_GLOBAL.search(str(e))
        if forbidden is None:  # pickle data the safe unpickler does not know, or garbage
            raise error(
                f"{kind} {path} cannot be read: it was not written by the zoo, or it is "
                "corrupted (not the pickle data of tensors and plain values)"
            ) from None
        raise error(
            f"{kind} {path} holds a Python object ({forbidden[1] or forbidden[2]}), not only "
            "tensors and plain values; the zoo never loads objects from a file, since loading "
            f"one can run any code. It was not written by the zoo: use the {kind} of this run, "
            "or start without it"
        ) from None
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise error(
            f"{kind} {path} cannot be read (truncated or corrupted): {_first_sentence(e)}"
        ) from e
    if not isinstance(state, dict):
        raise error(f"{path} is not a zoo {kind}")
    return state

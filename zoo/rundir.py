"""The run folder: checked before Hydra creates it, and owned by one process at a time.

:func:`own_run_folder` makes a folder a run's own for as long as the run lasts (training,
final evaluation, figures, summary):

- a fresh run (``resume=false``) refuses a folder that holds a run's files (:data:`RUN_FILES`
  or a temporary file of one being written), naming the three ways out: ``resume=true``,
  another folder, or ``overwrite=true``, which deletes those files, and only those, first;
- ``resume=true`` refuses a folder without a checkpoint before any data is loaded;
- a second process refuses a folder in use at once, naming the PID and host of the holder;
- temporary files are deleted only while this process holds the folder, when their writer is
  known to be dead: a resume beside a live run cannot delete the live run's checkpoint write.

The lock is an OS lock (``flock`` on :data:`LOCK_NAME` in the folder), taken through the
``filelock`` package rather than by hand with ``fcntl``: the kernel releases it when its
process dies, however it dies, so a ``kill -9`` cannot leave a folder locked the way a PID
file can; filelock also covers Windows and file systems without ``flock``. The holder's PID
and host are written beside it, in :data:`OWNER_NAME`, for the message only.

``python -m zoo``: Hydra creates the run folder and writes ``.hydra/`` into it before the task
starts, so :class:`OutputDirCheck` (a Hydra callback registered in ``conf/config.yaml``) takes
the folder in ``on_run_start``, before Hydra touches it: a refused run leaves the other run's
folder, ``.hydra/`` included, as it was. :func:`zoo.app.run` enters :func:`own_run_folder`
again; in one process the hold is re-entrant, so the callback and the run share it. In a
sweep (``-m``) a job's folder is known only once Hydra has created it and written its
``.hydra/`` (``on_job_start`` comes after that), so a job takes its folder in ``run``: the
same guarantees, except that a refused job's ``.hydra/`` has been rewritten by Hydra.
"""

from __future__ import annotations

import atexit
import errno
import json
import os
import re
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from zoo.errors import ConfigError, OutputError, ZooError

# what a run writes into its folder (zoo.app, zoo.train, zoo.checkpoint); figures go in FIGURES
RUN_FILES = ("checkpoint.pt", "checkpoint.prev.pt", "summary.json", "metrics.jsonl", "config.yaml")
CHECKPOINTS = ("checkpoint.pt", "checkpoint.prev.pt")
FIGURES = "figures"
LOCK_NAME = ".zoo.lock"
OWNER_NAME = ".zoo.owner"  # the holder's PID and host, for the message; the lock is the flock
# a file being written atomically: zoo.files.temp_path names it .{stem}.{pid}.tmp{suffix}
TEMP = re.compile(r"\.(?P<stem>.+)\.\d+\.tmp(?P<suffix>\.[^.]+)?")
NAME_MAX = 255  # bytes in one path component on the common file systems


class RunFolderError(ZooError):
    """A run folder holds another run's files, or another process is using it."""


# ---- the folder's path ---------------------------------------------------------------------


def _nearest_existing_folder(path: Path) -> Path:
    """The deepest existing ancestor of ``path`` (or ``path`` itself), walking down from the
    root so that a symbolic link loop or a dangling link is named where it is.

    :raises ValueError: saying what is in the way.
    """
    current = Path(path.anchor)
    for part in path.parts[1:]:
        step = current / part
        try:
            mode = os.stat(step).st_mode
        except FileNotFoundError:
            if os.path.islink(step):
                raise ValueError(
                    f"{step} is a symbolic link to {os.readlink(step)}, which does not exist"
                ) from None
            return current
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise ValueError(f"{step} is a symbolic link that loops") from None
            raise ValueError(f"{step} cannot be reached ({e.strerror or e})") from None
        if not stat.S_ISDIR(mode):
            raise ValueError(f"{step} is a file, not a folder")
        current = step
    return current


def output_dir_problem(folder: str | os.PathLike) -> str | None:
    """Why ``folder`` cannot be created and written, or None if it can. Nothing is created:
    a probe folder is made and removed in the nearest existing ancestor."""
    path = Path(os.path.abspath(os.path.expanduser(folder)))
    for part in path.parts[1:]:
        if len(os.fsencode(part)) > NAME_MAX:
            return f"the name {part[:20]}... is {len(os.fsencode(part))} bytes, over {NAME_MAX}"
    try:
        existing = _nearest_existing_folder(path)
    except ValueError as e:
        return str(e)
    try:
        Path(tempfile.mkdtemp(prefix=".zoo-probe-", dir=existing)).rmdir()
    except OSError as e:
        return f"{existing} is not writable ({e.strerror or e})"
    return None


def checked_output_dir(folder: Any, key: str) -> Path:
    """``folder`` as an absolute path, if a run can be written there.

    :param key: the setting the folder came from, for the message (``hydra.run.dir``).
    :raises ConfigError: naming ``key`` if the value is empty (an unset shell variable would
        otherwise put the run into the current folder) or the folder cannot be written.
    """
    if folder is None or not str(folder).strip():
        raise ConfigError(
            f"{key} is empty (an unset shell variable?); a run never writes into the current "
            f"folder by accident: give a folder, e.g. {key}=outputs/my_run, or leave {key} out "
            "for a new dated folder."
        )
    problem = output_dir_problem(str(folder))
    if problem is not None:
        raise ConfigError(
            f"{key} = {str(folder)!r} is not valid: {problem}; it must be a folder that can be "
            f"created and written, e.g. {key}=outputs/my_run."
        )
    return Path(os.path.abspath(os.path.expanduser(str(folder))))


def folder_key() -> str:
    """The setting that names the run's folder: ``hydra.sweep.dir`` in a sweep."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return "hydra.sweep.dir"
    return "hydra.run.dir"


# ---- what a folder holds -------------------------------------------------------------------


def _temp_of(name: str, targets: tuple[str, ...] | None) -> bool:
    """Whether ``name`` is the temporary file of a write of one of ``targets`` (any: None)."""
    match = TEMP.fullmatch(name)
    if match is None:
        return False
    return targets is None or match["stem"] + (match["suffix"] or "") in targets


def run_files(folder: Path) -> list[Path]:
    """The files in ``folder`` that make it a run's: results, checkpoints and the temporary
    files of their writes. Hydra's ``.hydra/`` and log, and the lock, do not count."""
    if not folder.is_dir():
        return []
    found = [folder / name for name in RUN_FILES if os.path.lexists(folder / name)]
    found += [p for p in folder.iterdir() if _temp_of(p.name, RUN_FILES)]
    return sorted(found)


def _figure_files(folder: Path) -> list[Path]:
    figures = folder / FIGURES
    if not figures.is_dir() or figures.is_symlink():
        return []
    return sorted(p for p in figures.iterdir() if p.suffix == ".png" or _temp_of(p.name, None))


def _stale_temps(folder: Path) -> list[Path]:
    temps = [p for p in run_files(folder) if _temp_of(p.name, RUN_FILES)]
    return temps + [p for p in _figure_files(folder) if _temp_of(p.name, None)]


def _has_checkpoint(folder: Path) -> bool:
    return any((folder / name).is_file() for name in CHECKPOINTS)


def _remove(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


# ---- the lock ------------------------------------------------------------------------------

# One lock object per folder and process: filelock counts nested acquisitions of one object,
# while a second object on the same file is refused even within the process that holds it.
_LOCKS: dict[tuple[int, str], FileLock] = {}


def _lock_of(folder: Path) -> FileLock:
    key = (os.getpid(), os.path.realpath(folder))  # after a fork the child holds nothing
    if key not in _LOCKS:
        _LOCKS[key] = FileLock(folder / LOCK_NAME, timeout=0, thread_local=False)
    return _LOCKS[key]


def _holder(folder: Path) -> str:
    try:
        owner = json.loads((folder / OWNER_NAME).read_text())
        return f"process {owner['pid']} on {owner['host']} (since {owner['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (which one is not recorded yet)"


def _try_acquire(folder: Path) -> bool:
    """Takes the folder's lock (again, if this process holds it); False if another does."""
    lock = _lock_of(folder)
    first = not lock.is_locked
    try:
        lock.acquire()
    except Timeout:
        return False
    if first:
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%X")}
        try:
            (folder / OWNER_NAME).write_text(json.dumps(owner) + "\n")
        except OSError:
            pass  # only the message of a refused second run needs it
    return True


def _release(folder: Path) -> None:
    lock = _lock_of(folder)
    if lock.lock_counter == 1:
        (folder / OWNER_NAME).unlink(missing_ok=True)
    lock.release()


@contextmanager
def _locked(folder: Path, key: str) -> Iterator[None]:
    if not _try_acquire(folder):
        raise RunFolderError(
            f"the run folder {folder} is in use by {_holder(folder)}: a folder holds one run "
            f"at a time. Wait for that run to end, or choose another folder ({key}=...)."
        )
    try:
        yield
    finally:
        _release(folder)


@contextmanager
def held_if_free(folder: str | os.PathLike) -> Iterator[bool]:
    """Holds ``folder`` for the body if no other process does: yields True while this process
    holds it (already or now), False (and holds nothing) if another process does."""
    folder = Path(folder)
    held = folder.is_dir() and _try_acquire(folder)
    try:
        yield held
    finally:
        if held:
            _release(folder)


# ---- ownership -----------------------------------------------------------------------------


def _boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} = {value!r} is not valid: it must be true or false.")
    return value


def _no_checkpoint(folder: Path, key: str) -> ConfigError:
    where = (
        "does not exist" if not folder.is_dir() else "holds no checkpoint.pt or checkpoint.prev.pt"
    )
    return ConfigError(
        f"resume = true is not valid here: there is no checkpoint at {folder / CHECKPOINTS[0]} "
        f"(the folder {where}). Point {key} at the folder of the run to continue, or start "
        "without resume=true."
    )


def _refuse_or_clear(folder: Path, overwrite: bool, key: str) -> None:
    """Before a fresh run: refuses a folder that holds a run, or with ``overwrite`` deletes
    that run's files (and its figures), nothing else."""
    found = run_files(folder)
    if found and not overwrite:
        names = ", ".join(p.name for p in found[:4]) + (", ..." if len(found) > 4 else "")
        raise RunFolderError(
            f"the run folder {folder} already holds a run ({names}), which a fresh run would "
            f"overwrite. Continue that run with resume=true, choose another folder ({key}=...), "
            "or delete it and start again with overwrite=true."
        )
    if overwrite:
        _remove(found + _figure_files(folder))
        if (folder / FIGURES).is_dir() and not any((folder / FIGURES).iterdir()):
            (folder / FIGURES).rmdir()


@contextmanager
def own_run_folder(
    out_dir: str | os.PathLike,
    *,
    resume: bool = False,
    overwrite: bool = False,
    key: str | None = None,
) -> Iterator[Path]:
    """Makes ``out_dir`` this process's run folder for the body of the ``with``.

    Re-entrant within a process: a nested call (the CLI's callback, then :func:`zoo.app.run`)
    checks again and shares the hold. Stale temporary files are deleted once the folder is
    held.

    :param out_dir: the run folder; created if missing (not when resuming).
    :param resume: continue the run in ``out_dir``: it must hold a checkpoint.
    :param overwrite: delete the run files a previous run left in ``out_dir`` (results,
        checkpoints, figures; not Hydra's files, nor anything else) before a fresh run.
    :param key: the setting that names the folder, for messages; by default
        ``hydra.run.dir`` (``hydra.sweep.dir`` in a sweep).
    :returns: the folder, as an absolute path.
    :raises ConfigError: for an empty or unusable folder, a non-boolean flag, ``resume``
        with ``overwrite``, or ``resume`` without a checkpoint.
    :raises RunFolderError: if another process holds the folder, or a fresh run without
        ``overwrite`` would overwrite a run.

    Example::

        with own_run_folder("outputs/run", resume=False) as folder:
            ...  # train, evaluate and write into folder
    """
    key = key or folder_key()
    folder = checked_output_dir(out_dir, key)
    resume, overwrite = _boolean("resume", resume), _boolean("overwrite", overwrite)
    if resume and overwrite:
        raise ConfigError(
            f"resume = true and overwrite = true contradict each other: resume continues the "
            f"run in {folder}, overwrite deletes it. Give one of them."
        )
    if resume and not folder.is_dir():
        raise _no_checkpoint(folder, key)  # and create nothing
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(
            f"the output folder {folder} cannot be created: {e.strerror or e}. "
            f"Choose a writable folder ({key}=...)."
        ) from e
    with _locked(folder, key):
        if resume and not _has_checkpoint(folder):
            raise _no_checkpoint(folder, key)
        if not resume:
            _refuse_or_clear(folder, overwrite, key)
        _remove(_stale_temps(folder))  # we hold the folder: their writers are dead
        yield folder


# ---- the Hydra callback --------------------------------------------------------------------


def _refuse_a_resume_that_would_retrain(config: DictConfig, folder: Path) -> None:
    """Refuses a resume whose settings would change the trained parameters here, before
    Hydra rewrites the run's ``.hydra/`` (:func:`zoo.app.run` compares again, for Python callers).
    """
    from zoo.config import check_resume  # the settings classes: only when resuming

    task = OmegaConf.masked_copy(config, [key for key in config if key != "hydra"])
    check_resume(task, folder)


def _exit_with(error: ZooError) -> None:
    """The CLI's way with a :class:`ZooError` (see :mod:`zoo.__main__`), for a callback."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise error
    print(f"zoo: error: {error}", file=sys.stderr)
    sys.exit(error.exit_code)


class OutputDirCheck(Callback):
    """Takes the run folder before Hydra creates it or writes ``.hydra/`` into it (see the
    module's docstring), and checks a sweep's folder before its first job. Registered in
    ``conf/config.yaml``."""

    def __init__(self) -> None:
        self._held = ExitStack()

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        from zoo.distributed import ranks_from_environment

        ranks = ranks_from_environment()
        if ranks is not None and not ranks.is_main:
            return  # under torchrun rank 0 owns the run folder (zoo.distributed)
        try:
            folder = OmegaConf.select(config, "hydra.run.dir")
            flags = {k: config.get(k, False) for k in ("resume", "overwrite")}
        except Exception:  # an interpolation error: the zoo's config check reports it in run
            return
        atexit.register(self._held.close)  # a failed run exits without on_run_end
        try:
            owned = self._held.enter_context(own_run_folder(folder, **flags, key="hydra.run.dir"))
            if flags["resume"] is True:
                _refuse_a_resume_that_would_retrain(config, owned)
        except ZooError as e:
            self._held.close()
            _exit_with(e)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._held.close()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            checked_output_dir(OmegaConf.select(config, "hydra.sweep.dir"), "hydra.sweep.dir")
        except ZooError as e:
            _exit_with(e)

"""The run folder: checked before Hydra creates it.

:class:`OutputDirCheck` is a Hydra callback (registered in ``conf/config.yaml``) because
Hydra creates the output folder before any of the zoo's code runs.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from zoo.errors import ConfigError


def output_dir_problem(folder: str | Path) -> str | None:
    """Why ``folder`` cannot be created and written, or None if it can. Nothing is created:
    a probe folder is made and removed in the nearest existing ancestor."""
    path = Path(folder).expanduser().absolute()
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:
        Path(tempfile.mkdtemp(prefix=".zoo-probe-", dir=existing)).rmdir()
    except OSError as e:
        return f"{existing} is not writable ({e.strerror or e})"
    return None


class OutputDirCheck(Callback):
    """Stops a run whose output folder cannot be written, before Hydra tries to create it
    (Hydra would fail with a traceback). Registered in ``conf/config.yaml``."""

    def _check(self, config: DictConfig, key: str) -> None:
        folder = OmegaConf.select(config, key)
        problem = output_dir_problem(str(folder))
        if problem is not None:
            print(
                f"zoo: error: {key} = {str(folder)!r} is not valid: {problem}; it must be a "
                f"folder that can be created and written, e.g. {key}=outputs/my_run.",
                file=sys.stderr,
            )
            sys.exit(ConfigError.exit_code)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir")

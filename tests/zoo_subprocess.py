"""``python -m zoo`` in a child process, as a user runs it: shared by the CLI tests."""

import os
import subprocess
import sys
from pathlib import Path


def zoo_env(**extra):
    """The environment without HYDRA_FULL_ERROR (tracebacks are part of what is tested), and
    with this checkout first on the path, so the child runs this package whatever is
    installed."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**env, **extra}


def zoo(*args, cwd, env=None, timeout=300):
    """``python -m zoo *args`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "zoo", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or zoo_env(),
    )

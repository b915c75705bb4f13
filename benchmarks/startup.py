"""Start-up: seconds from launching ``python -m zoo model=vae`` to its first progress output.

Each run is started on a pseudo-terminal, as a user at a terminal would see it (the progress
bar draws only on a terminal), and its output is read until the progress bar of epoch 1
appears (drawn before the first step) and then until the log line of epoch 1 (after its 11
steps on the digits, which include torch's import of ``torch._dynamo`` at the first optimizer
step); the run is then stopped. The same is timed for ``python -c "import torch"`` and
``import pyro`` to show what imports cost alone. Medians of ``--repeats`` runs, interleaved.

    python benchmarks/startup.py --repeats 5
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import pty
import select
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

import pyro
import torch

FIRST_PROGRESS = b"epoch 1/"
FIRST_EPOCH_LINE = b"train/loss"


def time_to_output(command: list[str], markers: list[bytes], timeout: float = 120.0) -> list[float]:
    """Seconds until each of ``markers`` first appears in the output, in order; with no
    markers, seconds until the command exits."""
    master, slave = pty.openpty()
    # a terminal of 100 x 30 characters: tqdm draws nothing on a terminal of size 0
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    start = time.perf_counter()
    process = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    seen, times = b"", []
    try:
        while time.perf_counter() - start < timeout:
            ready, _, _ = select.select([master], [], [], 0.02)
            chunk = b""
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # the child closed the terminal
                    chunk = b""
                seen += chunk
                while len(times) < len(markers) and markers[len(times)] in seen:
                    times.append(time.perf_counter() - start)
                if markers and len(times) == len(markers):
                    return times
            if not chunk and process.poll() is not None:
                break
        if not markers and process.returncode == 0:
            return [time.perf_counter() - start]
        raise RuntimeError(f"{command} gave no {markers!r}; output: {seen[-2000:]!r}")
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.wait()
        os.close(master)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/startup.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        commands = {
            "zoo_first_progress": (
                [sys.executable, "-m", "zoo", "model=vae", f"hydra.run.dir={tmp}/run"],
                [FIRST_PROGRESS, FIRST_EPOCH_LINE],
            ),
            "import_torch": ([sys.executable, "-c", "import torch"], []),
            "import_pyro": ([sys.executable, "-c", "import pyro"], []),
        }
        times: dict[str, list[float]] = {
            "zoo_first_progress": [],
            "zoo_epoch_1_line": [],
            "import_torch": [],
            "import_pyro": [],
        }
        for _ in range(args.repeats):
            for name, (command, markers) in commands.items():
                found = time_to_output(command, markers)
                times[name].append(found[0])
                if len(found) > 1:
                    times["zoo_epoch_1_line"].append(found[1])
    result = {
        "benchmark": "startup",
        "settings": vars(args) | {"out": str(args.out), "OMP_NUM_THREADS": "1"},
        "median_s": {k: statistics.median(v) for k, v in times.items()},
        "min_s": {k: min(v) for k, v in times.items()},
        "max_s": {k: max(v) for k, v in times.items()},
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "versions": {"torch": torch.__version__, "pyro": pyro.__version__},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'command':<22} {'median s':>9} {'min':>6} {'max':>6}")
    for name in times:
        print(
            f"{name:<22} {result['median_s'][name]:>9.2f} {result['min_s'][name]:>6.2f} "
            f"{result['max_s'][name]:>6.2f}"
        )
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()

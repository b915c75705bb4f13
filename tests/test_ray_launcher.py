"""The Ray launcher preset (conf/hydra/launcher/ray_cluster.yaml) against a Ray instance that
the tests start as a cluster's head is started (``ray start --head``) and stop: a two-job sweep
runs each job as a Ray task in its own folder, which it leaves unlocked; the same sweep again is
refused job by job, once each; an option ray.remote does not know stops the sweep naming it.

The instance listens on 127.0.0.1 only: Ray replaces a loopback --node-ip-address by the
machine's address unless it is told that this is a one-machine cluster
(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, its switch for laptops). ``ray start --block`` stays in
the foreground and takes the instance down with it when it is sent SIGTERM, so the tests stop
their own instance by its PID, never with ``ray stop`` (which stops every Ray on the machine).
"""

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from zoo_subprocess import zoo, zoo_env

from zoo.rundir import held_if_free

pytest.importorskip("hydra_plugins.hydra_ray_launcher.ray_launcher")  # pip install -e ".[ray]"

# one epoch on the shipped digits, without the 5000-sample importance-weighted evaluation
TINY = ["trainer.epochs=1", "trainer.progress=false", "model.evaluation.iw_samples=0"]
START_TIMEOUT_S = 120  # a loaded 2-core machine takes 10 to 20 s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RayHead:
    address: str  # the GCS address, what `hydra.launcher.ray.init.address=auto` finds on the head
    temp_dir: Path  # the instance's sessions and logs
    env: dict


def session_group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def ray_head():
    """A one-node Ray instance with 2 CPUs, no dashboard and a small object store, in its own
    session so that every process it starts can be found and is gone after the tests."""
    temp_dir = Path(tempfile.mkdtemp(prefix="zoo-ray-"))  # short: Ray's socket paths have a limit
    env = zoo_env(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_USAGE_STATS_ENABLED="0")
    log = open(temp_dir / "ray-start.log", "w")
    head = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ray.scripts.scripts",
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={free_port()}",
            f"--ray-client-server-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--object-store-memory=100000000",
            f"--temp-dir={temp_dir}",
            "--disable-usage-stats",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        address_file = temp_dir / "ray_current_cluster"  # written once the node is up
        deadline = time.monotonic() + START_TIMEOUT_S
        while not address_file.is_file() and head.poll() is None:
            if time.monotonic() > deadline:
                pytest.fail(f"Ray did not start in {START_TIMEOUT_S} s; see {log.name}")
            time.sleep(0.5)
        if head.poll() is not None:
            pytest.fail(f"ray start exited with {head.returncode}:\n{Path(log.name).read_text()}")
        time.sleep(0.5)  # the file may be seen before its content is flushed
        address = address_file.read_text().strip()
        assert address.startswith("127.0.0.1:"), address
        yield RayHead(address, temp_dir, env)
    finally:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        deadline = time.monotonic() + 30  # the head's children go down after it
        while session_group_alive(head.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = session_group_alive(head.pid)
        if left:
            os.killpg(head.pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, "processes of the Ray instance outlived its head"


def ray_sweep(head: RayHead, sweep: Path, *overrides: str, cwd: Path):
    return zoo(
        "-m",
        "hydra/launcher=ray_cluster",
        f"hydra.launcher.ray.init.address={head.address}",
        *overrides,
        f"hydra.sweep.dir={sweep}",
        cwd=cwd,
        env=head.env,
        timeout=600,
    )


def worker_output(head: RayHead) -> str:
    """What the instance's worker processes printed (Ray keeps it in the session's logs)."""
    logs = head.temp_dir / "session_latest" / "logs"
    files = sorted([*logs.glob("worker-*.out"), *logs.glob("worker-*.err")])
    return "".join(p.read_text(errors="replace") for p in files)


def test_a_two_job_sweep_runs_each_job_on_ray_in_its_own_folder(ray_head, tmp_path):
    sweep = tmp_path / "sweep"
    result = ray_sweep(ray_head, sweep, "seed=0,1", *TINY, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]

    folders = sorted(p.parent for p in sweep.glob("*/summary.json"))
    assert len(folders) == 2, sorted(p.name for p in sweep.iterdir())
    summaries = [json.loads((f / "summary.json").read_text()) for f in folders]
    assert sorted(s["config"]["seed"] for s in summaries) == [0, 1]
    for folder, summary in zip(folders, summaries):
        assert f"seed={summary['config']['seed']}" in folder.name.split(",")
        assert math.isfinite(summary["metrics"]["test/elbo"])
        epochs = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        assert [e["epoch"] for e in epochs if "epoch" in e] == [1]
        # the job ran in a worker of this instance: its summary line is in the worker's log
        assert f"summary: {folder / 'summary.json'}" in worker_output(ray_head)
        # and the worker, which Ray keeps for later tasks, let go of the folder at the job's end
        with held_if_free(folder) as free:
            assert free, f"{folder} is still locked after its job"
    assert summaries[0]["metrics"]["test/elbo"] != summaries[1]["metrics"]["test/elbo"]

    # the same sweep again: each job refuses the folder that holds its first run, and is not
    # retried; the driver stops at the first failed job, which may cut the other one short
    before = {f: (f / "summary.json").read_bytes() for f in folders}
    again = ray_sweep(ray_head, sweep, "seed=0,1", *TINY, cwd=tmp_path)
    assert again.returncode != 0
    logs = worker_output(ray_head)
    first, second = (logs.count(f"the run folder {f} already holds a run") for f in folders)
    assert first == 1 and second <= 1, logs[-3000:]
    assert {f: (f / "summary.json").read_bytes() for f in folders} == before


def test_an_option_ray_remote_does_not_know_is_named(ray_head, tmp_path):
    result = ray_sweep(
        ray_head,
        tmp_path / "sweep",
        "+hydra.launcher.ray.remote.num_gpu=1",
        "seed=0,1",
        *TINY,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    message = "Invalid option keyword num_gpu for remote functions"
    assert message in result.stderr, result.stderr[-3000:]
    assert not list((tmp_path / "sweep").glob("*/summary.json"))

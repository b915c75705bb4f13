"""Data-parallel SVI under a real ``torchrun`` (two CPU ranks, gloo): the ranks hold the same
parameters after training, rank 0 alone writes the run folder, a killed run resumes exactly,
and a rank that dies stops the other instead of leaving it waiting. The kill tests find the
ranks in /proc (Linux), as the fault tests do."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from zoo.checkpoint import load_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from zoo_subprocess import zoo_env  # noqa: E402

WORKER = Path(__file__).with_name("worker.py")
# tiny runs: the shipped digits, one thread per rank, the cheap evaluation
TINY = [
    "threads=1",
    "trainer.progress=false",
    "trainer.batch_size=64",
    "model.latent_dim=2",
    "model.hidden_dims=[16]",
    "model.evaluation.iw_samples=10",
]


def torchrun(*args, nproc=2):
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={nproc}", *args,
    ]  # fmt: skip


def run(cmd, cwd, env=None, timeout=240):
    return subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env or zoo_env()
    )


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("sampling", ["permutation", "replacement"])
def test_two_ranks_average_their_gradients_and_end_with_identical_parameters(tmp_path, sampling):
    done = run(torchrun(str(WORKER), str(tmp_path), sampling), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for report in ranks:
        check = report["check"]
        assert check["grads"] == [[1.5] * 3, [[-1.5, -1.5], [-1.5, -1.5]]]  # the ranks' mean
        assert check["loss"] == 15.0
        assert check["stop"] == signal.SIGTERM  # rank 1's signal reaches rank 0 too
        assert check["gathered"] == [0, 7]
        assert check["broadcast"] == "from rank 0"
        # 1437 training rows, 64 a rank, 2 ranks: 11 steps an epoch (disjoint halves of 22)
        assert report["steps"] == 1437 // (64 * 2)
        assert report["history"][-1]["train/steps_total"] == 2 * 11
    untimed = [
        [{k: v for k, v in h.items() if not k.startswith("time/")} for h in r["history"]]
        for r in ranks
    ]
    assert untimed[0] == untimed[1]  # the averaged losses and rank 0's evaluations
    first, second = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert states_equal(first, second)
    # and trained: rank 0's checkpoint holds the same, and both ranks' random states
    saved = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert states_equal(saved["module"], first)
    assert saved["world_size"] == 2 and len(saved["rng_ranks"]) == 2
    assert not torch.equal(saved["rng_ranks"][0]["torch"], saved["rng_ranks"][1]["torch"])


def test_a_two_rank_run_writes_one_folder_and_resumes_exactly_after_a_kill(tmp_path):
    args = ["-m", "zoo", *TINY, "trainer.epochs=6"]
    straight = run(torchrun(*args, "hydra.run.dir=straight"), cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr[-3000:]
    summary = json.loads((tmp_path / "straight" / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert summary["epochs"] == 6
    # rank 1 wrote nothing: one run folder, holding one Hydra log
    assert sorted(p.name for p in tmp_path.iterdir()) == ["straight"]
    assert straight.stdout.count("summary:") == 1  # only rank 0 prints the summary

    # each save pauses 0.4 s, so the kill lands between epochs or inside a checkpoint write
    child = subprocess.Popen(
        torchrun(*args, "hydra.run.dir=killed"),
        cwd=tmp_path,
        env=zoo_env(ZOO_TEST_CHECKPOINT_PAUSE_S="0.4"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 2):
        assert child.poll() is None, child.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "the run wrote no second epoch in 120 s"
        time.sleep(0.05)
    _kill_the_machine(child)
    kept = load_checkpoint(tmp_path / "killed" / "checkpoint.pt")
    assert 2 <= kept["epoch"] < 6

    # one process cannot continue a two-rank run: each rank's random stream is in it
    alone = run([sys.executable, "-m", "zoo", *TINY, "trainer.epochs=6", "resume=true",
                 "hydra.run.dir=killed"], cwd=tmp_path)  # fmt: skip
    assert alone.returncode == 1
    assert "made by 2 rank(s), this run has 1" in alone.stderr

    resumed = run(torchrun(*args, "resume=true", "hydra.run.dir=killed"), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"after epoch {kept['epoch']}" in resumed.stderr
    ends = [load_checkpoint(tmp_path / name / "checkpoint.pt") for name in ("straight", "killed")]
    assert states_equal(ends[0]["module"], ends[1]["module"])
    again = json.loads((tmp_path / "killed" / "summary.json").read_text())
    assert again["metrics"] == summary["metrics"]


def _processes() -> dict[int, tuple[int, list[bytes]]]:
    """Every process's parent PID and environment, by PID (from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            found[int(entry.name)] = (int(stat.rsplit(")", 1)[1].split()[1]), environ)
    return found


def _workers(root: int) -> dict[int, int]:
    """The ranks torchrun ``root`` started: {rank: PID}."""
    workers = {}
    for pid, (parent, environ) in _processes().items():
        if parent == root:
            ranks = [e for e in environ if e.startswith(b"RANK=")]
            if ranks:
                workers[int(ranks[0].split(b"=")[1])] = pid
    return workers


def _kill_the_machine(child: subprocess.Popen) -> None:
    """SIGKILL to torchrun and its ranks at once, as a power cut would (torchrun starts each
    rank in a session of its own, so a signal to torchrun's group alone leaves them running).
    """
    pids = [child.pid, *_workers(child.pid).values()]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    child.wait(timeout=30)
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() and _zombie_or_alive(pid) for pid in pids[1:]):
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _zombie_or_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_rank_that_dies_stops_the_other_with_a_message(tmp_path):
    child = subprocess.Popen(
        torchrun("-m", "zoo", *TINY, "trainer.epochs=1000", "hydra.run.dir=run"),
        cwd=tmp_path,
        env=zoo_env(ZOO_TEST_CHECKPOINT_PAUSE_S="0.2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        metrics = tmp_path / "run" / "metrics.jsonl"
        deadline = time.monotonic() + 120
        while not metrics.is_file():
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(_workers(child.pid)[1], signal.SIGKILL)
        started = time.monotonic()
        _, err = child.communicate(timeout=90)
        stopped_after = time.monotonic() - started
    finally:
        if child.poll() is None:
            _kill_the_machine(child)
    assert child.returncode != 0
    assert stopped_after < 60  # torch's collective timeout is 30 minutes: nobody waited it out
    # rank 0 says why it stopped: the lost peer, or torchrun's SIGTERM after the failure
    assert "zoo: error: rank 0 of 2: another rank stopped" in err or "interrupted by SIGTERM" in err
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["epoch"] >= 1


def test_the_gmm_trains_on_two_ranks_sharing_out_the_full_batch(tmp_path):
    done = run(
        torchrun("-m", "zoo", "model=gmm", "threads=1", "trainer.progress=false",
                 "trainer.epochs=30", "hydra.run.dir=run"),
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["world_size"] == 2
    # Old Faithful's 218 training rows: trainer.batch_size=null gives each rank 109
    assert summary["train"]["train/steps_total"] == 30
    assert all(v == v for v in summary["metrics"].values() if isinstance(v, float))


def test_a_sweep_is_refused_under_torchrun(tmp_path):
    done = run(
        [sys.executable, "-m", "zoo", "-m", "seed=0,1"],
        cwd=tmp_path,
        env=zoo_env(RANK="0", WORLD_SIZE="2", LOCAL_RANK="0"),
    )
    assert done.returncode == 2
    assert "a sweep (-m) cannot run under torchrun (rank 0 of 2)" in done.stderr
    assert not any(tmp_path.iterdir())

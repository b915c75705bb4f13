"""A run killed (SIGKILL, at several points, also mid-checkpoint-write) or stopped politely
(SIGINT, SIGTERM), then resumed, ends bit-identical to a run never interrupted."""

import random
import signal
import subprocess
import time

import pytest
from faultkit import TINY, numbers, wait_for, zoo, zoo_env, zoo_popen

from zoo.checkpoint import PAUSE_ENV, load_checkpoint


@pytest.fixture(scope="module")
def straight(model_args, tmp_path_factory):
    """The numbers of an uninterrupted run."""
    tmp = tmp_path_factory.mktemp("straight")
    result = zoo(*model_args, *TINY, f"hydra.run.dir={tmp / 'run'}", cwd=tmp)
    assert result.returncode == 0, result.stderr
    return numbers(tmp / "run")


def temps(run_dir):
    return list(run_dir.glob(".checkpoint.*.tmp.pt"))


def written_since(path, time_ns):
    return path.exists() and path.stat().st_mtime_ns > time_ns


def epochs_logged(run_dir):
    path = run_dir / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def resume(model_args, run_dir, cwd):
    return zoo(*model_args, *TINY, f"hydra.run.dir={run_dir}", "resume=true", cwd=cwd)


def test_sigkill_during_a_checkpoint_write_then_resume_is_bit_identical(
    model_args, straight, tmp_path
):
    run_dir = tmp_path / "run"
    # each save sleeps between writing its temporary file and the rename: kill in there
    proc = zoo_popen(
        *model_args,
        *TINY,
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
        env=zoo_env(**{PAUSE_ENV: "1.0"}),
    )
    try:  # the second save: epoch 1's checkpoint is in place, epoch 2's is being written
        wait_for(lambda: (run_dir / "checkpoint.pt").exists() and temps(run_dir), proc)
    finally:
        proc.kill()
        proc.wait()
    assert load_checkpoint(run_dir / "checkpoint.pt")["epoch"] == 1  # whole, not torn
    assert temps(run_dir)  # the kill left the temporary file behind

    result = resume(model_args, run_dir, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "after epoch 1" in result.stderr
    assert temps(run_dir) == []
    assert numbers(run_dir) == straight


@pytest.mark.parametrize(
    "signum",
    [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)],
    ids=["SIGTERM", "SIGINT"],
)
def test_sigint_and_sigterm_stop_with_a_message_and_the_run_resumes(
    model_args, straight, tmp_path, signum
):
    run_dir = tmp_path / "run"
    proc = zoo_popen(*model_args, *TINY, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    try:
        wait_for(lambda: epochs_logged(run_dir) >= 1, proc)
        proc.send_signal(signum)
        assert proc.wait(timeout=120) == 128 + signum
    finally:
        proc.kill()
        proc.wait()
    output = (tmp_path / "zoo-0.log").read_text()
    name = signal.Signals(signum).name
    assert f"zoo: interrupted by {name}" in output and "resume=true" in output
    assert "Traceback" not in output
    epoch = load_checkpoint(run_dir / "checkpoint.pt")["epoch"]
    assert epoch >= 1

    result = resume(model_args, run_dir, tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"after epoch {epoch}" in result.stderr
    assert numbers(run_dir) == straight


@pytest.mark.slow
def test_killed_again_and_again_at_random_times_still_ends_bit_identical(
    model_args, straight, tmp_path
):
    """Random SIGKILLs: before the first checkpoint, mid-epoch, mid-write (each save pauses
    0.3 s to make writes a target), each followed by a resume (or a fresh start when no
    checkpoint was ever made)."""
    run_dir = tmp_path / "run"
    rng = random.Random(8)
    env = zoo_env(**{PAUSE_ENV: "0.3"})
    kills = []
    for attempt in range(12):
        resumed = (run_dir / "checkpoint.pt").exists()
        args = [
            *model_args,
            *TINY,
            f"hydra.run.dir={run_dir}",
            # no checkpoint yet: start again, over the killed attempt's config and metrics
            *(["resume=true"] if resumed else ["overwrite=true"]),
        ]
        proc = zoo_popen(*args, cwd=tmp_path, env=env if attempt < 6 else None)
        if attempt >= 6:  # enough: let it finish
            assert proc.wait(timeout=300) == 0, (tmp_path / f"zoo-{attempt}.log").read_text()
            break
        started = time.time_ns()
        try:  # config.yaml is written just before training starts
            wait_for(lambda t=started: written_since(run_dir / "config.yaml", t), proc)
        except AssertionError:
            pass  # it finished (or failed): looked at below
        if attempt % 2:  # every other kill after this attempt's first new epoch: work to keep
            logged = epochs_logged(run_dir)
            try:
                wait_for(lambda n=logged: epochs_logged(run_dir) > n, proc)
            except AssertionError:
                pass  # it finished (or failed): looked at below
        # short delays: the GMM's 3 epochs take about a second with the paused saves, and a
        # longer delay lets its runs finish unkilled
        delay = rng.uniform(0.0, 1.5)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            pass
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            kills.append((round(delay, 2), epochs_logged(run_dir), bool(temps(run_dir))))
        elif proc.returncode == 0:
            break
        else:
            pytest.fail((tmp_path / f"zoo-{attempt}.log").read_text())
    assert len(kills) >= 3, kills
    assert any(epochs for _, epochs, _ in kills), kills  # at least one resume had work to keep
    assert numbers(run_dir) == straight, kills

"""A run folder has one owner: a fresh run refuses a folder that holds a run, a second process
refuses a folder in use (naming the holder), a killed holder leaves nothing locked, and a
resume beside a live run leaves that run's checkpoint write alone. Real processes and files;
one model (the folder's rules do not depend on it)."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from faultkit import MODELS_UNDER_TEST, TINY, compose_config, wait_for, zoo, zoo_env, zoo_popen

from zoo.app import run
from zoo.checkpoint import PAUSE_ENV, remove_stale_temps
from zoo.errors import ConfigError
from zoo.rundir import RUN_FILES, RunFolderError, checked_output_dir, own_run_folder, run_files

VAE = MODELS_UNDER_TEST[0]


def snapshot(folder):
    """Every file under ``folder`` with its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def temps(folder):
    return sorted(p.name for p in folder.glob(".checkpoint.*.tmp.pt"))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished ``python -m zoo`` run's folder; copy it before changing it."""
    tmp = tmp_path_factory.mktemp("finished")
    result = zoo(*VAE, *TINY, f"hydra.run.dir={tmp / 'run'}", cwd=tmp)
    assert result.returncode == 0, result.stderr
    return tmp / "run"


@pytest.fixture
def copied(finished, tmp_path):
    shutil.copytree(finished, tmp_path / "run")
    return tmp_path / "run"


def one_paragraph(stderr):
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("zoo: error: "), stderr
    return lines[0]


def test_every_file_a_run_writes_is_known_to_the_folder_rules(finished):
    """A new result file must join RUN_FILES, or a fresh run would overwrite it unasked."""
    hydras = {".hydra", "__main__.log", ".zoo.lock", "figures"}
    assert {p.name for p in finished.iterdir()} == set(RUN_FILES) | hydras


def test_hydra_files_and_the_lock_alone_are_not_a_run_but_a_write_in_progress_is(tmp_path):
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("seed: 0\n")
    (tmp_path / "__main__.log").write_text("")
    (tmp_path / ".zoo.lock").write_text("")
    (tmp_path / "notes.txt").write_text("mine\n")
    assert run_files(tmp_path) == []
    (tmp_path / ".summary.123.tmp.json").write_text("{")
    assert run_files(tmp_path) == [tmp_path / ".summary.123.tmp.json"]


def test_a_fresh_run_into_a_finished_runs_folder_refuses_and_changes_nothing(copied, tmp_path):
    before = snapshot(copied)
    result = zoo(*VAE, *TINY, "seed=1", f"hydra.run.dir={copied}", cwd=tmp_path)
    assert result.returncode == RunFolderError.exit_code
    message = one_paragraph(result.stderr)
    assert f"the run folder {copied} already holds a run" in message
    for way_out in ("resume=true", "hydra.run.dir=...", "overwrite=true"):
        assert way_out in message
    assert snapshot(copied) == before  # .hydra/ and the log included


def test_overwrite_true_replaces_the_runs_files_and_nothing_else(copied, tmp_path):
    (copied / "notes.txt").write_text("mine\n")
    (copied / "figures" / ".elbo_curve.99.tmp.png").write_bytes(b"half")
    result = zoo(*VAE, *TINY, "seed=1", "overwrite=true", f"hydra.run.dir={copied}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = (copied / "summary.json").read_text()
    assert '"seed": 1' in summary and '"overwrite": true' in summary
    assert len((copied / "metrics.jsonl").read_text().splitlines()) == 3  # the new run's only
    assert (copied / "notes.txt").read_text() == "mine\n"
    assert not (copied / "figures" / ".elbo_curve.99.tmp.png").exists()


def test_two_runs_started_at_once_in_one_folder_one_refuses_naming_the_other(tmp_path):
    run_dir = tmp_path / "run"
    env = zoo_env(**{PAUSE_ENV: "1"})  # each save holds the folder 1 s longer
    procs = [
        zoo_popen(*VAE, *TINY, f"seed={seed}", f"hydra.run.dir={run_dir}", cwd=tmp_path, env=env)
        for seed in (0, 1)
    ]
    codes = [proc.wait(timeout=300) for proc in procs]
    assert sorted(codes) == [0, RunFolderError.exit_code], codes
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    refusal = one_paragraph((tmp_path / f"zoo-{loser}.log").read_text())
    host = socket.gethostname()
    assert f"is in use by process {procs[winner].pid} on {host}" in refusal
    assert f'"seed": {winner}' in (run_dir / "summary.json").read_text()


def test_a_resume_beside_a_live_run_refuses_and_leaves_its_checkpoint_write_alone(tmp_path):
    run_dir = tmp_path / "run"
    args = [*VAE, *TINY, "trainer.epochs=2", f"hydra.run.dir={run_dir}"]
    live = zoo_popen(*args, cwd=tmp_path, env=zoo_env(**{PAUSE_ENV: "2"}))
    try:  # the second save: epoch 1's checkpoint in place, epoch 2's half written
        wait_for(lambda: (run_dir / "checkpoint.pt").exists() and temps(run_dir), live)
        live.send_signal(signal.SIGSTOP)  # frozen mid-write, whatever the load
        checkpoint, writing = (run_dir / "checkpoint.pt").read_bytes(), temps(run_dir)
        assert writing, "the save ended before the run was frozen"
        result = zoo(*args, "resume=true", cwd=tmp_path)
        assert temps(run_dir) == writing
        assert (run_dir / "checkpoint.pt").read_bytes() == checkpoint
        live.send_signal(signal.SIGCONT)
        assert live.wait(timeout=300) == 0, (tmp_path / "zoo-0.log").read_text()
    finally:
        live.kill()
        live.wait()
    assert result.returncode == RunFolderError.exit_code
    assert f"is in use by process {live.pid}" in one_paragraph(result.stderr)
    assert '"epochs": 2' in (run_dir / "summary.json").read_text()


HOLDER = """
import sys, time
from zoo.rundir import own_run_folder
with own_run_folder(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_folder_held_by_a_live_process_is_refused_and_free_once_it_is_killed(tmp_path):
    """The lock is the OS's: a kill -9 releases it; while the holder lives, its temporary
    files are its own and stay."""
    folder = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)],
        stdout=subprocess.PIPE,
        text=True,
        env=zoo_env(),
    )
    try:
        assert holder.stdout.readline() == "held\n"
        writing = folder / f".checkpoint.{holder.pid}.tmp.pt"
        writing.write_bytes(b"a save in progress")
        with pytest.raises(RunFolderError, match=f"in use by process {holder.pid} on "):
            with own_run_folder(folder):
                pass
        assert remove_stale_temps(folder / "checkpoint.pt") == []
        assert writing.exists()
    finally:
        holder.kill()
        holder.wait()
    assert remove_stale_temps(folder / "checkpoint.pt") == [writing]  # its writer is dead
    with own_run_folder(folder):
        with own_run_folder(folder):  # re-entrant in one process: the CLI's callback, then run
            pass


def test_resume_on_a_folder_without_a_checkpoint_is_refused_before_hydra_writes_anything(
    tmp_path,
):
    empty, missing = tmp_path / "empty", tmp_path / "missing"
    empty.mkdir()
    for folder in (empty, missing):
        started = time.perf_counter()
        result = zoo(*VAE, *TINY, "resume=true", f"hydra.run.dir={folder}", cwd=tmp_path)
        elapsed = time.perf_counter() - started
        assert result.returncode == ConfigError.exit_code
        message = one_paragraph(result.stderr)
        assert f"there is no checkpoint at {folder / 'checkpoint.pt'}" in message
        assert "start without resume=true" in message
        print(f"{folder.name}: refused in {elapsed:.1f} s")
    assert [p.name for p in empty.iterdir()] == [".zoo.lock"]  # no .hydra/, no log
    assert not missing.exists()


def test_resume_without_a_checkpoint_through_python_is_refused_before_the_data(
    tmp_path, monkeypatch
):
    def no_data(*args, **kwargs):
        raise AssertionError("the data was loaded")

    monkeypatch.setattr("zoo.app.load_dataset", no_data)
    with pytest.raises(ConfigError, match="there is no checkpoint at"):
        run(compose_config([*VAE, *TINY, "resume=true"]), tmp_path)


@pytest.mark.parametrize(
    "args,key",
    [
        (["hydra.run.dir="], "hydra.run.dir is empty"),
        (["-m", "hydra.sweep.dir="], "hydra.sweep.dir is empty"),
        (["hydra.run.dir={tmp}/loop/run"], "{tmp}/loop is a symbolic link that loops"),
    ],
    ids=["empty run dir", "empty sweep dir", "symlink loop"],
)
def test_an_unusable_run_folder_is_refused_naming_the_key_and_nothing_is_written(
    tmp_path, args, key
):
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    result = zoo(*(a.format(tmp=tmp_path) for a in args), *VAE, *TINY, cwd=tmp_path)
    assert result.returncode == ConfigError.exit_code
    assert key.format(tmp=tmp_path) in one_paragraph(result.stderr)
    assert [p.name for p in tmp_path.iterdir()] == ["loop"]  # nothing in the working folder


def test_folder_names_the_file_system_cannot_hold_are_refused(tmp_path):
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    for folder, reason in [
        (tmp_path / ("x" * 256) / "run", "bytes, over 255"),
        (tmp_path / "gone" / "run", "which does not exist"),
        (tmp_path / "loop" / "run", "is a symbolic link that loops"),
    ]:
        if folder.parent.name == "loop":
            folder.parent.symlink_to(folder.parent)
        with pytest.raises(ConfigError, match="hydra.run.dir = .* is not valid: .*" + reason):
            checked_output_dir(folder, "hydra.run.dir")
    assert sorted(os.listdir(tmp_path)) == ["gone", "loop"]


def test_a_sweep_job_refuses_a_folder_that_holds_a_run(finished, tmp_path):
    sweep = tmp_path / "sweep"
    shutil.copytree(finished, sweep / "job")
    before = {k: v for k, v in snapshot(sweep / "job").items() if not k.startswith(".hydra")}
    result = zoo(
        "-m",
        *VAE,
        *TINY,
        "seed=1",
        f"hydra.sweep.dir={sweep}",
        "hydra.sweep.subdir=job",
        cwd=tmp_path,
    )
    assert result.returncode == RunFolderError.exit_code
    assert f"the run folder {sweep / 'job'} already holds a run" in result.stderr
    assert "hydra.sweep.dir=..." in result.stderr and "Traceback" not in result.stderr
    after = snapshot(sweep / "job")
    # Hydra rewrites a job's .hydra/ before any callback sees the job's folder
    assert {k: v for k, v in after.items() if not k.startswith(".hydra")} == before


def test_a_leftover_temp_file_alone_counts_as_a_run_in_progress(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / ".checkpoint.4242.tmp.pt").write_bytes(b"half")
    with pytest.raises(RunFolderError, match=r"already holds a run \(.checkpoint.4242.tmp.pt\)"):
        with own_run_folder(folder):
            pass
    with own_run_folder(folder, overwrite=True):
        assert sorted(p.name for p in folder.iterdir()) == [".zoo.lock", ".zoo.owner"]
    assert sorted(p.name for p in folder.iterdir()) == [".zoo.lock"]


def test_owning_needs_true_or_false_and_not_both(tmp_path):
    with pytest.raises(ConfigError, match="overwrite = 'yes' is not valid: it must be true or"):
        with own_run_folder(tmp_path, overwrite="yes"):
            pass
    with pytest.raises(ConfigError, match="contradict each other"):
        with own_run_folder(tmp_path, resume=True, overwrite=True):
            pass


def test_the_holder_file_is_only_for_the_message(tmp_path):
    """A stale owner file of a dead run does not lock anything."""
    (tmp_path / ".zoo.owner").write_text('{"pid": 1, "host": "elsewhere", "since": "noon"}\n')
    with own_run_folder(tmp_path) as folder:
        assert Path(folder) == tmp_path
        assert f'"pid": {os.getpid()}' in (tmp_path / ".zoo.owner").read_text()
    assert not (tmp_path / ".zoo.owner").exists()

"""A checkpoint or result that cannot be written: the run says so, names the file, and keeps
the previous good files. Simulated by failing the rename (any user) and, where this process
may mount one, for real on a tiny tmpfs through the CLI."""

import errno
import os
import shutil
import subprocess

import pytest
from faultkit import TINY, compose_config, zoo

from zoo.app import run
from zoo.checkpoint import load_checkpoint
from zoo.errors import CheckpointError, OutputError


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def fail_renames_onto(monkeypatch, suffix, when=lambda dst: True):
    real = os.replace

    def replace(src, dst):
        if str(dst).endswith(suffix) and when(dst):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize("name", ["summary.json", "metrics.jsonl", "config.yaml", ".png"])
def test_a_result_that_cannot_be_written_is_reported_and_the_old_one_kept(
    model_args, finished_run, tmp_path, monkeypatch, name
):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    before = snapshot(run_dir)
    fail_renames_onto(monkeypatch, name)
    # resuming a finished run rewrites every result file
    with pytest.raises(OutputError, match="No space left on device") as error:
        run(compose_config([*model_args, *TINY, "resume=true"]), run_dir)
    assert str(run_dir) in str(error.value) and name in str(error.value)
    assert "previous file is kept" in str(error.value)
    after = snapshot(run_dir)
    assert set(after) == set(before)  # no temporary file left
    failed = [f for f in before if str(f).endswith(name)]
    assert failed and all(after[f] == before[f] for f in failed)  # the old file, whole


def test_a_checkpoint_that_cannot_be_written_stops_the_run_and_keeps_the_last_one(
    model_args, tmp_path, monkeypatch
):
    fail_renames_onto(monkeypatch, "checkpoint.pt", when=lambda dst: os.path.exists(dst))
    with pytest.raises(CheckpointError, match="No space left on device.*previous checkpoint"):
        run(compose_config([*model_args, *TINY]), tmp_path)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["epoch"] == 1
    assert not list(tmp_path.glob(".*.tmp*"))


@pytest.fixture
def tiny_disk(tmp_path, finished_run):
    """A tmpfs that holds the files written before the first checkpoint and one checkpoint
    of the tiny run, but not two. tmpfs counts whole pages, so every file is rounded up to
    one, and the other files get a page of slack each (metrics.jsonl is rewritten by rename)."""
    page = 4096

    def pages(path):
        return -(-path.stat().st_size // page)

    others = [
        f
        for f in finished_run.rglob("*")
        if f.is_file()
        and f.parent.name != "figures"
        and f.name not in ("checkpoint.pt", "checkpoint.prev.pt", "summary.json")
    ]
    checkpoint = pages(finished_run / "checkpoint.pt")
    size = page * (sum(pages(f) + 1 for f in others) + checkpoint + max(1, checkpoint // 2))
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_through_the_cli(model_args, tiny_disk, tmp_path):
    run_dir = tiny_disk / "run"
    result = zoo(*model_args, *TINY, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode != 0
    assert "No space left on device" in result.stderr and "Traceback" not in result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("zoo: error:")]
    assert len(error) == 1 and "is kept" in error[0], result.stderr
    assert load_checkpoint(run_dir / "checkpoint.pt")["epoch"] >= 1
    assert not list(run_dir.glob(".*.tmp*"))

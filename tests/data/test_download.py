"""The downloader, against a local HTTP server on 127.0.0.1 serving small IDX files."""

import gzip
import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from zoo.data import DataError, load_dataset
from zoo.data.download import download_file
from zoo.data.mnist import FILES, SPECS, cache_dir

CLOSED_PORT_URL = "http://127.0.0.1:9/"


def _leftovers(folder):
    return sorted(p.name for p in folder.rglob("*.part")) if folder.exists() else []


def test_download_into_cache_then_reuse(http_server, idx_files):
    url, www = http_server
    made = idx_files(www)
    ds = load_dataset("mnist", urls=[url], checksums=made["sha256"], progress=False)
    assert ds.train_x.shape == (20, 784)
    assert torch.equal(ds.train_y, torch.from_numpy(made["train_y"]).long())
    cache = cache_dir("mnist")
    assert ds.source == str(cache)
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{n}.gz" for n in FILES.values())
    # the second load finds the cache and needs no server
    again = load_dataset("mnist", download=False)
    assert torch.equal(again.test_x, ds.test_x)


def test_missing_cached_file_is_downloaded_alone(http_server, idx_files):
    url, www = http_server
    made = idx_files(www)
    idx_files(cache_dir("mnist"))
    (cache_dir("mnist") / f"{FILES['test_x']}.gz").unlink()
    (www / f"{FILES['train_x']}.gz").unlink()  # would fail if it were fetched again
    ds = load_dataset("mnist", urls=url, checksums=made["sha256"], progress=False)
    assert ds.test_x.shape == (10, 784)


def test_mirrors_are_tried_in_turn(http_server, idx_files):
    url, www = http_server
    made = idx_files(www)
    ds = load_dataset("mnist", urls=[CLOSED_PORT_URL, url], checksums=made["sha256"])
    assert ds.train_x.shape == (20, 784)


def test_wrong_checksum_is_refused_and_leaves_nothing(http_server, idx_files):
    url, www = http_server
    made = idx_files(www)
    checksums = {**made["sha256"], FILES["train_x"]: "0" * 64}
    with pytest.raises(DataError, match="wrong checksum: expected decompressed SHA-256 0000"):
        load_dataset("mnist", urls=[url], checksums=checksums)
    assert not (cache_dir("mnist") / f"{FILES['train_x']}.gz").exists()
    assert _leftovers(cache_dir("mnist").parent) == []


def test_default_fashion_checksums_refuse_other_content(http_server, idx_files):
    url, www = http_server
    idx_files(www)
    with pytest.raises(DataError, match="wrong checksum.*c59f468a"):
        load_dataset("fashion_mnist", urls=[url])
    assert _leftovers(cache_dir("fashion_mnist").parent) == []


def test_truncated_gzip_is_refused_and_leaves_nothing(http_server, idx_files):
    url, www = http_server
    made = idx_files(www)
    path = www / f"{FILES['train_x']}.gz"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated"):
        load_dataset("mnist", urls=[url], checksums=made["sha256"])
    assert not (cache_dir("mnist") / path.name).exists()
    assert _leftovers(cache_dir("mnist").parent) == []


def test_connection_closed_early_is_refused_and_leaves_nothing(http_server, idx_files, tmp_path):
    url, www = http_server
    idx_files(www)
    (www / "plain").write_bytes(bytes(1000))
    for name in (f"{FILES['train_x']}.gz", "plain"):
        dest = tmp_path / "dl" / name
        with pytest.raises(DataError, match=f"short/{name} is truncated: received"):
            download_file(f"{url}short/{name}", dest, progress=False)
        assert list(dest.parent.iterdir()) == []


def test_offline_failure_says_where_it_looked(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset("mnist", urls=[CLOSED_PORT_URL])
    message = str(info.value)
    for expected in (
        str(cache_dir("mnist")),
        str(SPECS["mnist"].system_dir),
        CLOSED_PORT_URL,
        "data.root=",
        "ZOO_DATA_DIR",
    ):
        assert expected in message
    assert _leftovers(tmp_path) == []


def test_concurrent_downloads_leave_one_good_copy(http_server, idx_files):
    url, www = http_server
    made = idx_files(www, n_train=200)
    errors = []

    def fetch():
        try:
            load_dataset("mnist", urls=[url], checksums=made["sha256"], progress=False)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    cache = cache_dir("mnist")
    assert _leftovers(cache) == []
    for file_name, digest in made["sha256"].items():
        data = gzip.decompress((cache / f"{file_name}.gz").read_bytes())
        assert hashlib.sha256(data).hexdigest() == digest


FETCH = """
import dataclasses, json, sys
from pathlib import Path
from zoo.data.mnist import SPECS, load_idx_dataset
url, checksums, system = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
spec = dataclasses.replace(SPECS["mnist"], system_dir=Path(system))
print(len(load_idx_dataset(spec, urls=[url], checksums=checksums, progress=False).train_x))
"""


def test_two_processes_downloading_at_once_leave_one_good_copy(http_server, idx_files, tmp_path):
    url, www = http_server
    made = idx_files(www, n_train=3000)  # about 2 MB: the two downloads overlap
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    args = [sys.executable, "-c", FETCH, url, json.dumps(made["sha256"]), str(tmp_path / "sys")]
    procs = [
        subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert [out.strip() for out, _ in outputs] == ["3000", "3000"]
    cache = cache_dir("mnist")
    assert _leftovers(cache) == []
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{n}.gz" for n in FILES.values())
    for file_name, digest in made["sha256"].items():
        data = gzip.decompress((cache / f"{file_name}.gz").read_bytes())
        assert hashlib.sha256(data).hexdigest() == digest

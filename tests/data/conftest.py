"""Fixtures of the data tests: an isolated cache and system folder, small IDX files, and a
local HTTP server on 127.0.0.1 that stands in for the download mirrors."""

import dataclasses
import functools
import gzip
import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest

from zoo.data import mnist, write_idx

# A closed port: any download that a test did not point at its own server fails at once.
UNREACHABLE_URL = "http://127.0.0.1:9/"


@pytest.fixture(autouse=True)
def isolated_data_dirs(tmp_path, monkeypatch):
    """Point the user cache and the system folders into tmp_path, and the mirrors nowhere."""
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path / "cache"))
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    for name, spec in mnist.SPECS.items():
        monkeypatch.setitem(
            mnist.SPECS,
            name,
            dataclasses.replace(
                spec, system_dir=tmp_path / "system" / name, urls=(UNREACHABLE_URL,)
            ),
        )
    return tmp_path


def make_idx_files(
    folder: Path, n_train: int = 20, n_test: int = 10, gz: bool = True, seed: int = 0
) -> dict:
    """Write the four MNIST-style IDX files into ``folder``.

    :returns: the arrays written, keyed by part, and ``"sha256"``: the decompressed digest of
        each file by its standard name.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_x": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_y": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_x": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_y": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    digests = {}
    for part, file_name in mnist.FILES.items():
        path = folder / (f"{file_name}.gz" if gz else file_name)
        write_idx(path, arrays[part])
        raw = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
        digests[file_name] = hashlib.sha256(raw).hexdigest()
    return {**arrays, "sha256": digests}


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files from its directory; paths under /short/ send half the body promised."""

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        if not self.path.startswith("/short/"):
            return super().do_GET()
        path = Path(self.directory) / self.path.removeprefix("/short/")
        if not path.is_file():
            return self.send_error(404)
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.close_connection = True


@pytest.fixture
def http_server(tmp_path):
    """A threaded HTTP server on 127.0.0.1 serving ``tmp_path / "www"``.

    :returns: ``(base_url, folder)``; put files in ``folder`` to serve them.
    """
    folder = tmp_path / "www"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", folder
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def idx_files():
    """The :func:`make_idx_files` helper, as a fixture so tests need not import conftest."""
    return make_idx_files

"""Downloading data files safely: verify first, then move into place.

Each file is streamed into a temporary file in the destination folder, named uniquely per
process and thread, while the SHA-256 of its *decompressed* bytes is computed on the fly (the
gzip bytes of a mirror may differ from upstream's; the content may not). Only a file whose
hash matches, and whose gzip stream is complete, is ``os.replace``d onto its final name, so
two processes downloading at once leave one good copy and a failure leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import threading
import urllib.error
import urllib.request
import uuid
import zlib
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from zoo.data.base import DataError

CHUNK_SIZE = 1 << 16
PROGRESS_MIN_BYTES = 1 << 20  # show a progress bar for files larger than this
TIMEOUT_S = 60.0


def _temp_path(dest: Path) -> Path:
    unique = f"{os.getpid()}-{threading.get_ident()}-{uuid.uuid4().hex[:8]}"
    return dest.with_name(f".{dest.name}.{unique}.part")


def download_file(
    url: str,
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    progress: bool | None = None,
    timeout: float = TIMEOUT_S,
) -> Path:
    """Download ``url`` to ``dest``, verifying the SHA-256 of its decompressed content.

    :param url: where to fetch the file; a name ending in ``.gz`` is decompressed for hashing
        (the file is stored as downloaded).
    :param dest: final path; its folder is created if needed.
    :param sha256: expected hex digest of the decompressed bytes, or ``None`` to skip the hash
        check (the caller then validates the structure of the file).
    :param progress: show a tqdm bar; ``None`` shows one for files over 1 MiB.
    :param timeout: seconds to wait for the server on connect and on each read.
    :returns: ``dest`` as a :class:`~pathlib.Path`.
    :raises DataError: if the download fails, is truncated or has the wrong hash; no
        temporary file is left behind.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_path(dest)
    compressed = url.endswith(".gz")
    # wbits=16+MAX_WBITS reads a gzip header and trailer, so an incomplete stream is detected.
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS) if compressed else None
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(temp, "xb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None else None
            show = progress if progress is not None else (total or 0) > PROGRESS_MIN_BYTES
            with tqdm(
                total=total, unit="B", unit_scale=True, desc=dest.name, disable=not show
            ) as bar:
                received = 0
                while chunk := response.read(CHUNK_SIZE):
                    out.write(chunk)
                    digest.update(decompressor.decompress(chunk) if decompressor else chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        if total is not None and received != total:
            raise DataError(
                f"Download of {url} is truncated: received {received} of {total} bytes."
            )
        if decompressor is not None:
            digest.update(decompressor.flush())
            if not decompressor.eof:
                raise DataError(f"Download of {url} is truncated: the gzip stream is incomplete.")
            if decompressor.unused_data:
                raise DataError(f"Download of {url} has extra bytes after the gzip stream.")
        if sha256 is not None and digest.hexdigest() != sha256.lower():
            raise DataError(
                f"Download of {url} has the wrong checksum: expected decompressed SHA-256 "
                f"{sha256.lower()}, got {digest.hexdigest()}."
            )
        os.replace(temp, dest)
    except DataError:
        temp.unlink(missing_ok=True)
        raise
    except (OSError, http.client.HTTPException, zlib.error, ValueError) as e:
        # URLError and HTTPError are OSErrors; IncompleteRead is an HTTPException.
        temp.unlink(missing_ok=True)
        reason = e.reason if isinstance(e, urllib.error.URLError) else e
        raise DataError(f"Download of {url} failed: {type(e).__name__}: {reason}.") from e
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return dest


def download_from_mirrors(
    file_name: str,
    dest: str | os.PathLike[str],
    base_urls: Sequence[str],
    *,
    sha256: str | None = None,
    progress: bool | None = None,
) -> Path:
    """Try ``<base_url>/<file_name>`` for each base URL in turn until one download verifies.

    :raises DataError: listing every URL tried and why it failed.
    """
    failures = []
    for base in base_urls:
        url = f"{base.rstrip('/')}/{file_name}"
        try:
            return download_file(url, dest, sha256=sha256, progress=progress)
        except DataError as e:
            failures.append(f"  - {e}")
    tried = "\n".join(failures) if failures else "  (no URLs given)"
    raise DataError(f"Could not download {file_name}:\n{tried}")

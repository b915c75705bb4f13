"""Reading and writing IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number ``0x0000TTNN`` (``TT`` the element type, ``NN`` the
number of dimensions), then ``NN`` big-endian uint32 sizes, then the elements, big-endian, in
row-major order. Files ending in ``.gz`` are read and written gzip-compressed.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import torch

from zoo.data.reading import DataFile

# IDX type code -> big-endian numpy dtype, as listed in the IDX specification.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_TYPE_CODES = {dtype.newbyteorder("="): code for code, dtype in IDX_DTYPES.items()}


def _describe(code: int) -> str:
    return ", ".join(f"0x{c:02X} ({d.name})" for c, d in IDX_DTYPES.items()) + f"; got 0x{code:02X}"


def parse_idx(data: bytes, name: str | DataFile = "<bytes>") -> torch.Tensor:
    """Decode the bytes of an (uncompressed) IDX file.

    :param name: the file's name for messages, or the :class:`DataFile` it came from (whose
        remedy the messages then add).
    :raises DataError: for a bad magic number, a size that differs from the header's, or a
        NaN or infinity in a float file.
    """
    file = name if isinstance(name, DataFile) else DataFile(Path(name), f"IDX file {name}", "")
    if len(data) < 4:
        raise file.error(
            f"is too short to hold a header: {len(data)} bytes, expected at least 4 (magic "
            "number 0x0000TTNN)"
        )
    zero, type_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or type_code not in IDX_DTYPES:
        raise file.error(
            f"has bad magic number 0x{data[:4].hex().upper()}: expected 0x0000TTNN with type "
            f"code TT one of {_describe(type_code)}"
        )
    if ndim == 0:
        raise file.error("declares 0 dimensions; expected at least 1")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise file.error(
            f"is truncated inside its header: {len(data)} bytes, expected {header} for {ndim} "
            "dimension sizes"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = IDX_DTYPES[type_code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "longer than its header says"
        raise file.error(
            f"is {problem}: header declares shape {tuple(shape)} of {dtype.name}, which needs "
            f"{expected} bytes, but the file has {len(data)} bytes"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    if dtype.kind == "f" and not np.isfinite(array).all():
        row = int(np.flatnonzero(~np.isfinite(array.reshape(len(array), -1)).all(axis=1))[0])
        raise file.error("holds a NaN or an infinity; the values must be finite", f"row {row}")
    # astype copies to native byte order and a writable buffer, as torch requires.
    return torch.from_numpy(array.astype(dtype.newbyteorder("=")))


def read_idx(path: str | os.PathLike[str], remedy: str = "") -> torch.Tensor:
    """Read an IDX file (gzip-compressed if its name ends in ``.gz``) into a tensor.

    :param path: the file to read (``~`` is expanded).
    :param remedy: what a user can do if the file is damaged, added to every message
        (e.g. delete a cache copy so that it is downloaded again).
    :returns: a tensor of the file's shape; ``uint8`` for MNIST images and labels.
    :raises DataError: if the file is missing or cannot be read, its gzip stream is damaged,
        it has a bad magic number, its payload size differs from what its header declares,
        or a float file holds a NaN or an infinity.

    Example::

        >>> images = read_idx("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
        >>> images.shape, images.dtype
        (torch.Size([10000, 28, 28]), torch.uint8)
    """
    path = Path(path).expanduser()
    file = DataFile(path, f"IDX file {path}", remedy)
    return parse_idx(file.read_bytes(), file)


def write_idx(path: str | os.PathLike[str], array: torch.Tensor | np.ndarray) -> None:
    """Write ``array`` as an IDX file, gzip-compressed if ``path`` ends in ``.gz``.

    :param path: the file to write.
    :param array: a tensor or array of one of the IDX element types (uint8, int8, int16,
        int32, float32, float64) with at least one dimension.
    """
    array = np.asarray(array.cpu() if isinstance(array, torch.Tensor) else array)
    code = _TYPE_CODES.get(array.dtype.newbyteorder("="))
    if code is None or array.ndim == 0:
        raise ValueError(
            f"write_idx needs an array of at least 1 dimension with dtype one of "
            f"{[d.name for d in IDX_DTYPES.values()]}; got {array.dtype} with ndim {array.ndim}"
        )
    header = struct.pack(f">HBB{array.ndim}I", 0, code, array.ndim, *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    path = Path(path)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)

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

from zoo.data.base import DataError

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


def parse_idx(data: bytes, name: str = "<bytes>") -> torch.Tensor:
    """Decode the bytes of an (uncompressed) IDX file; ``name`` is used in error messages."""
    if len(data) < 4:
        raise DataError(
            f"IDX file {name} is too short to hold a header: {len(data)} bytes, expected at "
            "least 4 (magic number 0x0000TTNN)."
        )
    zero, type_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or type_code not in IDX_DTYPES:
        raise DataError(
            f"IDX file {name} has bad magic number 0x{data[:4].hex().upper()}: expected "
            f"0x0000TTNN with type code TT one of {_describe(type_code)}."
        )
    if ndim == 0:
        raise DataError(f"IDX file {name} declares 0 dimensions; expected at least 1.")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"IDX file {name} is truncated inside its header: {len(data)} bytes, expected "
            f"{header} for {ndim} dimension sizes."
        )
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = IDX_DTYPES[type_code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "longer than its header says"
        raise DataError(
            f"IDX file {name} is {problem}: header declares shape {tuple(shape)} of "
            f"{dtype.name}, which needs {expected} bytes, but the file has {len(data)} bytes."
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    # astype copies to native byte order and a writable buffer, as torch requires.
    return torch.from_numpy(array.astype(dtype.newbyteorder("=")))


def read_idx(path: str | os.PathLike[str]) -> torch.Tensor:
    """Read an IDX file (gzip-compressed if its name ends in ``.gz``) into a tensor.

    :param path: the file to read.
    :returns: a tensor of the file's shape; ``uint8`` for MNIST images and labels.
    :raises DataError: if the file is missing, is not valid gzip, has a bad magic number, or
        its payload size differs from what its header declares.

    Example::

        >>> images = read_idx("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
        >>> images.shape, images.dtype
        (torch.Size([10000, 28, 28]), torch.uint8)
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except FileNotFoundError as e:
        raise DataError(f"IDX file {path} does not exist.") from e
    except (OSError, EOFError) as e:
        # gzip raises EOFError for a truncated stream and BadGzipFile (an OSError) for junk.
        raise DataError(f"IDX file {path} is not a complete gzip file: {e}.") from e
    return parse_idx(data, str(path))


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

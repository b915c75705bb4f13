import gzip
import struct

import numpy as np
import pytest
import torch

from zoo.data import DataError, read_idx, write_idx


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip(tmp_path, dtype, suffix):
    array = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    path = tmp_path / f"a-idx3{suffix}"
    write_idx(path, array)
    tensor = read_idx(path)
    assert tensor.shape == (2, 3, 4)
    np.testing.assert_array_equal(tensor.numpy(), array)


def test_mnist_layout_is_the_standard_one(tmp_path):
    write_idx(tmp_path / "labels", torch.tensor([1, 2, 3], dtype=torch.uint8))
    assert (tmp_path / "labels").read_bytes() == bytes.fromhex("00000801 00000003 010203")
    images = torch.arange(2 * 28 * 28).reshape(2, 28, 28).to(torch.uint8)
    write_idx(tmp_path / "images.gz", images)
    raw = gzip.decompress((tmp_path / "images.gz").read_bytes())
    assert raw[:16] == struct.pack(">IIII", 0x803, 2, 28, 28) and len(raw) == 16 + 2 * 784
    assert torch.equal(read_idx(tmp_path / "images.gz"), images)


def _write(path, data):
    path.write_bytes(data)
    return path


def test_wrong_magic_is_refused(tmp_path):
    path = _write(tmp_path / "bad", struct.pack(">IIB", 0x12345801, 1, 7))
    with pytest.raises(DataError, match="bad magic number 0x12345801") as info:
        read_idx(path)
    assert str(path) in str(info.value)
    path = _write(tmp_path / "badtype", struct.pack(">IIB", 0x00000701, 1, 7))
    with pytest.raises(DataError, match="got 0x07"):
        read_idx(path)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (struct.pack(">II", 0x801, 3) + b"\x01\x02", "truncated.*needs 11 bytes.*has 10"),
        (struct.pack(">II", 0x801, 3) + b"\x01\x02\x03\x04", "longer than.*needs 11.*has 12"),
        (struct.pack(">II", 0x803, 3), "truncated inside its header"),
        (b"\x00\x00", "too short"),
        (struct.pack(">I", 0x800), "0 dimensions"),
    ],
)
def test_size_mismatch_is_refused_naming_the_file(tmp_path, data, message):
    path = _write(tmp_path / "labels-idx1-ubyte", data)
    with pytest.raises(DataError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_truncated_gzip_and_missing_file_are_refused(tmp_path):
    write_idx(tmp_path / "x.gz", np.zeros((50, 28, 28), dtype=np.uint8))
    data = (tmp_path / "x.gz").read_bytes()
    path = _write(tmp_path / "cut.gz", data[: len(data) // 2])
    with pytest.raises(DataError, match="is truncated: its gzip stream ends early") as info:
        read_idx(path)
    assert "cut.gz" in str(info.value)
    with pytest.raises(DataError, match="does not exist"):
        read_idx(tmp_path / "missing.gz")


def test_write_idx_refuses_unsupported_arrays(tmp_path):
    with pytest.raises(ValueError, match="dtype"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.uint32))
    with pytest.raises(ValueError, match="dimension"):
        write_idx(tmp_path / "x", np.array(1, dtype=np.uint8))

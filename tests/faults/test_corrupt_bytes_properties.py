"""The data loaders on randomly corrupted files (hypothesis): a file with flipped, inserted or
deleted bytes, cut short, or replaced by random bytes either still loads or raises the zoo's
own :class:`~zoo.errors.DataError` (one paragraph naming the file), never a raw exception
from gzip, csv, numpy or torch.

Each case starts from a good file (the shipped ones, or tiny IDX files written here), so most
examples reach deep into the parsers instead of failing at the first byte. The corruption is
applied to the bytes on disk (compressed or not) and, for gzip files, also to the text inside,
compressed again, so that the CSV and IDX parsers see damaged content as well.
"""

import gzip
import shutil
from importlib import resources

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from zoo.data import load_dataset, write_idx
from zoo.data.idx import parse_idx
from zoo.data.mnist import FILES
from zoo.errors import DataError

EXAMPLES = settings(max_examples=25)
SHIPPED = resources.files("zoo.data") / "files"

edits = st.lists(
    st.tuples(
        st.sampled_from(["flip", "insert", "delete", "truncate", "set"]),
        st.integers(0, 2**31),  # the position, modulo the length
        st.integers(0, 255),
    ),
    min_size=1,
    max_size=4,
)


def corrupt(data: bytes, operations) -> bytes:
    out = bytearray(data)
    for kind, position, value in operations:
        at = position % (len(out) + 1)
        if kind == "insert":
            out[at:at] = bytes([value])
        elif kind == "truncate":
            del out[at:]
        elif at < len(out):
            if kind == "flip":
                out[at] ^= 1 << (value % 8)
            elif kind == "set":
                out[at] = value
            else:  # delete
                del out[at]
    return bytes(out)


def loads_or_refuses(load) -> None:
    """The loader returns a data set or raises DataError; anything else fails the test."""
    try:
        load()
    except DataError as e:
        assert str(e), "a DataError must say what is wrong"


@EXAMPLES
@given(data=st.binary(max_size=200))
def test_parse_idx_on_random_bytes(data):
    loads_or_refuses(lambda: parse_idx(data, "random.idx"))


@pytest.fixture(scope="module")
def good_idx_bytes():
    """The uncompressed bytes of a small 3-d image file."""
    return b"\x00\x00\x08\x03" + (3).to_bytes(4, "big") + (2).to_bytes(4, "big") * 2 + bytes(12)


@EXAMPLES
@given(operations=edits)
def test_parse_idx_on_a_corrupted_file(good_idx_bytes, operations):
    loads_or_refuses(lambda: parse_idx(corrupt(good_idx_bytes, operations), "bad.idx"))


def old_faithful_in(folder, data: bytes):
    (folder / "old_faithful.csv").write_bytes(data)
    return lambda: load_dataset("old_faithful", root=str(folder))


@EXAMPLES
@given(operations=edits)
def test_old_faithful_on_a_corrupted_csv(tmp_path_factory, operations):
    folder = tmp_path_factory.mktemp("faithful")
    good = (SHIPPED / "old_faithful.csv").read_bytes()
    loads_or_refuses(old_faithful_in(folder, corrupt(good, operations)))


@EXAMPLES
@given(data=st.binary(max_size=300))
def test_old_faithful_on_random_bytes(tmp_path_factory, data):
    loads_or_refuses(old_faithful_in(tmp_path_factory.mktemp("faithful"), data))


@pytest.fixture(scope="module")
def digits_bytes():
    compressed = (SHIPPED / "digits.csv.gz").read_bytes()
    return compressed, gzip.decompress(compressed)


@settings(max_examples=15)
@given(operations=edits, inside=st.booleans())
def test_digits_on_a_corrupted_gzip_file(tmp_path_factory, digits_bytes, operations, inside):
    compressed, text = digits_bytes
    data = gzip.compress(corrupt(text, operations)) if inside else corrupt(compressed, operations)
    folder = tmp_path_factory.mktemp("digits")
    (folder / "digits.csv.gz").write_bytes(data)
    loads_or_refuses(lambda: load_dataset("digits", root=str(folder)))


@pytest.fixture(scope="module")
def mnist_folder(tmp_path_factory):
    """The four IDX files of a tiny MNIST-like data set, gzip-compressed."""
    folder = tmp_path_factory.mktemp("mnist-good")
    g = torch.Generator().manual_seed(0)
    for part, n in (("train", 12), ("test", 6)):
        images = torch.randint(0, 256, (n, 28, 28), generator=g).byte()
        labels = torch.randint(0, 10, (n,), generator=g).byte()
        for key, array in ((f"{part}_x", images), (f"{part}_y", labels)):
            plain = folder / FILES[key]
            write_idx(plain, array)
            (folder / f"{FILES[key]}.gz").write_bytes(gzip.compress(plain.read_bytes()))
            plain.unlink()
    return folder


@settings(max_examples=20)
@given(
    operations=edits,
    which=st.sampled_from(sorted(FILES)),
    inside=st.booleans(),
)
def test_mnist_on_a_corrupted_idx_file(tmp_path_factory, mnist_folder, operations, which, inside):
    folder = tmp_path_factory.mktemp("mnist")
    for name in FILES.values():
        shutil.copy(mnist_folder / f"{name}.gz", folder / f"{name}.gz")
    target = folder / f"{FILES[which]}.gz"
    good = target.read_bytes()
    target.write_bytes(
        gzip.compress(corrupt(gzip.decompress(good), operations))
        if inside
        else corrupt(good, operations)
    )
    loads_or_refuses(lambda: load_dataset("mnist", root=str(folder), download=False))

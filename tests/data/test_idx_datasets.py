"""MNIST-style data sets from local folders: look-up order and structure checks."""

import dataclasses
from pathlib import Path

import pytest
import torch

from zoo.data import DataError, load_dataset, write_idx
from zoo.data.mnist import FILES, SPECS, cache_dir

FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")


def test_loads_from_root_scaled_and_flattened(tmp_path, idx_files):
    made = idx_files(tmp_path / "mine", n_train=20, n_test=10)
    ds = load_dataset("mnist", root=tmp_path / "mine", download=False)
    assert (ds.name, ds.kind, ds.shape, ds.num_classes) == ("mnist", "image", (28, 28), 10)
    assert ds.train_x.shape == (20, 784) and ds.test_x.shape == (10, 784)
    assert ds.train_x.dtype == torch.float32 and ds.train_y.dtype == torch.int64
    expected = torch.from_numpy(made["train_x"]).reshape(20, -1).float() / 255
    assert torch.equal(ds.train_x, expected)
    assert torch.equal(ds.test_y, torch.from_numpy(made["test_y"]).long())
    assert ds.source == str(tmp_path / "mine")


def test_plain_files_and_hyphenated_name(tmp_path, idx_files):
    idx_files(tmp_path / "plain", gz=False)
    ds = load_dataset("fashion-mnist", root=tmp_path / "plain")
    assert ds.name == "fashion_mnist" and ds.train_x.shape == (20, 784)


def test_lookup_order_root_then_cache_then_system(isolated_data_dirs, idx_files):
    tmp = isolated_data_dirs
    system = SPECS["mnist"].system_dir
    idx_files(tmp / "root", n_train=5)
    idx_files(cache_dir("mnist"), n_train=6)
    idx_files(system, n_train=7)
    assert len(load_dataset("mnist", root=tmp / "root").train_x) == 5
    assert len(load_dataset("mnist").train_x) == 6
    (cache_dir("mnist") / f"{FILES['test_y']}.gz").unlink()  # an incomplete cache is skipped
    ds = load_dataset("mnist", download=False)
    assert len(ds.train_x) == 7 and ds.source == str(system)


def test_explicit_root_with_missing_files_does_not_fall_through(isolated_data_dirs, idx_files):
    tmp = isolated_data_dirs
    idx_files(cache_dir("mnist"))
    idx_files(tmp / "root")
    (tmp / "root" / f"{FILES['train_y']}.gz").unlink()
    with pytest.raises(DataError, match="lacks train-labels-idx1-ubyte"):
        load_dataset("mnist", root=tmp / "root")


def test_cache_folder_follows_environment(tmp_path, monkeypatch):
    assert cache_dir("mnist") == tmp_path / "cache" / "mnist"
    monkeypatch.delenv("ZOO_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir("fashion_mnist") == tmp_path / "xdg" / "zoo" / "fashion_mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir("mnist") == tmp_path / "home" / ".cache" / "zoo" / "mnist"


def test_missing_everywhere_says_where_it_looked(isolated_data_dirs):
    with pytest.raises(DataError) as info:
        load_dataset("fashion_mnist", download=False)
    message = str(info.value)
    assert str(cache_dir("fashion_mnist")) in message
    assert str(SPECS["fashion_mnist"].system_dir) in message
    for hint in (
        "download=False",
        "apt-get install dataset-fashion-mnist",
        "data.root=",
        "ZOO_DATA_DIR",
    ):
        assert hint in message


def test_label_count_mismatch_is_refused(tmp_path, idx_files):
    idx_files(tmp_path)
    labels = tmp_path / f"{FILES['train_y']}.gz"
    write_idx(labels, torch.zeros(19, dtype=torch.uint8))
    with pytest.raises(DataError, match="19 labels but .* 20 images") as info:
        load_dataset("mnist", root=tmp_path)
    assert str(labels) in str(info.value)


def test_label_out_of_range_and_wrong_image_shape_are_refused(tmp_path, idx_files):
    idx_files(tmp_path)
    write_idx(tmp_path / f"{FILES['test_y']}.gz", torch.full((10,), 10, dtype=torch.uint8))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte.gz has the label 10; labels must"):
        load_dataset("mnist", root=tmp_path)
    idx_files(tmp_path)
    write_idx(tmp_path / f"{FILES['train_x']}.gz", torch.zeros(20, 8, 8, dtype=torch.uint8))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz holds .* expected uint8 images"):
        load_dataset("mnist", root=tmp_path)


@pytest.mark.skipif(
    not all((FASHION_SYSTEM_DIR / f"{n}.gz").is_file() for n in FILES.values()),
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
)
def test_real_fashion_mnist_from_the_system_folder(monkeypatch):
    # the autouse fixture moved the system folder into tmp_path: put the real one back
    spec = dataclasses.replace(SPECS["fashion_mnist"], system_dir=FASHION_SYSTEM_DIR)
    monkeypatch.setitem(SPECS, "fashion_mnist", spec)
    ds = load_dataset("fashion_mnist", download=False)
    assert ds.source == str(FASHION_SYSTEM_DIR)
    assert ds.train_x.shape == (60000, 784) and ds.test_x.shape == (10000, 784)
    assert 0 <= ds.train_x.min() and ds.train_x.max() <= 1
    assert torch.equal(torch.bincount(ds.train_y), torch.full((10,), 6000))
    assert torch.equal(torch.bincount(ds.test_y), torch.full((10,), 1000))


def test_empty_wrong_magic_and_truncated_files_are_refused_naming_the_file(tmp_path, idx_files):
    idx_files(tmp_path, gz=False)
    images = tmp_path / FILES["train_x"]
    write_idx(images, torch.zeros(0, 28, 28, dtype=torch.uint8))
    write_idx(tmp_path / FILES["train_y"], torch.zeros(0, dtype=torch.uint8))
    with pytest.raises(DataError, match="holds no images") as info:
        load_dataset("mnist", root=tmp_path)
    assert str(images) in str(info.value)
    idx_files(tmp_path, gz=False)
    labels = tmp_path / FILES["test_y"]
    labels.write_bytes(b"\x00\x00\x07\x01" + labels.read_bytes()[4:])
    with pytest.raises(DataError, match=f"IDX file {labels} has bad magic number 0x00000701"):
        load_dataset("mnist", root=tmp_path)
    idx_files(tmp_path, gz=False)
    images.write_bytes(images.read_bytes()[:-1])
    with pytest.raises(DataError, match=f"IDX file {images} is truncated"):
        load_dataset("mnist", root=tmp_path)

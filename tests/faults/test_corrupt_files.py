"""Damaged files, made for real: a changed byte inside a gzip file's deflate stream, binary
junk where a CSV should be, a folder where a file should be, rows with infinities, and
checkpoints with flipped bits, missing keys or tensors of another shape. Each gives one
paragraph that names the file and what to do, or, for a checkpoint, a resume from the
previous one with a warning."""

import dataclasses
import gzip
import logging
import shutil
import struct
import zipfile
import zlib
from importlib import resources
from pathlib import Path

import pytest
import torch
from faultkit import MODELS_UNDER_TEST, TINY, compose_config, numbers, write_mnist_like, zoo

from zoo.app import run
from zoo.checkpoint import (
    UnusableCheckpoint,
    load_checkpoint,
    load_latest_checkpoint,
    previous_path,
    save_checkpoint,
    state_digest,
)
from zoo.data import DataError, load_dataset, mnist, read_idx, write_idx
from zoo.errors import CheckpointError

SHIPPED = resources.files("zoo.data") / "files"


# ---- how the files are damaged -------------------------------------------------------------


def deflate_start(data: bytes) -> int:
    """Where the deflate stream of a gzip file begins: after the 10 fixed bytes and the
    optional extra field, file name, comment and header CRC (RFC 1952)."""
    flags, position = data[3], 10
    if flags & 0x04:  # FEXTRA: a 2-byte length, then that many bytes
        position += 2 + struct.unpack_from("<H", data, position)[0]
    for flag in (0x08, 0x10):  # FNAME, FCOMMENT: NUL-terminated
        if flags & flag:
            position = data.index(b"\0", position) + 1
    return position + (2 if flags & 0x02 else 0)  # FHCRC


def corrupt_deflate_stream(path: Path, want: type[Exception] = zlib.error) -> None:
    """Changes one byte inside the deflate stream of the gzip file ``path``: the first one
    whose change makes decompression raise ``want`` (zlib.error: the stream cannot be
    decoded, searched from its start; gzip.BadGzipFile: it decodes to other bytes and the
    CRC fails, searched from the middle)."""
    data = bytearray(path.read_bytes())
    start = deflate_start(data) if want is zlib.error else len(data) // 2
    for position in range(start, len(data) - 8):  # the last 8 bytes: CRC and size
        damaged = data.copy()
        damaged[position] ^= 0x55
        try:
            gzip.decompress(bytes(damaged))
        except want:
            path.write_bytes(bytes(damaged))
            return
        except Exception:
            continue
    raise AssertionError(f"no byte of {path} gives {want.__name__} when changed")


def copy_shipped(file_name: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / file_name
    target.write_bytes((SHIPPED / file_name).read_bytes())
    return target


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """A copy of the package's data files that the loaders read as the shipped ones."""
    package = tmp_path / "package"
    for name in ("digits.csv.gz", "old_faithful.csv"):
        copy_shipped(name, package / "files")
    monkeypatch.setattr("zoo.data.base.resources.files", lambda anchor: package)
    return package / "files"


@pytest.fixture
def data_dirs(tmp_path, monkeypatch):
    """The user cache and the system folders inside tmp_path; no download can succeed."""
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path / "cache"))
    for name, spec in mnist.SPECS.items():
        system = tmp_path / "system" / name
        monkeypatch.setitem(
            mnist.SPECS, name, dataclasses.replace(spec, system_dir=system, urls=())
        )
    return tmp_path


def assert_one_paragraph(error: Exception, *parts: str) -> None:
    message = str(error)
    assert "\n" not in message, message
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"


# ---- data files ----------------------------------------------------------------------------


@pytest.mark.parametrize("damage", [zlib.error, gzip.BadGzipFile], ids=["deflate", "crc"])
def test_a_damaged_idx_file_names_the_file_and_the_cure_for_each_place(data_dirs, damage):
    places = {
        "root": (data_dirs / "mine", "Replace it with a good copy"),
        "cache": (
            data_dirs / "cache" / "fashion_mnist",
            "and run again: the file is then downloaded",
        ),
        "system": (
            data_dirs / "system" / "fashion_mnist",
            "apt-get install --reinstall dataset-fashion-mnist",
        ),
    }
    for place, (folder, cure) in places.items():
        write_mnist_like(folder)
        for path in list(folder.iterdir()):  # the four files gzip-compressed, as shipped
            path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
            path.unlink()
        images = folder / f"{mnist.FILES['train_x']}.gz"
        corrupt_deflate_stream(images, damage)
        root = folder if place == "root" else None
        with pytest.raises(DataError) as error:
            load_dataset("fashion_mnist", root=root, download=False)
        assert_one_paragraph(error.value, str(images), cure)
        shutil.rmtree(folder)


def test_a_folder_where_an_idx_file_should_be_is_a_read_error_not_a_gzip_error(data_dirs):
    folder = data_dirs / "cache" / "mnist"
    write_mnist_like(folder)
    labels = folder / mnist.FILES["test_y"]
    labels.unlink()
    labels.mkdir()
    with pytest.raises(DataError) as error:
        load_dataset("mnist", download=False)
    assert_one_paragraph(error.value, str(labels), "is a folder, not a file", f"Delete {labels}")
    assert "gzip" not in str(error.value)


@pytest.mark.parametrize("damage", [zlib.error, gzip.BadGzipFile, EOFError])
def test_the_shipped_digits_damaged_say_to_reinstall(fake_package, damage):
    digits = fake_package / "digits.csv.gz"
    if damage is EOFError:
        digits.write_bytes(digits.read_bytes()[:-100])
    else:
        corrupt_deflate_stream(digits, damage)
    with pytest.raises(DataError) as error:
        load_dataset("digits")
    assert_one_paragraph(error.value, "zoo.data/files/digits.csv.gz", "reinstall the package")


def test_binary_junk_as_old_faithful_is_refused_naming_the_file(tmp_path, fake_package):
    junk = bytes(range(256)) * 8
    (fake_package / "old_faithful.csv").write_bytes(junk)
    with pytest.raises(DataError) as error:
        load_dataset("old_faithful")
    assert_one_paragraph(error.value, "old_faithful.csv", "not UTF-8 text", "reinstall")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "old_faithful.csv").write_bytes(b"eruptions,waiting\n\0\0\0\n")
    with pytest.raises(DataError) as error:
        load_dataset("old_faithful", root=tmp_path / "mine")
    assert_one_paragraph(error.value, str(tmp_path / "mine" / "old_faithful.csv"), "NUL")


@pytest.mark.parametrize("value", ["inf", "-Infinity", "1e999", "nan"])
def test_a_non_finite_value_is_refused_naming_file_and_row(tmp_path, value):
    good = (SHIPPED / "old_faithful.csv").read_text().splitlines()
    good[7] = f"{value},80"
    path = tmp_path / "old_faithful.csv"
    path.write_text("\n".join(good) + "\n")
    with pytest.raises(DataError) as error:
        load_dataset("old_faithful", root=tmp_path)
    assert_one_paragraph(error.value, f"{path}, line 8", "not a finite number")

    pixels = ["0"] * 64
    pixels[5] = value
    digits = tmp_path / "digits.csv.gz"
    digits.write_bytes(gzip.compress((",".join([*pixels, "3"]) + "\n").encode()))
    with pytest.raises(DataError) as error:
        load_dataset("digits", root=tmp_path)
    assert_one_paragraph(error.value, f"{digits}, row 1", "not a finite number")


def test_a_float_idx_file_with_an_infinity_is_refused_naming_the_row(tmp_path):
    values = torch.zeros(4, 3)
    values[2, 1] = float("inf")
    write_idx(tmp_path / "x.gz", values)
    with pytest.raises(DataError) as error:
        read_idx(tmp_path / "x.gz")
    assert_one_paragraph(error.value, str(tmp_path / "x.gz"), "row 2", "NaN or an infinity")


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux's /proc")
def test_a_read_error_of_the_file_itself_is_not_called_a_gzip_error(tmp_path):
    # reading /proc/self/mem from offset 0 fails with EIO: a real read error, even as root
    (tmp_path / "digits.csv.gz").symlink_to("/proc/self/mem")
    with pytest.raises(DataError) as error:
        load_dataset("digits", root=tmp_path)
    assert_one_paragraph(error.value, str(tmp_path / "digits.csv.gz"), "cannot be read: ")
    assert "gzip" not in str(error.value)


def test_a_folder_where_a_shipped_file_is_expected_is_named(tmp_path):
    (tmp_path / "old_faithful.csv").mkdir()
    with pytest.raises(DataError) as error:
        load_dataset("old_faithful", root=tmp_path)
    assert_one_paragraph(error.value, str(tmp_path / "old_faithful.csv"), "is a folder")


def test_tilde_in_root_works_for_the_shipped_files_as_for_idx_files(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    copy_shipped("digits.csv.gz", tmp_path / "data")
    copy_shipped("old_faithful.csv", tmp_path / "data")
    write_mnist_like(tmp_path / "data")
    for name in ("digits", "old_faithful", "mnist"):
        assert load_dataset(name, root="~/data").source.startswith(str(tmp_path / "data"))


def test_a_corrupt_data_file_through_the_cli_is_one_paragraph(tmp_path):
    root = tmp_path / "data"
    corrupt_deflate_stream(copy_shipped("digits.csv.gz", root))
    result = zoo(
        "model=vae", *TINY, f"data.root={root}", f"hydra.run.dir={tmp_path}/r", cwd=tmp_path
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "zlib.error" not in result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("zoo: error:")]
    assert len(error) == 1 and str(root / "digits.csv.gz") in error[0], result.stderr
    assert "Replace it with a good copy" in error[0]


# ---- checkpoints ---------------------------------------------------------------------------


def flip_tensor_bytes(path: Path) -> None:
    """Flips bits in the middle of the largest tensor record of a torch zip checkpoint: the
    zip stays readable, the numbers change."""
    with zipfile.ZipFile(path) as archive:
        record = max(
            (i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size
        )
    data = bytearray(path.read_bytes())
    # the local header: 30 bytes, then the name and the extra field, then the data
    name_length, extra_length = struct.unpack_from("<HH", data, record.header_offset + 26)
    start = record.header_offset + 30 + name_length + extra_length
    data[start + record.file_size // 2] ^= 0x40
    path.write_bytes(bytes(data))


def rewrite_with_digest(path: Path, change) -> None:
    """A structurally wrong checkpoint with a valid digest (as a buggy writer would leave)."""
    state = load_checkpoint(path)
    change(state)
    torch.save({**state, "sha256": state_digest(state)}, path)


def drop_optim(state):
    del state["optim"]


def drop_a_tensor(state):
    del state["module"][next(iter(state["module"]))]


def widen_a_tensor(state):
    name, tensor = next((k, v) for k, v in state["module"].items() if v.dim() >= 1)
    state["module"][name] = torch.cat([tensor, tensor[:1]])


DAMAGES = {
    "flipped-bits": flip_tensor_bytes,
    "missing-key": lambda path: rewrite_with_digest(path, drop_optim),
    "missing-tensor": lambda path: rewrite_with_digest(path, drop_a_tensor),
    "wrong-shape": lambda path: rewrite_with_digest(path, widen_a_tensor),
}


def test_flipped_bits_in_tensor_data_fail_the_digest(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"epoch": 1, "w": torch.randn(1000)}, path)
    flip_tensor_bytes(path)
    state = torch.load(path, weights_only=True)  # torch itself reads it without complaint
    assert state["epoch"] == 1
    with pytest.raises(UnusableCheckpoint) as error:
        load_checkpoint(path)
    assert_one_paragraph(error.value, str(path), "does not match the SHA-256 digest")


@pytest.mark.parametrize("damage", DAMAGES, ids=str)
def test_a_damaged_latest_checkpoint_resumes_from_the_previous_and_ends_identical(
    model_args, finished_run, tmp_path, caplog, damage
):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    latest = run_dir / "checkpoint.pt"
    DAMAGES[damage](latest)
    with caplog.at_level(logging.WARNING):
        run(compose_config([*model_args, *TINY, "resume=true"]), run_dir)
    warnings = [r.getMessage() for r in caplog.records if "previous checkpoint" in r.getMessage()]
    assert len(warnings) == 1 and str(latest) in warnings[0], caplog.text
    assert numbers(run_dir) == numbers(finished_run)  # the last epoch was trained again


def test_both_checkpoints_unusable_is_refused_naming_both(model_args, finished_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    latest, prev = run_dir / "checkpoint.pt", previous_path(run_dir / "checkpoint.pt")
    DAMAGES["wrong-shape"](latest)
    DAMAGES["flipped-bits"](prev)
    with pytest.raises(CheckpointError) as error:
        run(compose_config([*model_args, *TINY, "resume=true"]), run_dir)
    assert_one_paragraph(error.value, str(latest), str(prev), "without resume=true")


# one model through the CLI (a few seconds a run); the damages above run on every model
CLI_MODEL = MODELS_UNDER_TEST[0]


@pytest.fixture(scope="module")
def straight_cli(tmp_path_factory):
    """An uninterrupted run through the CLI: its folder."""
    tmp = tmp_path_factory.mktemp("straight")
    result = zoo(*CLI_MODEL, *TINY, f"hydra.run.dir={tmp / 'run'}", cwd=tmp)
    assert result.returncode == 0, result.stderr
    return tmp / "run"


def test_resume_through_the_cli_from_a_checkpoint_with_flipped_bits(straight_cli, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(straight_cli, run_dir)
    flip_tensor_bytes(run_dir / "checkpoint.pt")
    result = zoo(*CLI_MODEL, *TINY, f"hydra.run.dir={run_dir}", "resume=true", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr  # Hydra logs to stdout
    assert f"checkpoint {run_dir / 'checkpoint.pt'} is corrupted" in output
    assert f"resuming from the previous checkpoint {run_dir / 'checkpoint.prev.pt'}" in output
    assert numbers(run_dir) == numbers(straight_cli)


def test_a_checkpoint_without_a_digest_is_used_with_a_warning(tmp_path, caplog):
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": 1, "epoch": 2, "w": torch.ones(3)}, path)  # as the zoo wrote it before
    with caplog.at_level(logging.WARNING, logger="zoo.checkpoint"):
        state, source = load_latest_checkpoint(path)
    assert (state["epoch"], source) == (2, path)
    assert f"checkpoint {path} has no digest" in caplog.text


def test_a_checkpoint_holding_code_is_refused_without_torchs_unsafe_advice(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": 1, "epoch": 1, "hook": print}, path)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    assert_one_paragraph(error.value, str(path), "holds a Python object (", "print)")
    assert "weights_only" not in str(error.value) and "trusted" not in str(error.value)

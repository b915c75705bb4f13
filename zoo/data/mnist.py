"""MNIST and Fashion-MNIST, read from the four standard IDX files of each.

Where the files are looked for, in order:

1. an explicit ``root`` folder (if the files are missing there, that is an error);
2. the user cache, ``$ZOO_DATA_DIR/<name>/`` or else ``$XDG_CACHE_HOME/zoo/<name>/``
   (``~/.cache/zoo/<name>/``);
3. the system folder, e.g. ``/usr/share/datasets/fashion-mnist/`` (Debian's
   ``dataset-fashion-mnist`` package);
4. a download from the mirrors into the user cache, verified by SHA-256 before it is kept.

Each file may be present as ``NAME`` or ``NAME.gz``. Local files are trusted for content and
checked for structure (IDX header and size, image shape, label count and range); downloads are
also checked against the SHA-256 of their decompressed bytes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from zoo.data.base import DataError, Dataset, FileDataSettings, register_dataset
from zoo.data.download import download_from_mirrors
from zoo.data.idx import parse_idx
from zoo.data.reading import DataFile
from zoo.schema import setting

# Part of the Dataset -> standard IDX file name (without .gz).
FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10


# Decompressed digests (the Debian .gz files are recompressed, the content is upstream's).
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}


@dataclass(frozen=True)
class IdxSpec:
    """Where an IDX data set lives and what its files should hash to."""

    name: str
    system_dir: Path
    urls: tuple[str, ...]
    sha256: Mapping[str, str | None]  # decompressed file name -> hex digest, None: structure only
    system_hint: str  # how to install the files system-wide
    system_remedy: str = ""  # what to do when a file in system_dir is damaged


SPECS = {
    "mnist": IdxSpec(
        name="mnist",
        system_dir=Path("/usr/share/datasets/mnist"),
        urls=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        # We do not carry verified SHA-256 digests of the decompressed MNIST files, and an
        # invented digest would reject every good download; None means "verify structure
        # only" (IDX header and size, 28x28 images, labels 0..9, matching counts).
        sha256=dict.fromkeys(FILES.values()),
        system_hint="place the four files in /usr/share/datasets/mnist/",
        system_remedy="Replace it with a good copy, or delete the system copies so that the "
        "files are downloaded into the user cache.",
    ),
    "fashion_mnist": IdxSpec(
        name="fashion_mnist",
        system_dir=Path("/usr/share/datasets/fashion-mnist"),
        urls=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
        ),
        sha256=FASHION_MNIST_SHA256,
        system_hint="apt-get install dataset-fashion-mnist (Debian/Ubuntu)",
        system_remedy="Reinstall the system package: apt-get install --reinstall "
        "dataset-fashion-mnist (Debian/Ubuntu).",
    ),
}


def cache_dir(name: str) -> Path:
    """The user cache folder of data set ``name``: ``$ZOO_DATA_DIR/<name>`` if set, else
    ``$XDG_CACHE_HOME/zoo/<name>``, else ``~/.cache/zoo/<name>``."""
    if os.environ.get("ZOO_DATA_DIR"):
        return Path(os.environ["ZOO_DATA_DIR"]).expanduser() / name
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home).expanduser() / "zoo" / name


def _find(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """Files of FILES present in ``folder`` (plain or .gz), and the names missing there; a
    folder or an unreadable file under one of the names counts as present, so that reading
    it says what is wrong with it."""
    found, missing = {}, []
    for file_name in FILES.values():
        for candidate in (folder / file_name, folder / f"{file_name}.gz"):
            if candidate.exists():
                found[file_name] = candidate
                break
        else:
            missing.append(file_name)
    return found, missing


def _remedy(spec: IdxSpec, path: Path, root: str | os.PathLike[str] | None) -> str:
    """What a user can do about a damaged file at ``path``, by where it was found."""
    if root is not None:
        return "Replace it with a good copy, or point data.root at a folder of good copies."
    if path.parent == cache_dir(spec.name):
        return f"Delete {path} and run again: the file is then downloaded again and verified."
    return spec.system_remedy


def _read_split(images: DataFile, labels: DataFile) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = parse_idx(images.read_bytes(), images), parse_idx(labels.read_bytes(), labels)
    if x.dtype != torch.uint8 or x.shape[1:] != IMAGE_SHAPE:
        raise images.error(
            f"holds {x.dtype} of shape {tuple(x.shape)}, expected uint8 images of shape "
            f"(N, {IMAGE_SHAPE[0]}, {IMAGE_SHAPE[1]})"
        )
    if y.dtype != torch.uint8 or y.dim() != 1:
        raise labels.error(
            f"holds {y.dtype} of shape {tuple(y.shape)}, expected uint8 labels of shape (N,)"
        )
    if len(x) == 0:
        raise images.error("holds no images; each part needs at least one")
    if len(y) != len(x):
        raise labels.error(
            f"holds {len(y)} labels but {images.name} holds {len(x)} images; the counts must "
            "be equal"
        )
    if len(y) and int(y.max()) >= NUM_CLASSES:
        raise labels.error(
            f"has the label {int(y.max())}; labels must lie in 0..{NUM_CLASSES - 1}"
        )
    # (N, 28, 28) uint8 -> (N, 784) float32 in [0, 1]
    return x.reshape(len(x), -1).float() / 255.0, y.long()


def _not_found(spec: IdxSpec, looked: list[str], download_note: str) -> DataError:
    places = "\n".join(f"  - {line}" for line in looked)
    return DataError(
        f"Could not find the {spec.name} files ({', '.join(FILES.values())}, each plain or "
        f".gz). Looked in:\n{places}\n{download_note}\n"
        f"To provide them: {spec.system_hint}; or pass the folder holding them as "
        f"data.root=/path/to/folder (root= in Python); or put them in "
        f"$ZOO_DATA_DIR/{spec.name}/ (now {cache_dir(spec.name)})."
    )


def load_idx_dataset(
    spec: IdxSpec,
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
    urls: Sequence[str] | str | None = None,
    checksums: Mapping[str, str | None] | None = None,
    progress: bool | None = None,
) -> Dataset:
    """Find (or download) and read the four IDX files of ``spec``; see the module docstring."""
    if root is not None:
        folder = Path(root).expanduser()
        found, missing = _find(folder)
        if missing:
            raise DataError(
                f"{spec.name}: root={str(root)!r} lacks {', '.join(missing)} (plain or .gz). "
                f"Point root at the folder holding all four files: {', '.join(FILES.values())}."
            )
    else:
        looked = []
        cache = cache_dir(spec.name)
        found, missing = _find(cache)
        if missing:
            looked.append(f"{cache} (user cache; missing {', '.join(missing)})")
            system_found, system_missing = _find(spec.system_dir)
            if not system_missing:
                found, missing = system_found, []
            else:
                looked.append(
                    f"{spec.system_dir} (system folder; missing {', '.join(system_missing)})"
                )
        if missing:
            if not download:
                raise _not_found(spec, looked, "Download is off (download=False).")
            base_urls = [urls] if isinstance(urls, str) else list(urls or spec.urls)
            expected = {**spec.sha256, **(checksums or {})}
            try:
                for file_name in missing:
                    found[file_name] = download_from_mirrors(
                        f"{file_name}.gz",
                        cache / f"{file_name}.gz",
                        base_urls,
                        sha256=expected.get(file_name),
                        progress=progress,
                    )
            except DataError as e:
                raise _not_found(spec, looked, f"Download into {cache} failed. {e}") from e
    paths = {part: found[file_name] for part, file_name in FILES.items()}
    files = {
        part: DataFile(path, f"IDX file {path}", _remedy(spec, path, root))
        for part, path in paths.items()
    }
    train_x, train_y = _read_split(files["train_x"], files["train_y"])
    test_x, test_y = _read_split(files["test_x"], files["test_y"])
    return Dataset(
        name=spec.name,
        kind="image",
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        shape=IMAGE_SHAPE,
        num_classes=NUM_CLASSES,
        source=str(paths["train_x"].parent),
    )


class MNISTSettings(FileDataSettings):
    name: Literal["mnist"] = "mnist"
    download: bool = setting(True, "true or false (fetch missing files into the cache)", trains=False)


@register_dataset("mnist", MNISTSettings)
def load_mnist(
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
    urls: Sequence[str] | str | None = None,
    checksums: Mapping[str, str | None] | None = None,
    progress: bool | None = None,
) -> Dataset:
    """Load MNIST: 60000 train and 10000 test 28x28 images of digits, pixels in ``[0, 1]``.

    :param root: folder holding the four IDX files; if given, nothing else is searched.
    :param download: fetch missing files into the user cache (default ``True``).
    :param urls: base URL, or list of base URLs tried in turn; defaults to public mirrors.
    :param checksums: decompressed SHA-256 by file name (e.g. ``"train-images-idx3-ubyte"``),
        overriding the defaults; ``None`` for a file means "verify structure only".
    :param progress: show download progress; ``None`` shows it for files over 1 MiB.
    :raises DataError: if the files cannot be found, downloaded or validated; the message says
        where it looked and how to provide them.

    Example::

        >>> ds = load_mnist(download=False)  # doctest: +SKIP
        >>> ds.train_x.shape  # doctest: +SKIP
        torch.Size([60000, 784])
    """
    return load_idx_dataset(
        SPECS["mnist"],
        root=root,
        download=download,
        urls=urls,
        checksums=checksums,
        progress=progress,
    )


class FashionMNISTSettings(FileDataSettings):
    name: Literal["fashion_mnist"] = "fashion_mnist"
    download: bool = setting(True, "true or false (fetch missing files into the cache)", trains=False)


@register_dataset("fashion_mnist", FashionMNISTSettings)
def load_fashion_mnist(
    *,
    root: str | os.PathLike[str] | None = None,
    download: bool = True,
    urls: Sequence[str] | str | None = None,
    checksums: Mapping[str, str | None] | None = None,
    progress: bool | None = None,
) -> Dataset:
    """Load Fashion-MNIST: 60000 train and 10000 test 28x28 images of clothing, in ``[0, 1]``.

    Takes the same options as :func:`load_mnist`; on Debian/Ubuntu
    ``apt-get install dataset-fashion-mnist`` provides the files offline.

    Example::

        >>> ds = load_fashion_mnist(download=False)  # doctest: +SKIP
        >>> ds.test_x.shape, ds.source  # doctest: +SKIP
        (torch.Size([10000, 784]), '/usr/share/datasets/fashion-mnist')
    """
    return load_idx_dataset(
        SPECS["fashion_mnist"],
        root=root,
        download=download,
        urls=urls,
        checksums=checksums,
        progress=progress,
    )

"""The `Dataset` record, the data error, and the registry of loaders by name.

A loader is a plain function that returns a `Dataset` whose tensors are already in memory;
`load_dataset` looks the loader up by name and checks the options before calling it, so a
misspelt option in a config fails with the list of valid ones rather than a bare TypeError.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from pydantic import field_validator

from zoo.data.reading import SHIPPED_REMEDY, DataFile
from zoo.errors import DataError
from zoo.schema import Settings, setting


@dataclass(frozen=True)
class Dataset:
    """A data set held in memory as flat tensors, split into train and test parts.

    :param name: registry name, e.g. ``"digits"``.
    :param kind: ``"image"``, ``"tabular"`` or ``"regression"``. Tabular data are rows of
        ``D`` real features, possibly standardized (see ``mean`` and ``std``); their labels,
        where there are any, are classes such as the true components of a synthetic mixture.
    :param train_x: float32 tensor of shape ``(N_train, D)``; images are flattened and scaled
        to ``[0, 1]``.
    :param train_y: int64 labels of shape ``(N_train,)``; for ``kind="regression"`` float32
        targets of shape ``(N_train,)`` or ``(N_train, 1)``; ``None`` for unlabelled data.
    :param test_x: float32 tensor of shape ``(N_test, D)``.
    :param test_y: like ``train_y``, for the test rows.
    :param shape: shape of one item before flattening, e.g. ``(8, 8)``.
    :param num_classes: number of label values, or ``None`` (regression, unlabelled data).
    :param source: where the data came from (a path or URL), for reports.
    :param feature_names: names of the ``D`` features (tabular data), or ``None``.
    :param mean: for standardized data, the per-feature mean (shape ``(D,)``) that was
        subtracted; the original values are ``x * std + mean``. ``None`` if not standardized.
    :param std: for standardized data, the per-feature scale that was divided by, or ``None``.
    :param truth: for synthetic data, the parameters that generated it (tensors, in the
        units of ``x``), e.g. ``{"weights", "locs", "scales"}`` of a mixture; else ``None``.

    Example::

        >>> ds = load_dataset("digits")
        >>> ds.train_x.shape, ds.num_features
        (torch.Size([1437, 64]), 64)
    """

    name: str
    kind: str
    train_x: torch.Tensor
    train_y: torch.Tensor | None
    test_x: torch.Tensor
    test_y: torch.Tensor | None
    shape: tuple[int, ...]
    num_classes: int | None
    source: str
    feature_names: tuple[str, ...] | None = None
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None
    truth: dict[str, torch.Tensor] | None = None

    @property
    def num_features(self) -> int:
        """Number of features ``D`` of one flattened item."""
        return self.train_x.shape[1]

    def to(self, device: torch.device | str) -> Dataset:
        """Return a copy with every tensor moved to ``device``."""

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return dataclasses.replace(
            self,
            train_x=move(self.train_x),
            train_y=move(self.train_y),
            test_x=move(self.test_x),
            test_y=move(self.test_y),
            mean=move(self.mean),
            std=move(self.std),
            truth=None if self.truth is None else {k: move(v) for k, v in self.truth.items()},
        )

    def original_units(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (rows in the units of ``train_x``) in the data's original units."""
        if self.mean is None:
            return x
        return x * self.std + self.mean


class DataSettings(Settings):
    """The settings of a data set in the ``data`` config group: its name and the keyword
    options of its loader. Each loader declares a subclass beside it."""

    name: str = setting(..., "the name of a registered data set")


class FileDataSettings(DataSettings):
    """Settings of a data set read from files, which may be looked up in ``root``."""

    # where the files are does not change the numbers (a checksum or a parser checks them)
    root: str | None = setting(
        None,
        "an existing folder that holds the data files, or null to look in the usual places",
        trains=False,
    )

    @field_validator("root")
    @classmethod
    def _existing_folder(cls, root: str | None) -> str | None:
        if root is not None and not Path(root).expanduser().is_dir():
            raise ValueError(
                "it must be an existing folder that holds the data files, or null to look in "
                "the cache and system folders"
            )
        return root


DATASETS: dict[str, Callable[..., Dataset]] = {}
#: each data set's settings class, by name (a loader registered without one has none)
DATASET_SETTINGS: dict[str, type[DataSettings]] = {}


def register_dataset(
    name: str, settings: type[DataSettings] | None = None
) -> Callable[[Callable[..., Dataset]], Callable[..., Dataset]]:
    """Decorator that adds a loader to :data:`DATASETS` under ``name``, and its settings
    class, if given, to :data:`DATASET_SETTINGS` (the config is checked against it before
    anything is loaded).

    The loader takes keyword options (``root`` among them if it reads files) and returns a
    :class:`Dataset`.

    Example::

        >>> @register_dataset("ones")
        ... def load_ones(*, root=None, n=4):
        ...     x = torch.ones(n, 2)
        ...     return Dataset("ones", "tabular", x, None, x, None, (2,), None, "generated")
    """

    def decorator(loader: Callable[..., Dataset]) -> Callable[..., Dataset]:
        previous = DATASETS.get(name)
        # Re-importing a module (e.g. importlib.reload) registers the same function again.
        if previous is not None and previous.__qualname__ != loader.__qualname__:
            raise ValueError(
                f"data set name {name!r} is already registered to "
                f"{previous.__module__}.{previous.__qualname__}"
            )
        DATASETS[name] = loader
        if settings is not None:
            DATASET_SETTINGS[name] = settings
        return loader

    return decorator


def load_dataset(
    name: str, *, root: str | os.PathLike[str] | None = None, **options: object
) -> Dataset:
    """Load the data set registered under ``name``.

    :param name: a key of :data:`DATASETS` (``"digits"``, ``"mnist"``, ``"fashion_mnist"``,
        ...); hyphens are read as underscores.
    :param root: folder to read the files from; by default each loader searches its usual
        places (see the loader's docstring).
    :param options: further keyword options of the loader, e.g. ``download=False``.
    :raises DataError: for an unknown name or option, or when the data cannot be loaded.

    Example::

        >>> ds = load_dataset("digits")
        >>> ds.test_x.shape
        torch.Size([360, 64])
    """
    key = str(name).replace("-", "_")
    if key not in DATASETS:
        raise DataError(
            f"Unknown data set {name!r}. Valid names are: {', '.join(sorted(DATASETS))}."
        )
    loader = DATASETS[key]
    if root is not None:
        options["root"] = root
    parameters = inspect.signature(loader).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    unknown = [k for k in options if k not in parameters]
    if unknown and not takes_any:
        valid = [k for k, p in parameters.items() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        raise DataError(
            f"Data set {key!r} does not take option(s) {', '.join(map(repr, unknown))}. "
            f"Valid options are: {', '.join(valid) or '(none)'}."
        )
    return loader(**options)


def shipped_file(file_name: str, root: str | os.PathLike | None = None) -> DataFile:
    """A data file shipped in ``zoo/data/files`` or, with ``root``, the file of that name in
    ``root`` (``~`` expanded), to read with :class:`~zoo.data.reading.DataFile`'s readers.

    :raises DataError: if ``root`` is given and holds no such file.
    """
    if root is None:
        resource = resources.files("zoo.data") / "files" / file_name
        name = f"zoo.data/files/{file_name} (shipped with the package)"
        return DataFile(resource, name, SHIPPED_REMEDY)
    path = Path(root).expanduser() / file_name
    if not path.exists():  # a folder or an unreadable file is named by the reader
        raise DataError(
            f"{path} does not exist; root={str(root)!r} should be a folder holding "
            f"{file_name}, or leave root unset to use the copy shipped with the package."
        )
    return DataFile(
        path,
        str(path),
        "Replace it with a good copy, or leave data.root unset to use the copy shipped with "
        "the package.",
    )

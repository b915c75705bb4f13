"""The 8x8 handwritten digits shipped inside the package: the default, offline data set.

``files/digits.csv.gz`` holds 1797 rows of 64 pixel counts (0..16) then the label, no header
(UCI optical recognition of handwritten digits, as shipped by scikit-learn; see ``NOTICE``).
The train/test split is a fixed permutation from a fixed seed, so every run sees the same split.
"""

from __future__ import annotations

import math
import os
from typing import Literal

import torch

from zoo.data.base import Dataset, FileDataSettings, register_dataset, shipped_file
from zoo.data.reading import DataFile

FILE_NAME = "digits.csv.gz"
NUM_ROWS = 1797
NUM_TRAIN = 1437  # 80 % of 1797, rounded down
IMAGE_SHAPE = (8, 8)
MAX_COUNT = 16  # each pixel counts set bits in a 4x4 block of the original 32x32 bitmap
SPLIT_SEED = 20_240_601


def _parse(file: DataFile) -> tuple[torch.Tensor, torch.Tensor]:
    width = math.prod(IMAGE_SHAPE) + 1
    values: list[list[float]] = []
    for row_number, row in file.csv_rows():
        where = f"row {row_number}"
        if len(row) != width:
            raise file.error(
                f"expected {width} comma-separated values (64 pixel counts then the label), "
                f"found {len(row)}",
                where,
            )
        numbers = file.finite_numbers(row, where)
        if not all(0 <= v <= MAX_COUNT for v in numbers[:-1]):
            raise file.error(f"pixel counts must lie in [0, {MAX_COUNT}]", where)
        if numbers[-1] not in range(10):
            raise file.error(f"label must be an integer 0..9, found {row[-1]!r}", where)
        values.append(numbers)
    if len(values) != NUM_ROWS:
        raise file.error(f"has {len(values)} rows, expected {NUM_ROWS}")
    table = torch.tensor(values, dtype=torch.float64)
    return (table[:, :-1] / MAX_COUNT).float(), table[:, -1].long()


class DigitsSettings(FileDataSettings):
    name: Literal["digits"] = "digits"


@register_dataset("digits", DigitsSettings)
def load_digits(*, root: str | os.PathLike[str] | None = None) -> Dataset:
    """Load the 8x8 digits: 1437 train and 360 test images, pixels in ``[0, 1]``.

    :param root: folder holding a ``digits.csv.gz`` to read instead of the shipped copy.
    :raises DataError: if the file cannot be read, is not gzip-compressed UTF-8 CSV, or has a
        wrong column count, a value out of range, a NaN or an infinity.

    Example::

        >>> ds = load_digits()
        >>> ds.train_x.shape, ds.test_y.shape, ds.shape
        (torch.Size([1437, 64]), torch.Size([360]), (8, 8))
    """
    file = shipped_file(FILE_NAME, root)
    x, y = _parse(file)

    generator = torch.Generator().manual_seed(SPLIT_SEED)
    order = torch.randperm(NUM_ROWS, generator=generator)
    train, test = order[:NUM_TRAIN], order[NUM_TRAIN:]
    return Dataset(
        name="digits",
        kind="image",
        train_x=x[train],
        train_y=y[train],
        test_x=x[test],
        test_y=y[test],
        shape=IMAGE_SHAPE,
        num_classes=10,
        source=file.name,
    )

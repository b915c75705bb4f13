"""The 8x8 handwritten digits shipped inside the package: the default, offline data set.

``files/digits.csv.gz`` holds 1797 rows of 64 pixel counts (0..16) then the label, no header
(UCI optical recognition of handwritten digits, as shipped by scikit-learn; see ``NOTICE``).
The train/test split is a fixed permutation from a fixed seed, so every run sees the same split.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import os

import torch

from zoo.data.base import DataError, Dataset, register_dataset, shipped_file

FILE_NAME = "digits.csv.gz"
NUM_ROWS = 1797
NUM_TRAIN = 1437  # 80 % of 1797, rounded down
IMAGE_SHAPE = (8, 8)
MAX_COUNT = 16  # each pixel counts set bits in a 4x4 block of the original 32x32 bitmap
SPLIT_SEED = 20_240_601


def _parse(text: io.TextIOBase, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    width = math.prod(IMAGE_SHAPE) + 1
    values: list[list[float]] = []
    for row_number, row in enumerate(csv.reader(text), start=1):
        if len(row) != width:
            raise DataError(
                f"{name}, row {row_number}: expected {width} comma-separated values "
                f"(64 pixel counts then the label), found {len(row)}."
            )
        try:
            numbers = [float(v) for v in row]
        except ValueError as e:
            raise DataError(f"{name}, row {row_number}: not a number ({e}).") from e
        if not all(0 <= v <= MAX_COUNT for v in numbers[:-1]):  # also false for NaN
            raise DataError(
                f"{name}, row {row_number}: pixel counts must lie in [0, {MAX_COUNT}] "
                "(NaN is not allowed)."
            )
        if numbers[-1] not in range(10):
            raise DataError(
                f"{name}, row {row_number}: label must be an integer 0..9, found {row[-1]!r}."
            )
        values.append(numbers)
    if len(values) != NUM_ROWS:
        raise DataError(f"{name}: expected {NUM_ROWS} rows, found {len(values)}.")
    table = torch.tensor(values, dtype=torch.float64)
    return (table[:, :-1] / MAX_COUNT).float(), table[:, -1].long()


@register_dataset("digits")
def load_digits(*, root: str | os.PathLike[str] | None = None) -> Dataset:
    """Load the 8x8 digits: 1437 train and 360 test images, pixels in ``[0, 1]``.

    :param root: folder holding a ``digits.csv.gz`` to read instead of the shipped copy.
    :raises DataError: if the file has a wrong column count, a value out of range or a NaN.

    Example::

        >>> ds = load_digits()
        >>> ds.train_x.shape, ds.test_y.shape, ds.shape
        (torch.Size([1437, 64]), torch.Size([360]), (8, 8))
    """
    resource, source = shipped_file(FILE_NAME, root)
    try:
        with resource.open("rb") as raw, gzip.open(raw, "rt", newline="") as text:
            x, y = _parse(text, source)
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise DataError(f"{source} is not a readable gzip-compressed CSV file: {e}.") from e

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
        source=source,
    )

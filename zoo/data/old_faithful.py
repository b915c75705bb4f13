"""Old Faithful geyser eruptions, shipped inside the package: the GMM's default data set.

``files/old_faithful.csv`` holds 272 rows of eruption length (minutes) and waiting time to the
next eruption (minutes) with a header (R ``datasets::faithful``; see ``NOTICE``). The rows are
split by a fixed permutation from a fixed seed, and standardized with the training part's mean
and standard deviation; the :class:`~zoo.data.Dataset` keeps both, so models can report in
minutes.
"""

from __future__ import annotations

import os
from typing import Literal

import torch
from pydantic import model_validator

from zoo.data.base import DataError, Dataset, FileDataSettings, register_dataset, shipped_file
from zoo.data.reading import DataFile
from zoo.schema import SettingError, setting

FILE_NAME = "old_faithful.csv"
FEATURES = ("eruptions", "waiting")
NUM_ROWS = 272
SPLIT_SEED = 19_900_101


def _parse(file: DataFile) -> torch.Tensor:
    lines = file.csv_rows()
    _, header = next(lines, (1, None))
    if header is None or tuple(h.strip() for h in header) != FEATURES:
        raise file.error(f"has the header {header!r}, expected {','.join(FEATURES)}")
    rows = []
    for line_number, row in lines:
        values = file.finite_numbers(row, f"line {line_number}")
        if len(values) != 2 or not all(v > 0 for v in values):
            raise file.error(f"expected two positive numbers, found {row}", f"line {line_number}")
        rows.append(values)
    if len(rows) != NUM_ROWS:
        raise file.error(f"has {len(rows)} rows, expected {NUM_ROWS}")
    return torch.tensor(rows, dtype=torch.float64)


def _test_rows(test_fraction: float, folds: int | None, fold: int) -> slice:
    """Positions in the fixed permutation that form the test part."""
    if folds is None:
        if not 0 < test_fraction < 1:
            raise DataError(
                f"test_fraction = {test_fraction!r} is not valid: it must lie in (0, 1)."
            )
        return slice(0, round(test_fraction * NUM_ROWS))
    if not (isinstance(folds, int) and 2 <= folds <= NUM_ROWS):
        raise DataError(
            f"folds = {folds!r} is not valid: it must be an integer from 2 to {NUM_ROWS}."
        )
    if not (isinstance(fold, int) and 0 <= fold < folds):
        raise DataError(
            f"fold = {fold!r} is not valid with folds = {folds}: it must be 0 to {folds - 1}."
        )
    # fold f holds positions [f N / folds, (f + 1) N / folds): the parts differ by one row at most
    return slice(fold * NUM_ROWS // folds, (fold + 1) * NUM_ROWS // folds)


class OldFaithfulSettings(FileDataSettings):
    name: Literal["old_faithful"] = "old_faithful"
    test_fraction: float = setting(0.2, "a number in (0, 1)", gt=0.0, lt=1.0)
    folds: int | None = setting(
        None, f"an integer from 2 to {NUM_ROWS}, or null for one split", ge=2, le=NUM_ROWS
    )
    fold: int = setting(0, "an integer from 0 to folds - 1", ge=0)

    @model_validator(mode="after")
    def _fold_in_range(self) -> OldFaithfulSettings:
        if self.folds is not None and self.fold >= self.folds:
            raise SettingError("fold", self.fold, f"it must be 0 to {self.folds - 1} with folds = {self.folds}")
        return self


@register_dataset("old_faithful", OldFaithfulSettings)
def load_old_faithful(
    *,
    root: str | os.PathLike[str] | None = None,
    test_fraction: float = 0.2,
    folds: int | None = None,
    fold: int = 0,
) -> Dataset:
    """Load Old Faithful: 2 features (eruption length and waiting time, minutes), standardized.

    :param root: folder holding an ``old_faithful.csv`` to read instead of the shipped copy.
    :param test_fraction: share of the 272 rows held out for testing (a fixed split per value).
    :param folds: for cross-validation: cut the fixed permutation into this many parts of
        (nearly) equal size; ``test_fraction`` is then unused.
    :param fold: with ``folds``, which part (0 to folds - 1) is held out for testing.
    :raises DataError: if the file has a wrong header, a non-positive value or a NaN, or the
        split settings are out of range.

    Example::

        >>> ds = load_old_faithful()
        >>> ds.train_x.shape, ds.test_x.shape, ds.feature_names
        (torch.Size([218, 2]), torch.Size([54, 2]), ('eruptions', 'waiting'))
    """
    test_rows = _test_rows(test_fraction, folds, fold)
    file = shipped_file(FILE_NAME, root)
    x = _parse(file)

    order = torch.randperm(NUM_ROWS, generator=torch.Generator().manual_seed(SPLIT_SEED))
    is_test = torch.zeros(NUM_ROWS, dtype=torch.bool)
    is_test[test_rows] = True
    train, test = x[order[~is_test]], x[order[is_test]]
    mean, std = train.mean(0), train.std(0)
    return Dataset(
        name="old_faithful",
        kind="tabular",
        train_x=((train - mean) / std).float(),
        train_y=None,
        test_x=((test - mean) / std).float(),
        test_y=None,
        shape=(2,),
        num_classes=None,
        source=file.name,
        feature_names=FEATURES,
        mean=mean.float(),
        std=std.float(),
    )

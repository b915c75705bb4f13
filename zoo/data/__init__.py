"""Data sets as in-memory tensors, looked up by name.

Example::

    >>> from zoo.data import load_dataset
    >>> ds = load_dataset("digits")
    >>> ds.train_x.shape, ds.num_classes
    (torch.Size([1437, 64]), 10)
"""

from zoo.data.base import DATASETS, DataError, Dataset, load_dataset, register_dataset
from zoo.data.idx import read_idx, write_idx

# Imported for their side effect: each registers its loaders in DATASETS.
from zoo.data import digits, mnist, old_faithful, synthetic_gmm, toy  # noqa: F401  isort: skip

__all__ = [
    "DATASETS",
    "DataError",
    "Dataset",
    "load_dataset",
    "read_idx",
    "register_dataset",
    "write_idx",
]

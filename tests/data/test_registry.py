import pytest
import torch

from zoo.data import DATASETS, DataError, Dataset, load_dataset, register_dataset


def test_unknown_name_lists_the_valid_names():
    with pytest.raises(DataError, match="Unknown data set 'nope'") as info:
        load_dataset("nope")
    for name in ("digits", "mnist", "fashion_mnist"):
        assert name in str(info.value)


def test_unknown_option_lists_the_valid_options():
    with pytest.raises(DataError, match="'bogus'.*Valid options are: root, download"):
        load_dataset("mnist", bogus=1)


def test_register_dataset_adds_a_loader():
    calls = []

    @register_dataset("ones_for_test")
    def load_ones(*, root=None, n=3):
        calls.append(root)
        x = torch.ones(n, 2)
        return Dataset("ones_for_test", "tabular", x, None, x, None, (2,), None, "generated")

    try:
        ds = load_dataset("ones_for_test", root="/somewhere", n=5)
        assert ds.train_x.shape == (5, 2) and ds.num_features == 2
        assert calls == ["/somewhere"]
        with pytest.raises(ValueError, match="already registered"):
            register_dataset("ones_for_test")(lambda: None)
    finally:
        DATASETS.pop("ones_for_test")

"""Old Faithful (shipped) and the synthetic Gaussian mixtures."""

import pytest
import torch

from zoo.data import DataError, load_dataset


def test_old_faithful_is_standardized_and_goes_back_to_minutes():
    ds = load_dataset("old_faithful")
    assert (ds.kind, ds.train_x.shape, ds.test_x.shape) == ("tabular", (218, 2), (54, 2))
    assert ds.feature_names == ("eruptions", "waiting")
    assert torch.allclose(ds.train_x.mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(ds.train_x.std(0), torch.ones(2), atol=1e-5)
    minutes = torch.cat([ds.original_units(ds.train_x), ds.original_units(ds.test_x)])
    assert minutes[:, 0].min() == pytest.approx(1.6, abs=1e-3)  # the shortest eruption
    assert minutes[:, 1].max() == pytest.approx(96.0, abs=1e-3)  # the longest wait
    again = load_dataset("old_faithful")
    assert torch.equal(ds.test_x, again.test_x)  # a fixed split


def test_old_faithful_reads_a_folder_and_names_a_bad_file(tmp_path):
    (tmp_path / "old_faithful.csv").write_text("eruptions,waiting\n3.6,79\n")
    with pytest.raises(DataError, match="has 1 rows, expected 272"):
        load_dataset("old_faithful", root=tmp_path)
    (tmp_path / "old_faithful.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="has the header .* expected eruptions,waiting"):
        load_dataset("old_faithful", root=tmp_path)


def _minutes(ds, part):
    return getattr(ds, part) * ds.std + ds.mean


def _sorted_rows(x):
    rounded = x.round(decimals=2)
    return rounded[(rounded[:, 0] * 1000 + rounded[:, 1]).argsort()]


def test_old_faithful_folds_hold_out_every_row_once_and_fold_0_is_the_default_split():
    folds = [load_dataset("old_faithful", folds=5, fold=k) for k in range(5)]
    held_out = torch.cat([_minutes(ds, "test_x") for ds in folds])
    assert [len(ds.test_x) for ds in folds] == [54, 54, 55, 54, 55]
    default = load_dataset("old_faithful")
    everything = torch.cat([_minutes(default, "train_x"), _minutes(default, "test_x")])
    # the same rows as the file, each held out once: equal as multisets of rows
    assert torch.allclose(_sorted_rows(held_out), _sorted_rows(everything), atol=1e-3)
    for ds in folds:  # a fold's training rows are the other folds' test rows
        assert len(ds.train_x) + len(ds.test_x) == 272
    assert torch.equal(folds[0].test_x, default.test_x)
    assert torch.equal(folds[0].train_x, default.train_x)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"folds": 1}, "folds = 1 is not valid"),
        ({"folds": 5, "fold": 5}, "fold = 5 is not valid with folds = 5: it must be 0 to 4"),
        ({"folds": 5, "fold": -1}, "fold = -1 is not valid"),
    ],
)
def test_old_faithful_refuses_folds_out_of_range(options, message):
    with pytest.raises(DataError, match=message):
        load_dataset("old_faithful", **options)


def test_synthetic_mixture_is_seeded_labelled_and_separated():
    ds = load_dataset("synthetic_gmm", n=20_000, components=4, dims=3, separation=5.0, seed=2)
    again = load_dataset("synthetic_gmm", n=20_000, components=4, dims=3, separation=5.0, seed=2)
    assert torch.equal(ds.train_x, again.train_x) and torch.equal(ds.test_y, again.test_y)
    assert (ds.train_x.shape, ds.test_x.shape, ds.num_classes) == ((16_000, 3), (4_000, 3), 4)
    truth = ds.truth
    distances = torch.cdist(truth["locs"], truth["locs"]) + 1e9 * torch.eye(4)
    assert distances.min() >= 5.0 * truth["scales"].max()
    share = torch.bincount(ds.train_y, minlength=4).float() / len(ds.train_y)
    assert torch.allclose(share, truth["weights"], atol=0.02)
    x0 = ds.train_x[ds.train_y == 0]
    assert torch.allclose(x0.mean(0), truth["locs"][0], atol=0.1)
    assert torch.allclose(x0.std(0), truth["scales"][0], atol=0.1)
    other = load_dataset("synthetic_gmm", n=20_000, components=4, dims=3, separation=5.0, seed=3)
    assert not torch.equal(ds.truth["locs"], other.truth["locs"])


def test_synthetic_mixture_refuses_bad_options():
    with pytest.raises(DataError, match="n = 0"):
        load_dataset("synthetic_gmm", n=0)
    with pytest.raises(DataError, match="test_fraction"):
        load_dataset("synthetic_gmm", test_fraction=1.5)

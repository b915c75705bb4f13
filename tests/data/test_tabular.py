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
    with pytest.raises(DataError, match="expected 272 rows"):
        load_dataset("old_faithful", root=tmp_path)
    (tmp_path / "old_faithful.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="expected the header"):
        load_dataset("old_faithful", root=tmp_path)


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

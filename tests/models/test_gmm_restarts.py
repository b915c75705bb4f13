"""The GMM's start: Lloyd iterations by hand, guide widths of a posterior of n_k points,
successive halving over the starts (who trains how long, who is kept), and full-batch steps."""

import math

import pyro
import pytest
import torch

from zoo.data import load_dataset
from zoo.models import GMM
from zoo.models.gmm import initial_components, lloyd
from zoo.optim import Adam
from zoo.train import Trainer, TrainSettings


def test_lloyd_moves_each_mean_to_the_centroid_of_its_nearest_rows():
    x = torch.tensor([[0.0], [1.0], [2.0], [10.0], [12.0]])
    locs = torch.tensor([[0.0], [9.0], [100.0]])
    # nearest to 0: 0, 1, 2 -> 1; nearest to 9: 10, 12 -> 11; nothing nearest 100: it stays
    assert torch.equal(lloyd(x, locs, 1), torch.tensor([[1.0], [11.0], [100.0]]))
    # from (1, 11) the assignment no longer changes
    assert torch.equal(lloyd(x, locs, 5), lloyd(x, locs, 1))
    assert torch.equal(lloyd(x, locs, 0), locs)


def test_initial_components_come_from_the_rows_nearest_the_moved_means():
    pyro.set_rng_seed(0)
    x = load_dataset("synthetic_gmm", n=4000, components=3, seed=2).train_x
    start = initial_components(x, 3, iterations=20)
    nearest = torch.cdist(x, start["locs"]).argmin(-1)
    for j in range(3):
        rows = x[nearest == j]
        assert torch.allclose(start["locs"][j], rows.mean(0), atol=1e-5)  # a Lloyd fixed point
        assert torch.allclose(start["scales"][j], rows.std(0), atol=1e-5)
    counts = torch.bincount(nearest, minlength=3).float()
    assert torch.allclose(start["weights"], (counts + 1) / (len(x) + 3))


def test_a_start_for_n_points_has_the_widths_of_a_posterior_of_that_many():
    model = GMM(2, 2)
    start = {
        "weights": torch.tensor([0.25, 0.75]),
        "locs": torch.tensor([[0.0, 1.0], [2.0, 3.0]]),
        "scales": torch.tensor([[1.0, 2.0], [0.5, 4.0]]),
    }
    model.start_at(start, num_points=400)  # 100 and 300 points
    guide = model.posterior
    locs, scales = guide.distribution("locs"), guide.distribution("scales")
    assert torch.allclose(locs.base_dist.loc, start["locs"])
    expected_sd = start["scales"] / torch.tensor([[10.0], [math.sqrt(300)]])
    assert torch.allclose(locs.base_dist.scale, expected_sd, rtol=1e-5)
    # the LogNormal's parameters are those of log(scale): sd 1 / sqrt(2 n_k)
    assert torch.allclose(scales.base_dist.loc, start["scales"].log(), atol=1e-6)
    expected_log_sd = torch.tensor([[1 / math.sqrt(200)] * 2, [1 / math.sqrt(600)] * 2])
    assert torch.allclose(scales.base_dist.scale, expected_log_sd, rtol=1e-5)
    concentration = guide.distribution("weights").concentration
    assert torch.allclose(concentration, start["weights"] * (400 + 2), rtol=1e-5)
    # a component with almost no points is as wide as one point's posterior, not infinite
    model.start_at({**start, "weights": torch.tensor([1e-9, 1.0])}, num_points=400)
    sd = guide.distribution("locs").base_dist.scale
    assert torch.allclose(sd[0], start["scales"][0], rtol=1e-5)


def collapsed(x, k):
    """A start with every mean at the data's centre: a poor one."""
    return {
        "weights": torch.full((k,), 1.0 / k),
        "locs": x.mean(0).expand(k, -1).clone() + 1e-3 * torch.randn(k, x.shape[1]),
        "scales": x.std(0).expand(k, -1).clone(),
    }


def test_successive_halving_drops_the_worse_half_each_round_and_keeps_the_best():
    pyro.set_rng_seed(0)
    x = load_dataset("synthetic_gmm", n=3000, components=3, seed=1).train_x
    model = GMM(2, 3, loc_spread=2 * x.std(0), scale_median=0.5 * x.std(0))
    good = initial_components(x, 3, iterations=10)
    starts = [collapsed(x, 3), collapsed(x, 3), good, collapsed(x, 3)]
    calls = []  # (steps, locs before, locs after, score) of each call
    inner = model._train_and_score
    guide_locs = lambda: model.posterior.distribution("locs").base_dist.loc.detach().clone()  # noqa: E731

    def spy(x, steps, *args):
        before = guide_locs()
        score = inner(x, steps, *args)
        calls.append((steps, before, guide_locs(), score))
        return score

    model._train_and_score = spy
    elbos = model.restart(x, starts, steps=5, batch_size=256, lr=0.05)
    # round 1: the 4 starts, 5 steps each; round 2: the better 2, 5 more each; then 1 is left
    assert [c[0] for c in calls] == [5] * 6
    assert all(torch.equal(c[1], s["locs"]) for c, s in zip(calls, starts))
    first = sorted(range(4), key=lambda i: -calls[i][3])
    resumed = [
        next(i for i in range(4) if torch.equal(calls[i][2], c[1])) for c in calls[4:]
    ]  # each round-2 call continues where a round-1 start ended
    assert sorted(resumed) == sorted(first[:2])
    winner = resumed[max(range(2), key=lambda j: calls[4 + j][3])]
    assert model.restart_index == winner == 2  # the k-means start
    assert torch.equal(guide_locs(), calls[4 + resumed.index(winner)][2])
    assert elbos[2] == max(elbos) and all(math.isfinite(e) for e in elbos)
    locs = model.posterior_mean()["locs"]
    assert torch.cdist(locs, locs).max() > 2 * x.std(0).min()


def test_without_steps_the_starts_are_ranked_as_they_are_in_one_round():
    pyro.set_rng_seed(0)
    x = load_dataset("synthetic_gmm", n=3000, components=3, seed=1).train_x
    model = GMM(2, 3, loc_spread=2 * x.std(0), scale_median=0.5 * x.std(0))
    starts = [collapsed(x, 3), initial_components(x, 3, iterations=10), collapsed(x, 3)]
    calls = []
    inner = model._train_and_score
    model._train_and_score = lambda x, steps, *a: calls.append(steps) or inner(x, steps, *a)
    elbos = model.restart(x, starts, steps=0, batch_size=256, lr=0.05)
    assert calls == [0, 0, 0] and model.restart_index == 1 and elbos[1] == max(elbos)


def test_a_lone_start_is_scored_not_trained():
    x = load_dataset("synthetic_gmm", n=1000, components=2, seed=1).train_x
    model = GMM(2, 2)
    calls = []
    inner = model._train_and_score
    model._train_and_score = lambda x, steps, *a: calls.append(steps) or inner(x, steps, *a)
    model.restart(x, [initial_components(x, 2)], steps=50, batch_size=100, lr=0.05)
    assert calls == [0] and model.restart_index == 0


def test_a_start_with_a_non_finite_elbo_drops_out_and_all_non_finite_is_refused():
    x = load_dataset("synthetic_gmm", n=1000, components=2, seed=1).train_x
    model = GMM(2, 2)
    good = initial_components(x, 2)
    bad = {**good, "locs": torch.full_like(good["locs"], math.nan)}
    with pyro.validation_enabled(False):  # as in training: a NaN reaches the ELBO
        model.restart(x, [bad, good], steps=0, batch_size=100, lr=0.05)
        assert model.restart_index == 1 and math.isnan(model.restart_elbos[0])
        with pytest.raises(ValueError, match="every restart ended with a non-finite ELBO"):
            model.restart(x, [bad, bad], steps=0, batch_size=100, lr=0.05)


def test_a_null_batch_size_takes_full_batch_steps():
    data = load_dataset("old_faithful")
    pyro.set_rng_seed(0)
    model = GMM.build(data, restarts=1, restart_steps=0)
    settings = TrainSettings(epochs=3, batch_size=None, progress=False)
    trainer = Trainer(model, data, Adam({"lr": 0.01}), settings)
    assert trainer.batch_size == len(data.train_x) and trainer.steps_per_epoch == 1
    seen = []
    step = trainer.svi.step
    trainer.svi.step = lambda x, **kw: seen.append(len(x)) or step(x, **kw)
    trainer.fit()
    assert seen == [len(data.train_x)] * 3
    # the per-point loss of a full batch is the full data's negative ELBO per point
    assert trainer.history[-1]["train/loss"] == pytest.approx(
        model.elbo().loss(model.model, model.guide, data.train_x) / len(data.train_x), rel=0.05
    )


@pytest.mark.parametrize("full", [False, True])
def test_em_refinement_takes_the_steps_of_scikit_learns_em_from_the_same_start(full):
    from sklearn.mixture import GaussianMixture

    from zoo.models.gmm import em_refined

    torch.manual_seed(0)
    x = load_dataset("old_faithful").train_x.double()
    start = initial_components(x, 2, iterations=2)
    refined = em_refined(x, start, 15, full=full)
    kind = "full" if full else "diag"
    if full:
        cov = torch.diag_embed(start["scales"]) @ start["corr_cholesky"]
        precision = torch.linalg.inv(cov @ cov.transpose(-1, -2))
    else:
        precision = start["scales"].pow(-2)
    reference = GaussianMixture(
        2,
        covariance_type=kind,
        weights_init=(start["weights"] / start["weights"].sum()).numpy(),
        means_init=start["locs"].numpy(),
        precisions_init=precision.numpy(),
        max_iter=15,
        tol=0.0,
        reg_covar=0.0,
    ).fit(x.numpy())
    assert torch.allclose(refined["weights"], torch.from_numpy(reference.weights_), atol=1e-6)
    assert torch.allclose(refined["locs"], torch.from_numpy(reference.means_), atol=1e-6)
    covariances = torch.from_numpy(reference.covariances_)
    scales = (covariances.diagonal(dim1=-2, dim2=-1) if full else covariances).sqrt()
    assert torch.allclose(refined["scales"], scales, atol=1e-5)
    if full:  # the correlations, shrunk by 1e-3 towards the identity
        corr = covariances / (scales.unsqueeze(-1) * scales.unsqueeze(-2))
        tril = refined["corr_cholesky"]
        assert torch.allclose(
            tril @ tril.transpose(-1, -2), 0.999 * corr + 1e-3 * torch.eye(2), atol=1e-5
        )

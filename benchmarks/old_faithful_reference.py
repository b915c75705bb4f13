"""Maximum-likelihood references for the Old Faithful table, fitted to all 272 rows.

- 2-D, two components, diagonal and full covariances: scikit-learn's GaussianMixture (EM,
  20 starts).
- 1-D waiting time, two components with one shared sd: EM written out below, from many
  starts, keeping the best log-likelihood.

    python benchmarks/old_faithful_reference.py
"""

import numpy as np
from sklearn.mixture import GaussianMixture

from zoo.data.old_faithful import load_old_faithful


def raw_rows() -> np.ndarray:
    """All 272 rows in minutes: the training and test parts, unstandardized."""
    ds = load_old_faithful()
    standardized = np.concatenate([ds.train_x.numpy(), ds.test_x.numpy()])
    return standardized * ds.std.numpy() + ds.mean.numpy()


def equal_sd_em(x: np.ndarray, starts: int = 50, steps: int = 2000) -> tuple:
    rng = np.random.default_rng(0)
    best = None
    for _ in range(starts):
        w, mu, sd = 0.5, np.sort(rng.choice(x, 2, replace=False)), x.std()
        for _ in range(steps):
            dens = np.stack([(1 - w), w])[:, None] * np.exp(-0.5 * ((x - mu[:, None]) / sd) ** 2)
            resp = dens / dens.sum(0)
            w = resp[1].mean()
            mu = (resp * x).sum(1) / resp.sum(1)
            sd = np.sqrt((resp * (x - mu[:, None]) ** 2).sum() / len(x))
        weights = np.array([1 - w, w])
        log_lik = np.log(
            (
                weights[:, None]
                / (sd * np.sqrt(2 * np.pi))
                * np.exp(-0.5 * ((x - mu[:, None]) / sd) ** 2)
            ).sum(0)
        ).sum()
        if best is None or log_lik > best[0]:
            best = (log_lik, weights, mu, sd)
    return best


def main() -> None:
    rows = raw_rows()
    gm = GaussianMixture(2, covariance_type="diag", n_init=20, random_state=0).fit(rows)
    order = np.argsort(gm.means_[:, 0])
    print(f"2-D diagonal ML fit of {len(rows)} rows (eruptions, waiting):")
    for k in order:
        print(
            f"  weight {gm.weights_[k]:.3f}  mean ({gm.means_[k, 0]:.2f}, {gm.means_[k, 1]:.1f})"
            f"  sd ({np.sqrt(gm.covariances_[k, 0]):.2f}, {np.sqrt(gm.covariances_[k, 1]):.2f})"
        )
    print(f"  log-likelihood {gm.score(rows) * len(rows):.2f}")
    gm = GaussianMixture(2, covariance_type="full", n_init=20, random_state=0).fit(rows)
    print(f"2-D full-covariance ML fit of {len(rows)} rows (eruptions, waiting):")
    for k in np.argsort(gm.means_[:, 0]):
        sd = np.sqrt(np.diag(gm.covariances_[k]))
        corr = gm.covariances_[k][0, 1] / (sd[0] * sd[1])
        print(
            f"  weight {gm.weights_[k]:.3f}  mean ({gm.means_[k, 0]:.2f}, {gm.means_[k, 1]:.1f})"
            f"  sd ({sd[0]:.2f}, {sd[1]:.2f})  correlation {corr:.3f}"
        )
    print(f"  log-likelihood {gm.score(rows) * len(rows):.2f}")
    log_lik, weights, mu, sd = equal_sd_em(rows[:, 1])
    print("1-D waiting time, two components, one shared sd:")
    print(
        f"  weights {weights[0]:.3f}/{weights[1]:.3f}  means {mu[0]:.2f}/{mu[1]:.2f}  sd {sd:.2f}"
    )
    print(f"  log-likelihood {log_lik:.2f}")


if __name__ == "__main__":
    main()
